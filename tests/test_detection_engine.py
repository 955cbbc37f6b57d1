"""Detection over stored activities on Azurite: alerts, dedup, governance requests, concurrency."""

from __future__ import annotations

from shared import storage as st
from shared.activities import ActivityBatch
from shared.detection.engine import DetectionResult, run_batch
from shared.governance.executor import ActionRequest
from shared.services import Services
from shared.workplace.normalize import normalise
from tests.samples import envelope, failed_logins, value


def detect(
    svc: Services, batches: list[ActivityBatch], sent: list[ActionRequest]
) -> DetectionResult:
    total = DetectionResult()
    for batch in batches:
        r = run_batch(
            batch,
            activities=svc.activities,
            state=svc.detection_state,
            alerts=svc.alerts,
            enqueue=sent.append,
            policy=svc.failed_login_policy,
        )
        total.activities += r.activities
        total.created += r.created
        total.updated += r.updated
    return total


def test_brute_force_raises_one_alert_with_evidence_and_one_action(svc: Services) -> None:
    acts = normalise(envelope(*failed_logins(12, ip="203.0.113.5", country="BR"))).activities
    sent: list[ActionRequest] = []
    result = detect(svc, svc.activities.write(acts), sent)
    assert len(result.created) == 1
    (alert,) = svc.alerts.for_tenant(acts[0].tenant_id)
    assert alert.detector_id == "vigil.multiple_failed_logins"
    assert alert.user_email == "alice@contoso.com"
    assert alert.evidence.facts["failed_logins"] == 12
    assert alert.evidence.facts["ips"] == ["203.0.113.5"]
    assert alert.evidence.facts["countries"] == ["BR"]
    assert alert.first_activity_time == acts[0].time and alert.last_activity_time == acts[-1].time
    assert [r.action for r in sent] == ["revoke_sessions"]


def test_redelivered_batches_create_nothing_new(svc: Services) -> None:
    acts = normalise(envelope(*failed_logins(12))).activities
    batches = svc.activities.write(acts)
    sent: list[ActionRequest] = []
    detect(svc, batches, sent)
    again = detect(svc, batches + svc.activities.write(acts), sent)
    assert again.created == [] and again.updated == []
    assert len(svc.alerts.for_tenant(acts[0].tenant_id)) == 1
    assert len(sent) == 1


def test_quiet_users_and_successes_raise_nothing(svc: Services) -> None:
    changes = [*failed_logins(10), ("login", value("LOGIN"))]
    acts = normalise(envelope(*changes)).activities
    sent: list[ActionRequest] = []
    result = detect(svc, svc.activities.write(acts), sent)
    assert result.created == [] and sent == []
    assert list(svc.storage.table(st.ALERTS).list_entities()) == []


def test_a_burst_split_across_batches_is_one_alert_extended(svc: Services) -> None:
    acts = normalise(envelope(*failed_logins(30))).activities
    sent: list[ActionRequest] = []
    r1 = detect(svc, svc.activities.write(acts[:15]), sent)
    r2 = detect(svc, svc.activities.write(acts[15:]), sent)
    assert len(r1.created) == 1 and r2.created == [] and len(r2.updated) == 1
    (alert,) = svc.alerts.for_tenant(acts[0].tenant_id)
    assert alert.event_count == 30
    assert len(sent) == 1


def test_state_updates_use_etags_so_no_update_is_lost(svc: Services) -> None:
    import pytest

    from shared.detection.failed_logins import UserState
    from shared.detection.state import StateConflict

    store = svc.detection_state
    _, etag_a = store.get("c", "u")
    _, etag_b = store.get("c", "u")
    store.save("c", "u", UserState(), etag_a)
    with pytest.raises(StateConflict):
        store.save("c", "u", UserState(), etag_b)
    _, fresh = store.get("c", "u")
    store.save("c", "u", UserState(), fresh)
    with pytest.raises(StateConflict):
        store.save("c", "u", UserState(), fresh)
