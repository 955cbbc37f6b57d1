"""Sample activities and a pure replay of the detection loop (no storage) for detection tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.detection.base import Detect, DetectorConfig, Directory, Finding
from shared.detection.fold import learn, observe
from shared.detection.profiles import Seen, TenantProfile, UserProfile
from shared.ipintel import IpInfo, IpIntel
from shared.ipintel.ranges import parse_ranges
from shared.models import Activity, short_hash

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TENANT = "504942443827307"
USER = "100064094363063"
LONG_AGO = T0 - timedelta(days=60)


def act(
    type: str = "login",
    *,
    at: datetime = T0,
    ip: str = "198.51.100.7",
    country: str = "GB",
    user: str = USER,
    email: str = "alice@contoso.com",
    outcome: str | None = None,
    event: str | None = None,
    **extra: Any,
) -> Activity:
    name = event or type.upper()
    fields: dict[str, Any] = {
        "source": "workplace",
        "tenant_id": TENANT,
        "event_id": short_hash(user, name, at.isoformat(), ip, country),
        "time": at,
        "type": type,
        "event_name": name,
        "category": "login",
        "outcome": outcome or ("failure" if type.endswith("failed") else "success"),
        "actor_id": user,
        "actor_email": email,
        "ip": ip,
        "country": country,
    }
    return Activity(**{**fields, **extra})


def seasoned(**countries: int) -> UserProfile:
    """A user past their learning period who has been seen in these countries on N days."""
    return UserProfile(
        first_seen=LONG_AGO,
        countries={c: Seen(LONG_AGO, T0 - timedelta(days=1), n) for c, n in countries.items()},
    )


def known_tenant(*countries: str) -> TenantProfile:
    return TenantProfile(first_seen=LONG_AGO, countries=dict.fromkeys(countries, LONG_AGO))


def replay(
    detect: Detect,
    activities: list[Activity],
    *,
    profile: UserProfile | None = None,
    tenant: TenantProfile | None = None,
    intel: IpIntel | None = None,
    config: DetectorConfig | None = None,
    infos: dict[str, IpInfo] | None = None,
    directory: Directory | None = None,
    learning: timedelta = timedelta(days=7),
) -> tuple[UserProfile, list[Finding]]:
    """Fold activities through one detection the way the fold does (observe, decide, learn)."""
    profile = profile or UserProfile()
    view = tenant or TenantProfile()
    intel = intel or IpIntel(())
    cfg = config or DetectorConfig("test", learning=learning)
    found: list[Finding] = []
    for a in activities:
        obs = observe(profile, view, a, intel, learning, directory or Directory())
        info = (infos or {}).get(a.event_id)
        if info is not None:
            obs = replace(obs, ip=info)
        profile, new = detect(profile, view, obs, cfg)
        found.extend(new)
        profile, taught = learn(profile, obs)
        view = view.merge(taught)
    return profile, found


def located(ip: str, country: str, lat: float, lon: float, radius: float, **extra: Any) -> IpInfo:
    return replace(
        IpInfo(ip, country=country), latitude=lat, longitude=lon, radius_km=radius, **extra
    )


def office_intel(offices: dict[str, str], vpn: str, tor: str, risky: str, source: str) -> IpIntel:
    """IP data of a scenario: a Corporate /24 per office country (`prefix + "0/24"`), a VPN /24
    egressing in NL, one Tor exit and one risky IP."""
    ranges = [
        {"name": f"office {c}", "cidrs": [p + "0/24"], "category": "Corporate", "country": c}
        for c, p in offices.items()
    ]
    ranges.append({"name": "vpn", "cidrs": [vpn + "0/24"], "category": "VPN", "country": "NL"})
    return IpIntel(
        (), parse_ranges({"ranges": ranges, "risky_ips": [risky]}, source), frozenset({tor})
    )
