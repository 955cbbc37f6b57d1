"""Activity from an infrequent country: new for the user (in 30 days), and/or new for the org.

No alerts while the user's (for the user signal) or the tenant's (for the org signal) learning
period lasts. Addresses with no physical location (VPN, hosting, Tor) say nothing about the
country and are skipped. The window is the country: one incident per country (`incidents.MERGE`).
"""

from __future__ import annotations

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import BASELINE, TenantProfile, UserProfile
from shared.models import utc

DETECTOR_ID = "vigil.infrequent_country"


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    a, ip = obs.activity, obs.ip
    country = ip.country
    if not obs.geo_eligible or not country or ip.no_physical_location:
        return profile, []
    t = utc(a.time)
    seen = profile.countries.get(country)
    new_for_user = seen is None or seen.last < t - BASELINE
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
            ),
            recommended_actions=(
                "Confirm the trip with the user; add frequent travellers to the policy's "
                "exclude list."
            ),
        )
    ]
