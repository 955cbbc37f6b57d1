"""What an activity policy finds in one matching activity (pure, event time).

A single-activity policy alerts on every match; a repeated one when N matches fall within M
minutes, once per burst (`bursts.py`), counted per user or, with `same_user: false`, across the
tenant's users (the subject `TENANT_WIDE`). A policy alerts only on activities after its creation.
"""

from __future__ import annotations

from shared.detection import bursts
from shared.detection.base import Finding, Observation
from shared.detection.profiles import BurstState, Failure, UserProfile
from shared.models import Activity, utc
from shared.policies import ActivityPolicy

TENANT_WIDE = "~tenant"  # the subject of repeated-activity policies counted across users


def before_creation(policy: ActivityPolicy, a: Activity) -> bool:
    """MDCA: a policy alerts only on activities after its creation (by their event time)."""
    return policy.created is not None and utc(a.time) < policy.created


def policy_findings(
    policy: ActivityPolicy, profile: UserProfile, obs: Observation
) -> tuple[UserProfile, list[Finding]]:
    """An activity policy over one matching activity: every match, or N within M minutes."""
    a, ip = obs.activity, obs.ip
    match = policy.match
    first = last = utc(a.time)
    ids: tuple[str, ...] = (a.event_id,)
    window, extends, count = a.event_id, False, 1
    if match.mode == "repeated":
        state = profile.repeated.get(policy.id, BurstState())
        state, decision = bursts.fold(
            state,
            Failure(first, a.event_id, a.ip, ip.country),
            key=f"{policy.id}|{a.tenant_id}|{a.actor_id if match.same_user else TENANT_WIDE}",
            more_than=match.count - 1,
            window=match.window,
        )
        profile = profile.evolve(repeated={**profile.repeated, policy.id: state})
        if decision is None:
            return profile, []
        first, last, extends = decision.first, decision.last, not decision.new
        window, count = decision.alert_id, len(decision.failures)
        ids = tuple(f.event_id for f in decision.failures[-50:])
    values = {
        "policy": policy.id,
        "user": a.actor_email or a.actor_id,
        "user_id": a.actor_id,
        "ip": a.ip,
        "country": ip.country,
        "event": a.event_name,
        "count": count,
        "window_minutes": int(match.window.total_seconds() // 60),
        "target": a.target_email or a.target_id,
    }
    title = policy.title.format_map(values)
    return profile, [
        Finding(
            detector_id=policy.id,
            window=window,
            title=title,
            description=policy.description or title,
            severity=policy.severity,
            category="ActivityPolicy",
            mitre_techniques=(),
            facts={
                "policy": policy.id,
                "policy_file": policy.source,
                "mode": match.mode,
                "count": count,
                "ip": a.ip,
                "ip_category": ip.category,
                "country": ip.country,
                "event": a.event_name,
            },
            first=first,
            last=last,
            activity_ids=ids,
            event_count=count,
            extends=extends,
            policy_id=policy.id,
        )
    ]
