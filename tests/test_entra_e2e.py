"""The Entra source end to end: the simulated Graph's sign-in and audit logs, pulled by the real
sync_timer on Azurite, detected on and governed, through the local functions host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

import sync_timer
from local.stack import Stack, local_stack
from shared import storage as st
from shared.services import get_services
from tests.entra_samples import audit, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    env = {
        "VIGIL_SOURCES": "entra",
        # Four requests a run fit the run's token bucket, so no run waits for a token here.
        "ENTRA_MAX_REQUESTS_PER_RUN": "4",
        "ENTRA_BACKFILL_DAYS": "3",
    }
    with local_stack(port=None, triggers=False, extra_env=env) as s:
        s.graph.audit_logs.page_size = 5
        yield s


def drain(stack: Stack) -> None:
    stack.host.run_timer("sync_timer")
    while stack.host.process_queue_once("detect_queue") or stack.host.process_queue_once(
        "govern_queue"
    ):
        pass


def entra_activities() -> list[dict[str, Any]]:
    rows = get_services().storage.table(st.ACTIVITIES).list_entities()
    return [r for r in rows if r["source"] == "entra"]


def status(stack: Stack) -> dict[str, Any]:
    reply = requests.get(
        f"{stack.api}/sources/status", headers={"x-functions-key": stack.function_key}, timeout=10
    )
    assert reply.status_code == 200
    tenant: dict[str, Any] = reply.json()["sources"]["entra"]["tenants"][stack.graph.tenant_id]
    return tenant


def people(stack: Stack) -> list[tuple[str, str]]:
    return [(u.id, u.user_principal_name) for u in list(stack.graph.users.values())[:4]]


def test_backfill_in_resumable_steps_then_overlap_rereads_without_doubles_and_late_records(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    users = people(stack)
    logs = stack.graph.audit_logs
    signins = [
        sign_in(now - timedelta(hours=h), user_id=uid, upn=upn)
        for h in (70, 65, 60, 50, 45, 30, 25, 20, 10, 5, 2, 1)
        for uid, upn in users[:2]
    ]
    (admin, admin_upn), (target, target_upn) = users[2], users[3]
    audits = [
        audit(now - timedelta(hours=h), "Reset password (by admin)", actor_id=admin,
              actor_upn=admin_upn, target_id=target, target_upn=target_upn)
        for h in (60, 6)
    ]  # fmt: skip
    logs.add("signIns", *signins)
    logs.add("directoryAudits", *audits)

    stack.host.run_timer("sync_timer")
    first = status(stack)
    assert first["signIns"]["state"] == "backfilling"  # 4 requests cannot read 3 days of pages
    assert 0 < first["signIns"]["backfill_progress"] < 1
    assert first["directoryAudits"]["state"] == "not_started"  # the run's budget went on sign-ins

    runs = 1
    while status(stack)["directoryAudits"]["state"] != "current":
        stack.host.run_timer("sync_timer")
        runs += 1
        assert runs < 20
    done = status(stack)
    assert done["signIns"]["state"] == "current" and done["signIns"]["backfill_progress"] == 1.0
    assert done["signIns"]["records"] >= len(signins)  # the overlap is read again
    stored = entra_activities()
    assert sorted(r["event_id"] for r in stored) == sorted(r["id"] for r in signins + audits)
    resets = [r for r in stored if r["type"] == "password_reset"]
    assert {(r["actor_id"], r["target_id"]) for r in resets} == {(admin, target)}
    assert all(r["administrative"] for r in resets)

    # The next run re-reads the overlap: nothing doubles and nothing is queued again.
    before = len(stored)
    while stack.host.process_queue_once("detect_queue"):
        pass
    stack.host.run_timer("sync_timer")
    assert len(entra_activities()) == before
    assert stack.host.process_queue_once("detect_queue") == 0

    # Records Entra logs late (their time already behind the watermark) are picked up.
    late = [sign_in(now - timedelta(minutes=12), user_id=uid, upn=upn) for uid, upn in users[:2]]
    logs.add("signIns", *late)
    stack.host.run_timer("sync_timer")
    assert {r["event_id"] for r in entra_activities()} >= {r["id"] for r in late}
    assert len(entra_activities()) == before + len(late)


def test_a_429_ends_the_run_and_the_next_run_after_retry_after_resumes_at_the_saved_page(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    uid, upn = people(stack)[0]
    records = [sign_in(now - timedelta(minutes=m), user_id=uid, upn=upn) for m in range(1, 13)]
    stack.graph.audit_logs.add("signIns", *records)
    stack.graph.inject_fault(
        "GET", r"/auditLogs/signIns$", 429, headers={"Retry-After": "120"}, times=1
    )
    monkeypatch.setattr(sync_timer, "now", lambda: now)
    stack.host.run_timer("sync_timer")
    throttled = status(stack)["signIns"]
    assert throttled["state"] == "throttled" and "Retry-After 120" in throttled["reason"]
    asked = stack.graph.audit_logs.requests

    stack.host.run_timer("sync_timer")  # within Retry-After: Graph is not asked at all
    assert stack.graph.audit_logs.requests == asked

    monkeypatch.setattr(sync_timer, "now", lambda: now + timedelta(minutes=3))
    while status(stack)["directoryAudits"]["state"] != "current":
        stack.host.run_timer("sync_timer")
    assert status(stack)["signIns"]["state"] == "current"
    assert sorted(r["event_id"] for r in entra_activities()) == sorted(r["id"] for r in records)


def test_a_tenant_without_p1_gets_a_clear_state_and_is_not_asked_every_run(stack: Stack) -> None:
    now = datetime.now(UTC)
    (admin, admin_upn), (target, target_upn) = people(stack)[:2]
    stack.graph.audit_logs.licensed = False
    stack.graph.audit_logs.add(
        "directoryAudits",
        audit(now - timedelta(hours=1), "Disable account", actor_id=admin, actor_upn=admin_upn,
              target_id=target, target_upn=target_upn),
    )  # fmt: skip
    stack.host.run_timer("sync_timer")
    s = status(stack)
    assert s["signIns"]["state"] == "unlicensed"
    assert "P1 or P2" in s["signIns"]["reason"]
    while status(stack)["directoryAudits"]["state"] != "current":  # audits need no premium
        stack.host.run_timer("sync_timer")
    asked = [r for r in stack.graph.graph_requests() if r.path.endswith("/auditLogs/signIns")]
    stack.host.run_timer("sync_timer")
    again = [r for r in stack.graph.graph_requests() if r.path.endswith("/auditLogs/signIns")]
    assert len(again) == len(asked) == 1
    assert [r["type"] for r in entra_activities()] == ["account_deactivated"]


def test_an_entra_brute_force_alerts_and_governance_acts_on_the_entra_user_directly(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    users = people(stack)
    victim_id, victim_upn = users[0]
    logs = stack.graph.audit_logs
    wrong = [
        sign_in(now - timedelta(minutes=10, seconds=-s), user_id=victim_id, upn=victim_upn,
                code=50126, ip="198.51.100.7", country="BR", lat=-23.55, lon=-46.63)
        for s in range(0, 140, 10)
    ]  # fmt: skip
    logs.add(
        "signIns",
        *[
            sign_in(now - timedelta(hours=h), user_id=uid, upn=upn)
            for h in (30, 20, 4)
            for uid, upn in users
        ],
        # An MFA prompt is not a failed password: these never count.
        *[
            sign_in(now - timedelta(minutes=40, seconds=s), user_id=victim_id, upn=victim_upn,
                    code=50074)
            for s in range(0, 120, 10)
        ],
        *wrong,  # fourteen wrong passwords within two minutes, from abroad
    )  # fmt: skip
    for _ in range(8):
        drain(stack)
    svc = get_services()
    (alert,) = svc.alerts.for_tenant(stack.graph.tenant_id)
    assert (alert.detector_id, alert.source) == ("vigil.multiple_failed_logins", "entra")
    assert (alert.user_id, alert.user_email) == (victim_id, victim_upn)
    # Raised on the failure over the threshold (pages arrive newest first, 5 at a time); the
    # MFA prompts of the same user are not among what it counts.
    assert alert.evidence.facts["failed_logins"] > 10
    assert set(alert.evidence.activity_ids) <= {r["id"] for r in wrong}
    (action,) = svc.actions.for_tenant(stack.graph.tenant_id)
    assert (action.action, action.status, action.target) == (
        "revoke_sessions",
        "succeeded",
        victim_id,
    )
    paths = [r.path for r in stack.graph.graph_requests()]
    assert f"/v1.0/users/{victim_id}" in paths  # resolved by its object id...
    assert not any(p == "/v1.0/users" for p in paths)  # ...never searched for by e-mail
    revokes = [p for p in paths if p.endswith("/revokeSignInSessions")]
    assert revokes == [f"/v1.0/users/{victim_upn}/revokeSignInSessions"]


def test_unreadable_records_are_quarantined_with_a_reason_and_unknown_ones_kept_and_counted(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    (uid, upn), (other, other_upn) = people(stack)[:2]
    bad = sign_in(now - timedelta(minutes=5), user_id="not-a-guid", upn=upn)
    future = sign_in(now + timedelta(days=3), user_id=uid, upn=upn)
    odd = sign_in(now - timedelta(minutes=4), user_id=uid, upn=upn, code=31337)
    new_name = audit(now - timedelta(minutes=3), "Frobnicate tenant", actor_id=uid, actor_upn=upn,
                     target_id=other, target_upn=other_upn)  # fmt: skip
    stack.graph.audit_logs.add("signIns", bad, future, odd)
    stack.graph.audit_logs.add("directoryAudits", new_name)
    while status(stack)["directoryAudits"]["state"] != "current":
        stack.host.run_timer("sync_timer")
    rows = list(get_services().storage.table(st.QUARANTINE).list_entities())
    reasons = sorted(r["Reason"] for r in rows if r["PartitionKey"] == "entra")
    assert len(reasons) == 1 and "not an object id" in reasons[0]  # the future one: not asked
    kept = {r["event_id"]: r["type"] for r in entra_activities()}
    assert kept == {odd["id"]: "login_failure_other", new_name["id"]: "other"}
    s = status(stack)
    assert s["signIns"]["unknown"] == {"errorCode 31337": 1}
    assert s["directoryAudits"]["unknown"] == {"Frobnicate tenant": 1}
    assert s["signIns"]["quarantined"] == 1


def test_an_account_disabled_in_the_audit_log_then_signing_in_is_a_terminated_user(
    stack: Stack,
) -> None:
    now = datetime.now(UTC)
    (admin, admin_upn), (user, upn) = people(stack)[:2]
    stack.graph.audit_logs.add(
        "directoryAudits",
        audit(now - timedelta(hours=2), "Disable account", actor_id=admin, actor_upn=admin_upn,
              target_id=user, target_upn=upn),
    )  # fmt: skip
    stack.graph.audit_logs.add(
        "signIns",
        sign_in(now - timedelta(hours=30), user_id=user, upn=upn),
        sign_in(now - timedelta(hours=1), user_id=user, upn=upn),  # after the disable
    )
    for _ in range(4):
        drain(stack)
    alerts = get_services().alerts.for_tenant(stack.graph.tenant_id)
    assert [a.detector_id for a in alerts] == ["vigil.terminated_user"]
    assert alerts[0].user_id == user
    assert "in Entra ID" in alerts[0].description
    assert "Entra ID" in alerts[0].recommended_actions
    assert "Workplace" not in alerts[0].recommended_actions


def test_an_account_disabled_in_the_directory_is_synced_and_its_sign_in_is_a_terminated_user(
    stack: Stack,
) -> None:
    """No audit record of the disable: the `/users` delta query brings it into the user record."""
    (user, upn), (other, _) = people(stack)[:2]
    drain(stack)  # the first round: every user, active
    assert status(stack)["directory"]["state"] == "current"
    record = get_services().users.get(stack.graph.tenant_id, user)
    assert record is not None and (record.email, record.status) == (upn, "active")
    stack.graph.users[user].account_enabled = False
    del stack.graph.users[other]
    drain(stack)
    users = get_services().users
    off, gone = users.get(stack.graph.tenant_id, user), users.get(stack.graph.tenant_id, other)
    assert off is not None and off.status == "deactivated" and off.deactivated_at is not None
    assert gone is not None and gone.status == "deleted"
    at = off.deactivated_at + timedelta(milliseconds=1)  # the run that saw it, and after
    late = sign_in(at, user_id=user, upn=upn)
    stack.graph.audit_logs.add("signIns", late)
    # A run reads records up to its own time: drain until a run has read this one.
    deadline = time.monotonic() + 60
    while late["id"] not in {r["event_id"] for r in entra_activities()}:
        assert time.monotonic() < deadline, "the sign-in was never pulled"
        drain(stack)
    drain(stack)
    alerts = get_services().alerts.for_tenant(stack.graph.tenant_id)
    assert [a.detector_id for a in alerts] == ["vigil.terminated_user"]
    assert alerts[0].user_id == user
    assert alerts[0].evidence.facts["workplace_status"] == "deactivated"
