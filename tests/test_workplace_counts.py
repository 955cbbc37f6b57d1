"""Counting activities per event name exactly once, through redeliveries and crashes in each of
the drain's counting steps (on Azurite)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import storage as st
from shared.services import Services
from shared.workplace import counts, inbox_drain
from shared.workplace.counts import EventCountStore, _clusters
from shared.workplace.inbox_drain import drain_inbox
from tests.samples import COMMUNITY, envelope, failed_logins, install, value

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def svc(svc: Services) -> Services:
    """Vigil installed in the sample community (events of a community without one are held)."""
    install(svc)
    return svc


class Boom(RuntimeError):
    pass


def totals(svc: Services) -> Counter[str]:
    return EventCountStore(svc.storage.table(st.EVENT_COUNTS)).totals(COMMUNITY)


def put_traffic(svc: Services) -> None:
    svc.inbox.put("workplace", envelope(*failed_logins(4)), NOW)
    late = value("LOGIN", at=NOW - timedelta(hours=5), login_method="password")
    odd = value("QUANTUM_LOGIN", at=NOW)
    svc.inbox.put("workplace", envelope(("login", late), ("login", odd)), NOW)
    # A redelivery of two of the failures, in its own envelope.
    svc.inbox.put("workplace", envelope(*failed_logins(2), time=5), NOW + timedelta(seconds=1))


EXPECTED = Counter({"LOGIN_FAILED": 4, "LOGIN": 1, "QUANTUM_LOGIN": 1})


def test_redeliveries_are_not_counted_twice(svc: Services) -> None:
    put_traffic(svc)
    drain_inbox(svc.inbox_drain_deps, NOW)
    put_traffic(svc)  # all of it again, later
    drain_inbox(svc.inbox_drain_deps, NOW + timedelta(minutes=5))
    assert totals(svc) == EXPECTED
    assert len(list(svc.storage.table(st.ACTIVITIES).list_entities())) == 6
    user = svc.users.get(COMMUNITY, "100064094363063")
    assert user is not None and user.auth_method == "password"


@pytest.mark.parametrize(
    ("module", "name"),
    [(counts, "new_activities"), (EventCountStore, "record_once"),
     (inbox_drain, "_record_drain"), (inbox_drain, "record_login_methods"),
     (inbox_drain, "_note_unknown_events")],
)  # fmt: skip
def test_a_crash_in_any_counting_step_loses_and_doubles_nothing(
    svc: Services, monkeypatch: pytest.MonkeyPatch, module: Any, name: str
) -> None:
    put_traffic(svc)
    original = getattr(module, name)
    calls = Counter[str]()

    def fail_once(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        if calls[name] == 1:
            raise Boom(name)
        return original(*args, **kwargs)

    target = inbox_drain if module is counts else module  # it imported new_activities by name
    monkeypatch.setattr(target, name, fail_once)
    with pytest.raises(Boom):
        drain_inbox(svc.inbox_drain_deps, NOW)
    drain_inbox(svc.inbox_drain_deps, NOW + timedelta(minutes=1))
    assert totals(svc) == EXPECTED
    assert len(list(svc.storage.table(st.ACTIVITIES).list_entities())) == 6
    assert svc.inbox.oldest(10) == []


def test_a_crash_before_the_write_then_a_redelivery_is_still_counted_once(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.inbox.put("workplace", envelope(*failed_logins(4)), NOW)

    def broken(activities: Any) -> Any:
        raise Boom("write")

    monkeypatch.setattr(svc.activities, "write", broken)
    with pytest.raises(Boom):
        drain_inbox(svc.inbox_drain_deps, NOW)  # tallied, not written
    monkeypatch.undo()
    svc.inbox.put("workplace", envelope(*failed_logins(2), time=9), NOW + timedelta(seconds=1))
    drain_inbox(svc.inbox_drain_deps, NOW + timedelta(minutes=1))
    assert totals(svc) == Counter({"LOGIN_FAILED": 4})


def test_key_ranges_split_at_long_gaps() -> None:
    def key(minutes: int) -> str:
        return f"{minutes * 60 * 10_000_000:019d}_x"

    keys = [key(0), key(1), key(5), key(60), key(61), key(300)]
    assert _clusters(keys) == [(key(0), key(5)), (key(60), key(61)), (key(300), key(300))]
