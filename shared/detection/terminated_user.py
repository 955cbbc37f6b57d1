"""Activity performed by a terminated user: deactivated in Workplace (and active afterwards), or
disabled or deleted in Entra ID and still succeeding in the app (a non-SSO secondary account).
"""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import TenantProfile, UserProfile
from shared.models import utc

DETECTOR_ID = "vigil.terminated_user"


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    a, d = obs.activity, obs.directory
    t = utc(a.time)
    reasons: list[str] = []
    if (
        d.workplace_status in ("deactivated", "deleted")
        and d.workplace_deactivated_at is not None
        and t > utc(d.workplace_deactivated_at)
    ):
        reasons.append(
            f"{d.workplace_status} in Workplace at {d.workplace_deactivated_at:%Y-%m-%d %H:%M} UTC"
        )
    if d.entra_terminated and a.outcome == "success":
        reasons.append(f"{d.entra_terminated} in Entra ID")
    if not reasons:
        return profile, []
    deactivated = d.workplace_deactivated_at
    termination = (
        f"workplace|{utc(deactivated).isoformat()}"
        if deactivated is not None and "Workplace" in reasons[0]
        else f"entra|{d.entra_terminated}"
    )
    who = a.actor_email or a.actor_id
    return (
        profile,
        [
            Finding(
                detector_id=DETECTOR_ID,
                window=termination,  # one alert per termination, however long it goes on
                title=f"Activity performed by terminated user {who}",
                description=(
                    f"{who} did {a.event_name} at {t:%Y-%m-%d %H:%M} UTC but is "
                    f"{'; '.join(reasons)}."
                ),
                severity=cfg.severity or ("high" if d.is_admin else "medium"),
                category="Persistence",
                mitre_techniques=("T1078", "T1531"),
                facts={
                    "activity": a.event_name,
                    "outcome": a.outcome,
                    "workplace_status": d.workplace_status,
                    "workplace_deactivated_at": (
                        d.workplace_deactivated_at.isoformat()
                        if d.workplace_deactivated_at
                        else None
                    ),
                    "entra": d.entra,
                    "is_admin": d.is_admin,
                    "ip": a.ip,
                },
                first=a.time,
                last=a.time,
                activity_ids=(a.event_id,),
                recommended_actions=(
                    "Deactivate the account in Workplace and revoke its sessions. Dismiss if the "
                    "account was only temporarily disabled or deleted and re-registered."
                ),
            )
        ],
    )
