"""Shared decision of the unusual-administrative and unusual-impersonated detections: an action
of that kind the user has not performed in the past 30 days (after their learning period)."""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import BASELINE, Seen, UserProfile
from shared.models import utc


def unusual(
    detector_id: str,
    kind: str,
    history: dict[str, Seen],
    profile: UserProfile,
    obs: Observation,
    cfg: DetectorConfig,
    mitre: tuple[str, ...],
) -> list[Finding]:
    a, ip = obs.activity, obs.ip
    t = utc(a.time)
    seen = history.get(a.event_name)
    if obs.user_learning or (seen is not None and seen.last >= t - BASELINE):
        return []
    uncommon = ["action"]
    if ip.country and ip.country not in profile.countries:
        uncommon.append("country")
    if ip.isp and ip.isp not in profile.isps:
        uncommon.append("isp")
    who = a.actor_email or a.actor_id
    return [
        Finding(
            detector_id=detector_id,
            window=f"{a.event_name}|{t.date().isoformat()}",
            title=f"Unusual {kind} activity by {who}: {a.event_name}",
            description=(
                f"{who} did {a.event_name} ({kind}), which they have not done in the past "
                f"{BASELINE.days} days, from {a.ip or 'an unknown IP'}"
                f"{' in ' + ip.country if ip.country else ''}."
            ),
            severity=cfg.severity or ("high" if len(uncommon) > 1 else "medium"),
            category="PrivilegeEscalation" if kind == "administrative" else "DefenseEvasion",
            mitre_techniques=mitre,
            facts={
                "action": a.event_name,
                "last_seen_for_user": None if seen is None else seen.last.isoformat(),
                f"{kind}_actions_known": len(history),
                "uncommon_for_user": uncommon,
                "ip": a.ip,
                "country": ip.country,
                "isp": ip.isp,
                "target": a.target_email or a.target_id,
            },
            first=a.time,
            last=a.time,
            activity_ids=(a.event_id,),
        )
    ]
