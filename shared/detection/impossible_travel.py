"""Impossible travel: two places closer in time than the travel between them would take.

The speed check pads each location by its accuracy radius (MaxMind `accuracy_radius`, or a
country-sized radius when only the country is known), never alerts for the same or bordering
countries, and then applies the suppressions in order, as MDCA's sensitivity tiers choose them:

| sensitivity | both sides safe | system (VPN, hosting, Tor) | user: common country | tenant: ISP |
| low         | yes             | yes                        | yes                  | yes         |
| medium      | yes             | yes                        | yes                  | no          |
| high        | no              | yes                        | no                   | no          |

(tenant: an ISP the organisation was alerted on before.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.detection.base import DetectorConfig, Finding, Observation
from shared.detection.profiles import Hop, TenantProfile, UserProfile
from shared.ipintel.geo import haversine_km, same_or_bordering
from shared.models import utc

DETECTOR_ID = "vigil.impossible_travel"
MIN_KM = 500.0
MAX_KMH = 900.0  # a cruising airliner (Panther's threshold)
COMMON_DAYS = 3  # a country seen on this many days is commonly used by the user


@dataclass(frozen=True)
class Travel:
    raw_km: float
    effective_km: float
    hours: float
    kmh: float

    @property
    def impossible(self) -> bool:
        return self.effective_km >= MIN_KM and self.kmh > MAX_KMH


def travel(a: Hop, b: Hop) -> Travel:
    raw = haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)
    effective = max(0.0, raw - a.radius_km - b.radius_km)
    hours = max(abs((b.time - a.time).total_seconds()) / 3600, 1 / 60)
    return Travel(raw, effective, hours, effective / hours)


def hop_of(obs: Observation) -> Hop | None:
    return obs.hop


def common(profile: UserProfile, hop: Hop) -> bool:
    """A country the user commonly uses (seen on COMMON_DAYS days or more)."""
    seen = profile.countries.get(hop.country)
    return seen is not None and seen.days >= COMMON_DAYS


def suppressions(
    before: Hop,
    after: Hop,
    profile: UserProfile,
    tenant: TenantProfile,
    cfg: DetectorConfig,
) -> tuple[list[str], str | None]:
    """Every suppression evaluated (for the alert), and the first that applied, if any."""
    level = cfg.sensitivity
    evaluated: list[str] = []
    applied: str | None = None

    def check(name: str, active: bool, hit: bool) -> None:
        nonlocal applied
        if not active:
            evaluated.append(f"{name}: off at sensitivity {level}")
            return
        evaluated.append(f"{name}: {'suppressed' if hit else 'passed'}")
        if hit and applied is None:
            applied = name

    check("both sides safe", level != "high", before.safe and after.safe)
    check(
        "system (VPN, hosting, Tor)",
        True,
        before.no_physical_location or after.no_physical_location,
    )
    check(
        "user (common country)", level != "high", common(profile, before) and common(profile, after)
    )
    check(
        "tenant (ISP alerted before)",
        level == "low",
        bool(after.isp) and after.isp in tenant.alerted_isps,
    )
    return evaluated, applied


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    current = hop_of(obs)
    if not obs.geo_eligible or current is None or obs.user_learning:
        return profile, []
    others = [h for h in profile.hops if h.event_id != current.event_id]
    earlier = [h for h in others if h.time <= current.time]
    later = [h for h in others if h.time > current.time]  # an out-of-order arrival
    pairs = ([(earlier[-1], current)] if earlier else []) + ([(current, later[0])] if later else [])
    for before, after in pairs:
        if same_or_bordering(before.country, after.country):
            continue
        trip = travel(before, after)
        if not trip.impossible:
            continue
        evaluated, applied = suppressions(before, after, profile, tenant, cfg)
        if applied is not None:
            continue
        return profile, [_finding(obs, before, after, trip, evaluated, cfg)]
    return profile, []


def _finding(
    obs: Observation,
    before: Hop,
    after: Hop,
    trip: Travel,
    evaluated: list[str],
    cfg: DetectorConfig,
) -> Finding:
    a = obs.activity
    who = a.actor_email or a.actor_id
    pair = "-".join(sorted((before.country, after.country)))
    new_isp = bool(after.isp and before.isp and after.isp != before.isp)
    span = after.time - before.time
    return Finding(
        detector_id=DETECTOR_ID,
        window=f"{pair}|{utc(a.time).date().isoformat()}",
        title=f"Impossible travel by {who}: {before.country} to {after.country}",
        description=(
            f"{who} was in {before.country} ({before.ip}) at {before.time:%H:%M} UTC and in "
            f"{after.country} ({after.ip}) {_duration(span)} later: {trip.effective_km:,.0f} km "
            f"apart after the locations' accuracy radii ({before.radius_km:,.0f} and "
            f"{after.radius_km:,.0f} km), {trip.kmh:,.0f} km/h."
        ),
        severity=cfg.severity or ("high" if new_isp else "medium"),
        category="InitialAccess",
        mitre_techniques=("T1078",),
        facts={
            "raw_km": round(trip.raw_km, 1),
            "effective_km": round(trip.effective_km, 1),
            "hours": round(trip.hours, 3),
            "kmh": round(trip.kmh, 1),
            "radius_from_km": before.radius_km,
            "radius_to_km": after.radius_km,
            "coordinates": [
                [round(before.latitude, 3), round(before.longitude, 3)],
                [round(after.latitude, 3), round(after.longitude, 3)],
            ],
            "countries": [before.country, after.country],
            "ips": [before.ip, after.ip],
            "isps": [before.isp, after.isp],
            "times": [before.time.isoformat(), after.time.isoformat()],
            "sensitivity": cfg.sensitivity,
            "isp_changed": new_isp,
        },
        first=min(before.time, after.time),
        last=max(before.time, after.time),
        activity_ids=(before.event_id, after.event_id),
        suppressions_evaluated=tuple(evaluated),
        event_count=2,
        recommended_actions=(
            "Ask the user whether they travelled or use a VPN; tag corporate VPN egress ranges as "
            "VPN. If not, require them to sign in again and reset their password."
        ),
        isp=after.isp,
    )


def _duration(span: timedelta) -> str:
    minutes = int(abs(span.total_seconds()) // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
