"""Successful activity from a suspicious IP: the customer's risky IPs and ranges (category Risky).

Anonymity alone (Tor, proxies) is the anonymous-IP detection's job, so it is not repeated here.
"""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import TenantProfile, UserProfile
from shared.models import utc

DETECTOR_ID = "vigil.suspicious_ip"


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    ip, a = obs.ip, obs.activity
    risky = ip.risky_listed or (bool(ip.custom_range) and ip.category == "risky")
    if not obs.geo_eligible or not risky:
        return profile, []
    who = a.actor_email or a.actor_id
    why = f"range {ip.custom_range}" if ip.custom_range else "the risky IP list"
    return profile, [
        Finding(
            detector_id=DETECTOR_ID,
            window=f"{ip.ip}|{utc(a.time).date().isoformat()}",
            title=f"Successful activity from a suspicious IP address by {who}",
            description=f"{who} was active from {ip.ip}, marked Risky by {why}.",
            severity=cfg.severity or "high",
            category="InitialAccess",
            mitre_techniques=("T1078",),
            facts={
                "ip": ip.ip,
                "category": ip.category,
                "range": ip.custom_range,
                "risky_listed": ip.risky_listed,
                "tags": list(ip.tags),
                "country": ip.country,
                "activity": a.event_name,
            },
            first=a.time,
            last=a.time,
            activity_ids=(a.event_id,),
            recommended_actions=(
                "Suspend the user, mark them compromised and reset their password if they do not "
                "recognise the activity. Employees may share attacker infrastructure: verify first."
            ),
        )
    ]
