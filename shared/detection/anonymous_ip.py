"""Activity from an anonymous IP address: Tor exits, anonymous proxies, VPN and hosting ranges.

What counts is what the IP data says (Tor list, anonymous-IP database). An address the customer
tagged as theirs (Corporate, Administrative, VPN, Cloud provider) never alerts: custom tags win.

A hosting range alone (a cloud provider, not an anonymiser) is where people also work from:
security-service-edge proxies, Cloud PCs and virtual desktops, scripts on a VM. Such an address
alerts only when its provider is new both for the user (not used by them in 30 days) and for the
organisation (fewer than five people use it), so an attacker's rented server still does.
"""

from __future__ import annotations

from datetime import datetime

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import BASELINE, WIDELY_USED, TenantProfile, UserProfile
from shared.ipintel import IpInfo
from shared.models import Severity, utc

DETECTOR_ID = "vigil.anonymous_ip"


def hosting_only(ip: IpInfo) -> bool:
    """A cloud or hosting provider's address that the IP data does not call an anonymiser."""
    return ip.anonymous == ("hosting",)


def org_keys(ip: IpInfo) -> tuple[str, ...]:
    """What the organisation's use of an anonymous-looking address is counted by: the address,
    and for a hosting range its provider too (`TenantProfile.anonymous_ip_users`)."""
    return (ip.ip, f"isp:{ip.isp}") if hosting_only(ip) and ip.isp else (ip.ip,)


def _used_by_user(profile: UserProfile, ip: IpInfo, t: datetime) -> bool:
    seen = profile.isps.get(ip.isp) if hosting_only(ip) and ip.isp else None
    return seen is not None and seen.first < t and seen.last >= t - BASELINE


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    ip, a = obs.ip, obs.activity
    if not obs.geo_eligible or not ip.anonymous:
        return profile, []
    if ip.safe:
        return profile, []  # the customer says this address is theirs
    # Widely used in the organisation (the address: mis-tagged; a hosting range's provider: the
    # organisation's own cloud), or the user's own cloud: not an attacker's anonymiser.
    users = {k: set(tenant.anonymous_ip_users.get(k, ())) - {a.actor_id} for k in org_keys(ip)}
    if any(len(u) >= WIDELY_USED - 1 for u in users.values()):
        return profile, []
    if _used_by_user(profile, ip, utc(a.time)):
        return profile, []
    others = users[ip.ip]
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
                *(
                    (f"hosting provider {ip.isp}: new for the user and the organisation",)
                    if hosting_only(ip)
                    else ()
                ),
            ),
            recommended_actions=(
                "Confirm with the user. Pen-testers and people who must use anonymisers are "
                "benign: exclude them in the policy's scope."
            ),
        )
    ]
