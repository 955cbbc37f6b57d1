"""Unusual administrative activity: scored from what is unusual about it, for the user and the org.

Factors (weights), each judged on event time against the past BASELINE:

| factor | weight |
|---|---|
| first admin activity of the user (no admin history at all) | 2 |
| action new for the user **and** rare in the organisation (done by at most RARE_USERS others) | 2 |
| country not used by the user for admin work (or at all, without admin history) | 2 |
| ISP not used by the user (for any work), else IP not used for admin work | 1 |
| an hour (within HOUR_SLACK) the user never works in, admin or not (established admins) | 1 |
| burst: BURST_ACTIONS or more distinct admin actions within BURST_WINDOW | 2 |

The sensitivity sets the score that alerts: high 2, medium 3, low 4 (`score_needed` in the
policy's params overrides it). An action new for the user but common in the organisation, by an
established admin from their usual place and hours, scores 0. Impersonated activity (an
integration acting for the user) never teaches or judges where the user does admin work.
An ISP the user works from every day (their home line) is not a new place for their admin work:
legacy MDCA counts an IP, ISP or location "new" for the user.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import BASELINE, Seen, Stamp, TenantProfile, UserProfile, remember
from shared.models import utc

DETECTOR_ID = "vigil.unusual_admin"
RARE_USERS = 1  # others who did the action: at most this many and it is rare in the org
BURST_ACTIONS = 3
BURST_WINDOW = timedelta(minutes=30)
ESTABLISHED_DAYS = 3  # admin work on this many days: an established admin (hours are known)
HOUR_SLACK = 2  # hours either side of one the user works in that are not unusual
SCORE_NEEDED = {"high": 2, "medium": 3, "low": 4}
# Declared for policy validation: name -> (type, lowest, highest).
PARAMS: dict[str, tuple[type, int, int]] = {"score_needed": (int, 1, 10)}
WEIGHTS = {
    "first_admin_activity": 2,
    "rare_action": 2,
    "new_country": 2,
    "new_isp_or_ip": 1,
    "unusual_hour": 1,
    "burst": 2,
}


def _recent(seen: dict[str, Seen], key: str, t: Any) -> bool:
    """Known before this session (first seen over a burst window ago) and within the baseline:
    a place an attacker's first actions of a session taught is still new for the rest of it."""
    s = seen.get(key)
    return s is not None and s.first <= t - BURST_WINDOW and s.last >= t - BASELINE


