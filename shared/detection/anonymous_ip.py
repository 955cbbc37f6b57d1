"""Activity from an anonymous IP address: Tor exits, anonymous proxies, VPN and hosting ranges.

What counts is what the IP data says (Tor list, anonymous-IP database). An address the customer
tagged as theirs (Corporate, Administrative, VPN, Cloud provider) never alerts: custom tags win.
"""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import WIDELY_USED, TenantProfile, UserProfile
from shared.models import Severity, utc

DETECTOR_ID = "vigil.anonymous_ip"


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    ip, a = obs.ip, obs.activity
    if not obs.geo_eligible or not ip.anonymous:
        return profile, []
    if ip.safe:
        return profile, []  # the customer says this address is theirs
    others = set(tenant.anonymous_ip_users.get(ip.ip, ())) - {a.actor_id}
    if len(others) >= WIDELY_USED - 1:
        return profile, []  # widely used in the organisation: mis-tagged, not an attacker's
    kinds = ", ".join(k.replace("_", " ") for k in ip.anonymous)
    who = a.actor_email or a.actor_id
    severity: Severity = "high" if "tor" in ip.anonymous else "medium"
    day = utc(a.time).date().isoformat()
    return profile, [
        Finding(
            detector_id=DETECTOR_ID,
            window=f"{ip.ip}|{day}",
            title=f"Activity from an anonymous IP address by {who}",
            description=(
                f"{who} was active from {ip.ip} ({kinds}) at {utc(a.time):%Y-%m-%d %H:%M} UTC."
            ),
            severity=cfg.severity or severity,
            category="InitialAccess",
            mitre_techniques=("T1090.003", "T1078"),
            facts={
                "ip": ip.ip,
                "anonymity": list(ip.anonymous),
                "tags": list(ip.tags),
                "isp": ip.isp,
                "country": ip.country,
                "activity": a.event_name,
            },
            first=a.time,
            last=a.time,
            activity_ids=(a.event_id,),
            suppressions_evaluated=(
                "customer safe range: not tagged",
                f"widely used in the organisation: {len(others)} other user(s), "
                f"suppressed from {WIDELY_USED - 1}",
            ),
            recommended_actions=(
                "Confirm with the user. Pen-testers and people who must use anonymisers are "
                "benign: exclude them in the policy's scope."
            ),
        )
    ]
