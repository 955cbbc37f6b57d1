"""Built-in IP data: the embedded geoip2fast snapshot (no download) and MaxMind `.mmdb` files."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

from shared.config import ConfigError
from shared.ipintel import AnonymousRecord, GeoRecord

_LOCK = threading.Lock()


@functools.cache
def _geoip2fast() -> Any:
    # geoip2fast loads its data with pickle: only ever its own packaged file (never a download).
    from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

    with _LOCK:
        return GeoIP2Fast(verbose=False, geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")


class EmbeddedDatabase:
    """Country and ISP name from geoip2fast's bundled GeoLite2 snapshot (June 2024)."""

    def __init__(self) -> None:
        self._db = _geoip2fast()

    def geo(self, ip: str) -> GeoRecord | None:
        r = self._db.lookup(ip)
        code = getattr(r, "country_code", "") or ""
        if len(code) != 2 or code == "--" or getattr(r, "is_private", False):
            return None
        return GeoRecord(code)

    def asn(self, ip: str) -> tuple[int, str] | None:
        name = getattr(self._db.lookup(ip), "asn_name", "") or ""
        return (0, name) if name else None

    def anonymous(self, ip: str) -> AnonymousRecord | None:
        return None


def _open(setting: str, path: str) -> Any:
    import geoip2.database

    if not Path(path).is_file():
        raise ConfigError(f"{setting}: {path} does not exist; fix the path or unset the setting")
    try:
        return geoip2.database.Reader(path)
    except Exception as exc:
        raise ConfigError(f"{setting}: {path} is not a MaxMind database ({exc})") from None


class MaxMindDatabase:
    """MaxMind City, ASN and Anonymous-IP readers, each used only when its path is configured."""

    def __init__(self, city: str | None, asn: str | None, anonymous: str | None) -> None:
        self._city = _open("GEOIP_CITY_DB", city) if city else None
        self._asn = _open("GEOIP_ASN_DB", asn) if asn else None
        self._anon = _open("GEOIP_ANONYMOUS_DB", anonymous) if anonymous else None

    def geo(self, ip: str) -> GeoRecord | None:
        if self._city is None:
            return None
        from geoip2.errors import AddressNotFoundError

        try:
            r = self._city.city(ip)
        except (AddressNotFoundError, ValueError):
            return None
        radius = r.location.accuracy_radius
        return GeoRecord(
            r.country.iso_code or "",
            r.location.latitude,
            r.location.longitude,
            float(radius) if radius is not None else None,
        )

    def asn(self, ip: str) -> tuple[int, str] | None:
        if self._asn is None:
            return None
        from geoip2.errors import AddressNotFoundError

        try:
            r = self._asn.asn(ip)
        except (AddressNotFoundError, ValueError):
            return None
        return int(r.autonomous_system_number or 0), r.autonomous_system_organization or ""

    def anonymous(self, ip: str) -> AnonymousRecord | None:
        if self._anon is None:
            return None
        from geoip2.errors import AddressNotFoundError

        try:
            r = self._anon.anonymous_ip(ip)
        except (AddressNotFoundError, ValueError):
            return None
        return AnonymousRecord(
            r.is_anonymous,
            r.is_anonymous_vpn,
            r.is_hosting_provider,
            r.is_public_proxy,
            r.is_residential_proxy,
            r.is_tor_exit_node,
        )
