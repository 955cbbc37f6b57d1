"""The sync step on Azurite: paging through the inbox, crashing mid-way, bad input kept aside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import services
from shared import storage as st
from shared.activities import ActivityBatch
from shared.inbox import unpack_body
from shared.services import Services
from shared.workplace.inbox_drain import drain_inbox
from tests.samples import envelope, failed_logins, install, value

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def svc(svc: Services) -> Services:
    """Vigil installed in the sample community (events of a community without one are held)."""
    install(svc)
    return svc


def rows(svc: Services, table: str) -> list[dict[str, object]]:
    return list(svc.storage.table(table).list_entities())


def queued(svc: Services) -> int:
    q = svc.storage.queue(svc.settings.activity_queue)
    return int(q.get_queue_properties().approximate_message_count or 0)


def test_one_run_drains_every_page(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNC_MAX_ENVELOPES", "2")
    services.reset()
    svc = services.get_services()
    install(svc)
    for i in range(5):
        svc.inbox.put(
            "workplace", envelope(*failed_logins(1, start=NOW + timedelta(minutes=i))), NOW
        )
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.envelopes, result.activities) == (5, 5)
    assert svc.inbox.oldest(10) == [] and len(rows(svc, st.ACTIVITIES)) == 5


def test_a_crash_before_enqueueing_loses_nothing_and_doubles_nothing(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.inbox.put("workplace", envelope(*failed_logins(3)), NOW)

    def broken(message: str) -> None:
        raise ConnectionError("queue unavailable")

    monkeypatch.setattr(svc, "enqueue_detection", broken)
    with pytest.raises(ConnectionError):
        drain_inbox(svc.inbox_drain_deps, NOW)
    assert len(svc.inbox.oldest(10)) == 1  # still there: it will be read again
    assert len(rows(svc, st.ACTIVITIES)) == 3
    monkeypatch.undo()
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert result.activities == 3 and svc.inbox.oldest(10) == []
    assert len(rows(svc, st.ACTIVITIES)) == 3
    assert queued(svc) == 1


def test_bad_changes_are_quarantined_whole_while_good_ones_become_activities(svc: Services) -> None:
    broken = value("LOGIN")
    del broken["actor_id"]
    padding = "x" * 100_000  # larger than one table property
    body = envelope(("login", broken), ("login", value("LOGOUT", note=padding)))
    svc.inbox.put("workplace", body, NOW)
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert result.activities == 1 and result.rejected_changes == 1
    (q,) = rows(svc, st.QUARANTINE)
    assert "actor_id" in str(q["Reason"]) and unpack_body(q) == body
    (row,) = rows(svc, st.ACTIVITIES)
    (logout,) = svc.activities.load(ActivityBatch(str(row["PartitionKey"]), (str(row["RowKey"]),)))
    assert padding in logout.raw  # kept whole, across several properties


def test_envelopes_that_are_not_workplace_security_are_quarantined(svc: Services) -> None:
    svc.inbox.put("workplace", b'{"object": "page", "entry": []}', NOW)
    assert drain_inbox(svc.inbox_drain_deps, NOW).quarantined == 1
    (q,) = rows(svc, st.QUARANTINE)
    assert "workplace_security" in str(q["Reason"])
    assert rows(svc, st.ACTIVITIES) == []
