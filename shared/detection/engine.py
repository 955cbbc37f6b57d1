"""Runs the detections over one batch of activities and writes what they raise.

Order of writes makes every step safe to retry: alerts (deterministic ids, upserts) and their
governance requests go out before the detector state that remembers them is saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from shared.activities import ActivityBatch, ActivityStore
from shared.alerts import AlertStore
from shared.detection import failed_logins
from shared.detection.state import DetectionStateStore, StateConflict
from shared.governance.executor import ActionRequest
from shared.models import Activity, Alert, Evidence

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class FailedLoginPolicy:
    threshold: int
    window: timedelta
    actions: tuple[str, ...]


@dataclass
class DetectionResult:
    activities: int = 0
    created: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    requests: list[ActionRequest] = field(default_factory=list)


def failed_login_alert(
    user: Activity, decision: failed_logins.Decision, policy: FailedLoginPolicy
) -> Alert:
    fails = decision.failures
    ips = sorted({f.ip for f in fails if f.ip})
    countries = sorted({f.country for f in fails if f.country})
    minutes = int(policy.window.total_seconds() // 60)
    who = user.actor_email or user.actor_id
    return Alert(
        id=decision.alert_id,
        tenant_id=user.tenant_id,
        source=user.source,
        detector_id=failed_logins.DETECTOR_ID,
        title=f"Multiple failed login attempts for {who}",
        description=(
            f"{len(fails)} failed logins for {who} within {minutes} minutes (alerting above "
            f"{policy.threshold}), from {', '.join(ips) or 'unknown IPs'}"
            f"{' in ' + ', '.join(countries) if countries else ''}."
        ),
        severity="medium",
        category="CredentialAccess",
        mitre_techniques=("T1110",),
        user_id=user.actor_id,
        user_email=user.actor_email,
        first_activity_time=decision.first,
        last_activity_time=decision.last,
        created_time=decision.first,
        evidence=Evidence(
            facts={
                "failed_logins": len(fails),
                "threshold": policy.threshold,
                "window_minutes": minutes,
                "ips": ips,
                "countries": countries,
                "first": decision.first.isoformat(),
                "last": decision.last.isoformat(),
            },
            activity_ids=tuple(f.event_id for f in fails[-50:]),
        ),
        dedup_key=f"{failed_logins.DETECTOR_ID}|{user.tenant_id}|{user.actor_id}|{decision.alert_id}",
        actions=policy.actions,
        event_count=len(fails),
    )


def run_batch(
    batch: ActivityBatch,
    *,
    activities: ActivityStore,
    state: DetectionStateStore,
    alerts: AlertStore,
    enqueue: Callable[[ActionRequest], None],
    policy: FailedLoginPolicy,
) -> DetectionResult:
    loaded = activities.load(batch)
    result = DetectionResult(activities=len(loaded))
    by_user: dict[tuple[str, str], list[Activity]] = {}
    for a in loaded:
        if failed_logins.is_failed_login(a):
            by_user.setdefault((a.tenant_id, a.actor_id), []).append(a)
    for (tenant, user), acts in by_user.items():
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                _detect_user(tenant, user, acts, state, alerts, enqueue, policy, result)
                break
            except StateConflict:
                if attempt == MAX_CONFLICT_RETRIES - 1:
                    raise
                log.info("detection state conflict; re-reading", extra={"user": user})
    return result


def _detect_user(
    tenant: str,
    user: str,
    acts: list[Activity],
    state: DetectionStateStore,
    alerts: AlertStore,
    enqueue: Callable[[ActionRequest], None],
    policy: FailedLoginPolicy,
    result: DetectionResult,
) -> None:
    current, etag = state.get(tenant, user)
    before = current
    raised: dict[str, tuple[Activity, failed_logins.Decision]] = {}
    for a in acts:
        current, decision = failed_logins.decide(
            current, a, tenant_id=tenant, threshold=policy.threshold, window=policy.window
        )
        if decision is not None:
            new = decision.new or raised.get(decision.alert_id, (a, decision))[1].new
            raised[decision.alert_id] = (
                a,
                failed_logins.Decision(
                    decision.alert_id, new, decision.first, decision.last, decision.failures
                ),
            )
    if current == before:
        return  # nothing new for this user: a redelivery
    for a, decision in raised.values():
        alert = failed_login_alert(a, decision, policy)
        key = alerts.save(alert)
        if decision.new:
            log.warning(
                "alert raised: %s",
                alert.title,
                extra={"alert_id": alert.id, "detector": alert.detector_id, "tenant": tenant},
            )
            result.created.append(alert)
            for action in policy.actions:
                request = ActionRequest(tenant, key, action)
                enqueue(request)
                result.requests.append(request)
        else:
            result.updated.append(alert)
    state.save(tenant, user, current, etag)
