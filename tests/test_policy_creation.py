"""An activity policy alerts only on activities after its creation (MDCA), by event time; the
creation time is the YAML's `created`, or the deployment's first load of it, kept in storage."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared import clock, services
from shared import storage as st
from shared.ipintel.tor import TorEntry
from shared.models import Activity
from shared.policies import parse
from shared.policy_creation import PolicyCreationStore
from shared.services import Services
from tests.detect_samples import T0, act
from tests.test_detection_engine import run, with_policies

MINUTE = timedelta(minutes=1)
TOR = "203.0.113.50"
POLICY: dict[str, Any] = {
    "id": "admin-activity",
    "type": "activity",
    "title": "{event} by {user}",
    "filters": {"activity.administrative": {"eq": [True]}},
}


def admin_act(at: datetime, **extra: Any) -> Activity:
    return act("admin_added", at=at, event="ADMIN_CREATED", administrative=True, **extra)


def test_a_policy_alerts_only_on_activities_after_its_creation_and_builtins_on_all(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = with_policies(monkeypatch, tmp_path, {**POLICY, "created": T0.isoformat()})
    svc.tor_exits.save({TOR: TorEntry(TOR, T0, T0)}, T0)
    before, after = admin_act(T0 - MINUTE, ip=TOR), admin_act(T0 + MINUTE)
    result = run(svc, [after, before])
    alerts = {(a.detector_id, a.evidence.activity_ids) for a in result.created}
    assert alerts == {
        ("admin-activity", (after.event_id,)),
        ("vigil.anonymous_ip", (before.event_id,)),  # a built-in is not a policy with a birthday
    }
    again = run(svc, [before, after])  # a replay decides the same (event time, not wall clock)
    assert again.created == []


def test_without_created_the_first_load_is_recorded_and_kept_across_reloads(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = clock.now().replace(microsecond=0)
    svc = with_policies(
        monkeypatch,
        tmp_path,
        POLICY,
        {**POLICY, "id": "switched-off", "enabled": False},
        {**POLICY, "id": "dated", "created": "2026-01-01T00:00:00Z"},
    )
    created = {p.id: p.created for p in svc.detections.policies}
    first = created["admin-activity"]
    assert first is not None and started <= first <= clock.now()
    assert created["switched-off"] is None  # not created until it is switched on
    assert created["dated"] == datetime(2026, 1, 1, tzinfo=UTC)
    rows = list(svc.storage.table(st.POLICY_CREATION).list_entities())
    assert [(r["RowKey"], r["Created"]) for r in rows] == [("admin-activity", first)]

    services.reset()  # a restart, or another worker
    reloaded = services.get_services()
    assert {p.id: p.created for p in reloaded.detections.policies} == created
    result = run(reloaded, [admin_act(first - MINUTE), admin_act(first + MINUTE)])
    raised = [(a.detector_id, a.first_activity_time) for a in result.created]
    assert sorted(raised) == [
        ("admin-activity", first + MINUTE),
        ("dated", first - MINUTE),
        ("dated", first + MINUTE),
    ]


def test_a_recorded_creation_time_holds_against_later_and_concurrent_loads(svc: Services) -> None:
    (policy,) = parse(POLICY, "test.yaml").activity
    table = svc.storage.table(st.POLICY_CREATION)
    barrier = threading.Barrier(2, timeout=20)
    answers: dict[str, datetime | None] = {}

    class Worker(PolicyCreationStore):
        def get_many(self, policy_ids: list[str]) -> dict[str, datetime]:
            found = super().get_many(policy_ids)
            barrier.wait()  # both have seen nothing recorded before either records
            return found

    def load(name: str, now: datetime) -> None:
        (loaded,) = Worker(table).resolve((policy,), now)
        answers[name] = loaded.created

    threads = [
        threading.Thread(target=load, args=(name, T0 + i * MINUTE))
        for i, name in enumerate(("a", "b"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert answers["a"] == answers["b"] and answers["a"] in (T0, T0 + MINUTE)
    (later,) = PolicyCreationStore(table).resolve((policy,), T0 + 60 * MINUTE)
    assert later.created == answers["a"]
