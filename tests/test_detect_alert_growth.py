"""One alert per incident on Azurite: it grows under ETags, governance runs once, a resolved alert
stays closed, and a termination is found live, as a backlog and out of order."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared import storage as st
from shared.alerts import alert_row_key
from shared.detection.alert_writer import DetectionResult
from shared.governance.message import ActionRequest
from shared.models import Activity, Alert, Evidence
from shared.services import Services
from tests.detect_samples import T0, TENANT, act
from tests.test_detection_engine import detect

USER, EMAIL = "100064094363063", "alice@contoso.com"


def run(svc: Services, acts: list[Activity], sent: list[ActionRequest]) -> DetectionResult:
    return detect(svc, svc.activities.write(acts), sent)


def failures(start: int, n: int) -> list[Activity]:
    return [
        act("login_failed", at=T0 + timedelta(seconds=20 * i), ip=f"203.0.113.{i % 3 + 1}")
        for i in range(start, start + n)
    ]


def only(svc: Services, detector: str) -> Alert:
    (alert,) = [a for a in svc.alerts.for_tenant(TENANT) if a.detector_id == detector]
    return alert


def test_a_continuing_burst_grows_one_alert_and_governs_once(svc: Services) -> None:
    sent: list[ActionRequest] = []
    first = run(svc, failures(0, 12), sent)
    assert len(first.created) == 1 and len(sent) == 1
    # Twenty minutes later (within the 30-minute gap), the attacker tries again: the same alert.
    later = [
        act("login_failed", at=T0 + timedelta(minutes=20, seconds=10 * i), ip="203.0.113.9")
        for i in range(12)
    ]
    again = run(svc, later, sent)
    assert again.created == [] and len(again.updated) == 1 and len(sent) == 1
    alert = only(svc, "vigil.multiple_failed_logins")
    assert alert.event_count == 24 and "203.0.113.9" in alert.evidence.facts["ips"]
    assert alert.last_activity_time == later[-1].time
    assert run(svc, later, sent).updated == []  # redelivered: nothing changes
    assert only(svc, "vigil.multiple_failed_logins").event_count == 24


def test_a_resolved_alert_is_not_grown_the_incident_goes_on_as_a_new_one(svc: Services) -> None:
    sent: list[ActionRequest] = []
    run(svc, failures(0, 12), sent)
    alert = only(svc, "vigil.multiple_failed_logins")
    svc.storage.table(st.ALERTS).update_entity(
        {"PartitionKey": TENANT, "RowKey": alert_row_key(alert), "Status": "resolved"}
    )
    result = run(svc, failures(12, 6), sent)
    assert len(result.created) == 1 and len(sent) == 2
    alerts = {a.id: a for a in svc.alerts.for_tenant(TENANT)}
    assert alerts[alert.id].event_count == 12 and alerts[alert.id].status == "resolved"
    (new,) = [a for a in alerts.values() if a.id != alert.id]
    assert new.status == "new" and new.event_count >= 6
    run(svc, failures(18, 3), sent)  # grows the new one now
    assert {a.id for a in svc.alerts.for_tenant(TENANT)} == {alert.id, new.id}


def test_concurrent_growth_of_one_alert_loses_nothing(svc: Services) -> None:
    run(svc, failures(0, 12), [])
    base = only(svc, "vigil.multiple_failed_logins")
    errors: list[BaseException] = []

    def add(i: int) -> None:
        evidence = Evidence({"ips": [f"192.0.2.{i}"]}, (f"extra-{i}",))
        try:
            svc.alerts.merge(replace(base, evidence=evidence))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    stored = only(svc, base.detector_id)
    assert stored.event_count == base.event_count + 6
    assert {f"192.0.2.{i}" for i in range(6)} <= set(stored.evidence.facts["ips"])


def deactivation(tenant: str) -> Activity:
    return act(
        "account_deactivated",
        event="ACCOUNT_DEACTIVATED",
        at=T0,
        user="200000000000001",
        email="admin@contoso.com",
        target_id=USER,
        target_email=EMAIL,
        category="account",
        administrative=True,
        tenant_id=tenant,
    )


def use(tenant: str) -> Activity:
    return act(at=T0 + timedelta(seconds=45), user=USER, email=EMAIL, tenant_id=tenant)


def terminated(svc: Services, tenant: str) -> list[tuple[str, Any, Any, tuple[str, ...], int]]:
    return [
        (a.user_id, a.created_time, a.first_activity_time, a.evidence.activity_ids, a.event_count)
        for a in svc.alerts.for_tenant(tenant)
        if a.detector_id == "vigil.terminated_user"
    ]


def test_a_termination_then_activity_within_a_minute_is_one_alert_live_backlog_or_late(
    svc: Services,
) -> None:
    """Three tenants see the same deactivation and the user's activity 45 s later: live (two
    detection runs), as a backlog (one run), and with the activity judged before the deactivation
    arrives. Each gets the same single alert, governed once."""
    sent: list[ActionRequest] = []
    run(svc, [deactivation("live")], sent)
    run(svc, [use("live")], sent)
    run(svc, [deactivation("backlog"), use("backlog")], sent)
    run(svc, [use("late")], sent)
    run(svc, [deactivation("late")], sent)
    live = terminated(svc, "live")
    assert live == [(USER, use("live").time, use("live").time, (use("live").event_id,), 1)]
    for tenant in ("backlog", "late"):
        (alert,) = terminated(svc, tenant)
        assert alert[1:3] == live[0][1:3] and alert[4] == 1
    # Redelivered as a backlog: nothing new anywhere.
    before = len(sent)
    run(svc, [deactivation("live"), use("live")], sent)
    assert terminated(svc, "live") == live and len(sent) == before
