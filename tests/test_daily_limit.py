"""A policy's daily alert limit is exact across workers (ETag-guarded slots on Azurite), a slot
once taken stays its alert's, and governance is never held back by it."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.activities import ActivityBatch
from shared.config import get_settings
from shared.detection.daily_limit import admit
from shared.detection.state import StateConflict
from shared.governance.message import ActionRequest
from shared.ipintel.tor import TorEntry
from shared.models import Alert
from shared.services import Services
from tests.detect_samples import T0, TENANT, act
from tests.test_detection_engine import detect, with_policies

TOR = "203.0.113.50"
MINUTE = timedelta(minutes=1)


def capped_anonymous_ip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Services:
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "vigil.anonymous_ip",
            "type": "anomaly",
            "alerting": {"daily_limit": 1},
            "governance": [{"action": "revoke_sessions"}],
        },
    )
    svc.tor_exits.save({TOR: TorEntry(TOR, T0, T0)}, T0)
    return svc


def from_tor(svc: Services, user: int) -> list[ActivityBatch]:
    a = act(ip=TOR, user=str(user), email=f"u{user}@contoso.com", at=T0 + user * MINUTE)
    return svc.activities.write([a])


def stored(svc: Services) -> dict[str, Alert]:
    return {a.user_id: a for a in svc.alerts.for_tenant(TENANT)}


def test_admitting_is_pure_and_an_admitted_alert_stays_admitted() -> None:
    assert admit((), "a", 1) == (True, ("a",))
    assert admit(("a",), "a", 1) == (True, ("a",))
    assert admit(("a",), "b", 1) == (False, ("a",))
    assert admit(("a",), "b", 2) == (True, ("a", "b"))


def test_two_workers_racing_for_the_last_slot_admit_exactly_one(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = capped_anonymous_ip(monkeypatch, tmp_path)
    workers = [first, Services(get_settings())]  # two processes: own clients, own caches
    barrier = threading.Barrier(2, timeout=20)
    reads: list[str] = []

    for name, worker in zip("ab", workers, strict=True):
        limits = worker.detection_state.daily_limits
        original = limits._read

        def read(tenant: str, key: str, original: Any = original, name: str = name) -> Any:
            reads.append(name)
            got = original(tenant, key)
            if reads.count(name) == 1:
                barrier.wait()  # both have read the empty day before either writes
            return got

        limits._read = read  # type: ignore[method-assign,assignment]

    batches = [from_tor(first, 1), from_tor(first, 2)]
    sent: dict[str, list[ActionRequest]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def work(name: str, worker: Services, batch: list[ActivityBatch]) -> None:
        try:
            detect(worker, batch, sent[name])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(name, w, b))
        for name, w, b in zip("ab", workers, batches, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    alerts = stored(first)
    assert sorted(a.capped for a in alerts.values()) == [False, True]
    assert sorted(reads) in (["a", "a", "b"], ["a", "b", "b"])  # the loser re-read after a 412
    assert [r.action for r in sent["a"] + sent["b"]] == ["revoke_sessions"] * 2  # never capped

    # Each worker is redelivered the other's batch: no second alert, the same one uncapped.
    for worker, batch in zip(workers, reversed(batches), strict=True):
        again = detect(worker, batch, [])
        assert (again.created, again.updated) == ([], [])
    assert {u: a.capped for u, a in stored(first).items()} == {
        u: a.capped for u, a in alerts.items()
    }


def test_a_slot_taken_before_a_crash_stays_with_its_alert_on_redelivery(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = capped_anonymous_ip(monkeypatch, tmp_path)
    crashing, mine = from_tor(svc, 1), from_tor(svc, 2)
    save_users = svc.detection_state.save_users

    def crash(*args: Any) -> None:
        raise StateConflict("the worker died before saving the profiles")

    monkeypatch.setattr(svc.detection_state, "save_users", crash)
    with pytest.raises(StateConflict):
        detect(svc, crashing, [])  # the alert is stored and holds the slot; the profile is not
    monkeypatch.setattr(svc.detection_state, "save_users", save_users)

    other = Services(get_settings())  # another worker takes the next alert of the day
    (capped,) = detect(other, mine, []).created
    assert capped.capped
    (redelivered,) = detect(Services(get_settings()), crashing, []).created
    assert not redelivered.capped
    assert {u: a.capped for u, a in stored(svc).items()} == {"1": False, "2": True}
