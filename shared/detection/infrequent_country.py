"""Activity from an infrequent country: new for the user (in 30 days), and/or new for the org.

No alerts while the user's (for the user signal) or the tenant's (for the org signal) learning
period lasts. Addresses with no physical location (VPN, hosting, Tor) say nothing about the
country and are skipped. The window is the country: one incident per country (`incidents.MERGE`).

"Recently" is measured back from the user's own latest located activity, not from now: someone
back from five weeks' leave in the country they left from is not somewhere new. A country
bordering one the user was in recently, reached through an ISP the user commonly uses, is that
ISP's addresses placed across the border by the IP data (a mobile carrier, a regional ISP), a
common preference of the user rather than a new place.
"""

from __future__ import annotations

from datetime import datetime

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.impossible_travel import COMMON_DAYS
from shared.detection.profiles import BASELINE, TenantProfile, UserProfile
from shared.ipintel import IpInfo
from shared.ipintel.geo import same_or_bordering
from shared.models import utc

DETECTOR_ID = "vigil.infrequent_country"


def recent_since(profile: UserProfile, t: datetime) -> datetime:
    """Where "recently" starts: a baseline back from the user's latest located activity (before
    `t`), so a dormant account's own country does not age out while nobody uses it."""
    latest = max((s.last for s in profile.countries.values() if s.last <= t), default=t)
    return latest - BASELINE


def own_isp_across_border(profile: UserProfile, ip: IpInfo, since: datetime) -> bool:
    """The user's common ISP, placed in a country bordering one the user was in recently."""
    isp = profile.isps.get(ip.isp) if ip.isp else None
    if isp is None or isp.days < COMMON_DAYS:
        return False
    return any(
        s.last >= since and same_or_bordering(c, ip.country) for c, s in profile.countries.items()
    )


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    a, ip = obs.activity, obs.ip
    country = ip.country
    if not obs.geo_eligible or not country or ip.no_physical_location:
        return profile, []
    t = utc(a.time)
    seen = profile.countries.get(country)
    since = recent_since(profile, t)
    new_for_user = seen is None or seen.last < since
    across_border = new_for_user and own_isp_across_border(profile, ip, since)
    new_for_user = new_for_user and not across_border
    new_for_org = country not in tenant.countries
    user_signal = new_for_user and not obs.user_learning
    org_signal = new_for_org and not obs.tenant_learning
    if not (user_signal or org_signal):
        return profile, []
    who = a.actor_email or a.actor_id
    usual = sorted(profile.countries, key=lambda c: -profile.countries[c].days)[:5]
    last_seen = "never" if seen is None else f"{(t - seen.last).days} days ago"
    scope = " and ".join(
        s for s, on in (("the user", new_for_user), ("the organisation", new_for_org)) if on
    )
    return profile, [
        Finding(
            detector_id=DETECTOR_ID,
            window=country,
            title=f"Activity from an infrequent country ({country}) by {who}",
            description=(
                f"{who} was active from {country} ({ip.ip}), new for {scope}. Last seen for the "
                f"user: {last_seen}. Usual countries: {', '.join(usual) or 'none yet'}."
            ),
            severity=cfg.severity or ("medium" if new_for_org else "low"),
            category="InitialAccess",
            mitre_techniques=("T1078",),
            facts={
                "country": country,
                "ip": ip.ip,
                "new_for_user": new_for_user,
                "new_for_org": new_for_org,
                "last_seen_for_user": None if seen is None else seen.last.isoformat(),
                "usual_countries": usual,
                "isp": ip.isp,
            },
            first=a.time,
            last=a.time,
            activity_ids=(a.event_id,),
            suppressions_evaluated=(
                "system (VPN, hosting, Tor): not applicable",
                f"user learning period: {'in progress' if obs.user_learning else 'over'}",
                f"tenant learning period: {'in progress' if obs.tenant_learning else 'over'}",
                f"the user's common ISP across a border: {'yes' if across_border else 'no'}",
            ),
            recommended_actions=(
                "Confirm the trip with the user; add frequent travellers to the policy's "
                "exclude list."
            ),
        )
    ]
