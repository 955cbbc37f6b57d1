"""IP intelligence behind one interface: `IpIntel.lookup(ip, source_country) -> IpInfo`.

Resolution order: customer CIDR ranges -> Tor exit list -> anonymous-IP database -> ASN -> geo.
The first source that knows a category fixes it (customer ranges beat built-in data); tags
accumulate. Geo comes from MaxMind City when configured (coordinates and `accuracy_radius`),
otherwise from the source's own country or the embedded geoip2fast data, placed at the country's
centroid with a country-sized radius.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from shared.ipintel import geo
from shared.ipintel.ranges import CustomerRanges

SAFE_CATEGORIES = frozenset({"corporate", "administrative", "vpn", "cloud_provider"})
# Satellite operators (MDCA's built-in "Satellite providers" tag; Panther's AS22351): their
# addresses are placed at a ground station or the operator's home, not where the user is (in-flight
# Wi-Fi, remote sites). Intelsat, SpaceX Starlink, Viasat, Hughes.
SATELLITE_ASNS = frozenset({22351, 14593, 7155, 6621})


@dataclass(frozen=True)
class GeoRecord:
    country: str = ""
    latitude: float | None = None
    longitude: float | None = None
    radius_km: float | None = None


@dataclass(frozen=True)
class AnonymousRecord:
    is_anonymous: bool = False
    is_anonymous_vpn: bool = False
    is_hosting_provider: bool = False
    is_public_proxy: bool = False
    is_residential_proxy: bool = False
    is_tor_exit_node: bool = False

    def kinds(self) -> tuple[str, ...]:
        names = (
            ("tor", self.is_tor_exit_node),
            ("anonymous_vpn", self.is_anonymous_vpn),
            ("public_proxy", self.is_public_proxy),
            ("residential_proxy", self.is_residential_proxy),
            ("hosting", self.is_hosting_provider),
        )
        found = tuple(n for n, on in names if on)
        return found or (("anonymous_proxy",) if self.is_anonymous else ())


class IpDatabase(Protocol):
    """One source of built-in data (embedded or MaxMind); each method may know nothing."""

    def geo(self, ip: str) -> GeoRecord | None: ...
    def asn(self, ip: str) -> tuple[int, str] | None: ...
    def anonymous(self, ip: str) -> AnonymousRecord | None: ...


@dataclass(frozen=True)
class IpInfo:
    ip: str
    country: str = ""
    latitude: float | None = None
    longitude: float | None = None
    radius_km: float | None = None
    asn: int = 0
    isp: str = ""
    category: str = ""  # corporate | administrative | risky | vpn | cloud_provider | ""
    tags: tuple[str, ...] = ()
    anonymous: tuple[str, ...] = ()  # tor, anonymous_vpn, public_proxy, hosting... (built-in data)
    custom_range: str = ""  # the customer range that matched, if any
    risky_listed: bool = False  # in the customer's risky IPs
    geo_source: str = ""  # maxmind | customer | source | embedded | ""

    @property
    def safe(self) -> bool:
        """Tagged by the customer as one of theirs (Corporate, Administrative, VPN, Cloud)."""
        return bool(self.custom_range) and self.category in SAFE_CATEGORIES

    @property
    def no_physical_location(self) -> bool:
        """VPN, hosting, cloud, Tor or satellite: the address says nothing about where the
        person is."""
        return (
            bool(self.anonymous)
            or self.category in ("vpn", "cloud_provider")
            or self.asn in SATELLITE_ASNS
        )

    @property
    def has_location(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass
class IpIntel:
    databases: tuple[IpDatabase, ...]
    ranges: CustomerRanges = field(default_factory=CustomerRanges)
    tor_exits: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._cache: dict[tuple[str, str], IpInfo] = {}

    def with_tor(self, tor_exits: frozenset[str]) -> IpIntel:
        return IpIntel(self.databases, self.ranges, tor_exits)

    def lookup(self, ip: str, source_country: str = "") -> IpInfo:
        key = (ip, source_country)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._resolve(ip, source_country.upper())
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _resolve(self, ip: str, source_country: str) -> IpInfo:
        try:
            addr = ipaddress.ip_address(ip.strip())
        except ValueError:
            return _placed(IpInfo(ip, country=source_country), "source")
        text = str(addr)
        category = ""
        tags: list[str] = []
        anonymous: tuple[str, ...] = ()
        isp, override_country, custom = "", "", ""
        r = self.ranges.match(addr)
        if r is not None:
            category, custom, isp, override_country = r.category, r.name, r.isp, r.country
            tags.extend(r.tags)
        risky_listed = self.ranges.is_risky(addr)
        if risky_listed:
            category = category or "risky"
            tags.append("Risky IP")
        if text in self.tor_exits:
            anonymous = ("tor",)
            tags.append("Tor exit nodes")
        for db in self.databases:
            anon = db.anonymous(text)
            if anon is not None and anon.kinds():
                anonymous = tuple(dict.fromkeys((*anonymous, *anon.kinds())))
        if anonymous:
            if set(anonymous) & {"tor", "public_proxy", "anonymous_proxy", "residential_proxy"}:
                tags.append("Anonymous proxy")
                category = category or "risky"
            elif "hosting" in anonymous or "anonymous_vpn" in anonymous:
                category = category or ("cloud_provider" if "hosting" in anonymous else "vpn")
        asn = 0
        for db in self.databases:
            a = db.asn(text)
            if a is not None:
                asn, isp = a[0], isp or a[1]
                break
        if asn in SATELLITE_ASNS:
            tags.append("Satellite providers")
        geo_rec, geo_source = None, ""
        for db in self.databases:
            g = db.geo(text)
            if g is not None and g.country:
                geo_rec = g
                geo_source = "maxmind" if g.latitude is not None else "embedded"
                break
        info = IpInfo(
            text,
            asn=asn,
            isp=isp,
            category=category,
            tags=tuple(dict.fromkeys(tags)),
            anonymous=anonymous,
            custom_range=custom,
            risky_listed=risky_listed,
        )
        if override_country:
            return _placed(_with_country(info, override_country), "customer")
        if geo_rec is not None and geo_source == "maxmind":
            return _with_geo(info, geo_rec, "maxmind")
        if source_country:
            return _placed(_with_country(info, source_country), "source")
        if geo_rec is not None:
            return _placed(_with_country(info, geo_rec.country), "embedded")
        return info


def _with_country(info: IpInfo, country: str) -> IpInfo:
    return IpInfo(**{**info.__dict__, "country": country.upper()})


def _with_geo(info: IpInfo, g: GeoRecord, source: str) -> IpInfo:
    return IpInfo(
        **{
            **info.__dict__,
            "country": g.country.upper(),
            "latitude": g.latitude,
            "longitude": g.longitude,
            "radius_km": g.radius_km,
            "geo_source": source,
        }
    )


def _placed(info: IpInfo, source: str) -> IpInfo:
    """A country-only location: the country's centroid with a country-sized radius."""
    c = geo.country(info.country)
    if c is None:
        return IpInfo(**{**info.__dict__, "geo_source": source if info.country else ""})
    return _with_geo(info, GeoRecord(c.iso, c.latitude, c.longitude, c.radius_km), source)