def factors(profile: UserProfile, tenant: TenantProfile, obs: Observation) -> dict[str, str]:
    """The factors present, each with why (pure)."""
    a, ip = obs.activity, obs.ip
    t = utc(a.time)
    out: dict[str, str] = {}
    history = {k: s for k, s in profile.admin.items() if s.first < t and s.last >= t - BASELINE}
    if not history:
        out["first_admin_activity"] = "no admin activity by the user in the past 30 days"
    others = set(tenant.admin_actions.get(a.event_name, ())) - {a.actor_id}
    new_action = a.event_name not in history
    if new_action and len(others) <= RARE_USERS:
        out["rare_action"] = (
            f"{a.event_name}: new for the user, done by {len(others)} other user(s) in the org"
        )
    if not a.impersonated:
        where = profile.admin_where if history else {}
        if ip.country:
            known = (
                _recent(where, f"country:{ip.country}", t)
                if history
                else _recent(profile.countries, ip.country, t)
            )
            if not known:
                out["new_country"] = f"{ip.country}: not used by the user for admin work"
        if "new_country" not in out and history:
            own = _recent(where, f"isp:{ip.isp}", t) or _recent(profile.isps, ip.isp, t)
            if ip.isp and not own:
                out["new_isp_or_ip"] = f"ISP {ip.isp}: new for the user"
            elif not ip.isp and a.ip and not _recent(where, f"ip:{a.ip}", t):
                out["new_isp_or_ip"] = f"IP {a.ip}: not used for admin work"
    days = max((s.days for s in history.values()), default=0)
    if days >= ESTABLISHED_DAYS:
        hours = {int(h) for h, s in profile.admin_hours.items() if s.last >= t - BASELINE}
        hours |= {int(h) for h, last in profile.hours.items() if last >= t - BASELINE}
        if hours and not {(t.hour + d) % 24 for d in range(-HOUR_SLACK, HOUR_SLACK + 1)} & hours:
            out["unusual_hour"] = f"{t:%H}:00 UTC, outside the hours the user works"
    recent = {s.event for s in profile.admin_recent if t - BURST_WINDOW <= s.time <= t}
    recent.add(a.event_name)
    if len(recent) >= BURST_ACTIONS:
        minutes = int(BURST_WINDOW.total_seconds() // 60)
        out["burst"] = f"{len(recent)} distinct admin actions within {minutes} minutes"
    return out


def learned(profile: UserProfile, obs: Observation) -> dict[str, Any]:
    """What an admin activity teaches the user's admin baseline (profile field changes)."""
    a, ip = obs.activity, obs.ip
    t = utc(a.time)
    changes: dict[str, Any] = {}
    admin = remember(profile.admin, a.event_name, t)
    if admin is not profile.admin:
        changes["admin"] = admin
    if not a.impersonated:
        where = profile.admin_where
        for key in (
            f"country:{ip.country}" if ip.country else "",
            f"isp:{ip.isp}" if ip.isp else "",
            f"ip:{a.ip}" if a.ip else "",
        ):
            if key:
                where = remember(where, key, t)
        if where is not profile.admin_where:
            changes["admin_where"] = where
        hours = remember(profile.admin_hours, f"{t.hour:02d}", t)
        if hours is not profile.admin_hours:
            changes["admin_hours"] = hours
    stamp = Stamp(t, a.event_id, a.event_name, a.ip)
    if stamp not in profile.admin_recent:
        kept = sorted((*profile.admin_recent, stamp), key=lambda s: (s.time, s.event_id))
        changes["admin_recent"] = tuple(s for s in kept if s.time >= t - BURST_WINDOW)[-20:]
    return changes


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    a, ip = obs.activity, obs.ip
    if not a.administrative or obs.user_learning:
        return profile, []
    present = factors(profile, tenant, obs)
    score = sum(WEIGHTS[k] for k in present)
    needed = int(cfg.params.get("score_needed", SCORE_NEEDED[cfg.sensitivity]))
    if score < needed:
        return profile, []
    t = utc(a.time)
    who = a.actor_email or a.actor_id
    evaluated = (
        *(f"{k} (+{w}): {present.get(k, 'absent')}" for k, w in WEIGHTS.items()),
        f"score {score}, alerting from {needed} at sensitivity {cfg.sensitivity}",
    )
    return profile, [
        Finding(
            detector_id=DETECTOR_ID,
            window=f"{a.event_name}|{t.isoformat()}",
            title=f"Unusual administrative activity by {who}",
            description=(
                f"{who} did {a.event_name} at {t:%Y-%m-%d %H:%M} UTC from "
                f"{a.ip or 'an unknown IP'}{' in ' + ip.country if ip.country else ''}: "
                f"{'; '.join(present.values())}."
            ),
            severity=cfg.severity or ("high" if score >= needed + 2 else "medium"),
            category="PrivilegeEscalation",
            mitre_techniques=("T1098",),
            facts={
                "actions": [a.event_name],
                "targets": [x for x in (a.target_email or a.target_id,) if x],
                "ips": [a.ip] if a.ip else [],
                "countries": [ip.country] if ip.country else [],
                "factors": sorted(present),
                "score": score,
                "score_needed": needed,
                "admin_actions_known": len(profile.admin),
            },
            first=a.time,
            last=a.time,
            activity_ids=(a.event_id,),
            suppressions_evaluated=evaluated,
            recommended_actions=(
                "Confirm the changes with the admin. If they did not make them, revoke their "
                "sessions, reset their password and review the changes made."
            ),
        )
    ]
