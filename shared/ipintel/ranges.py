"""Customer IP ranges (MDCA categories and tags) and risky IPs, from a YAML file.

```yaml
ranges:
  - name: London office
    cidrs: [198.51.100.0/25]
    category: Corporate          # Corporate, Administrative, Risky, VPN, Cloud provider (or 1-5)
    tags: [office]
    isp: Contoso WAN             # optional ISP override
    country: GB                  # optional location override
risky_ips: [203.0.113.66, 192.0.2.128/25]
```
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.config import ConfigError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CATEGORIES = {
    "corporate": "corporate",
    "administrative": "administrative",
    "risky": "risky",
    "vpn": "vpn",
    "cloud provider": "cloud_provider",
    "cloud_provider": "cloud_provider",
    "1": "corporate",
    "2": "administrative",
    "3": "risky",
    "4": "vpn",
    "5": "cloud_provider",
}


def category_name(raw: object) -> str | None:
    return CATEGORIES.get(str(raw).strip().lower())


@dataclass(frozen=True)
class IpRange:
    name: str
    networks: tuple[IpNetwork, ...]
    category: str
    tags: tuple[str, ...] = ()
    isp: str = ""
    country: str = ""


@dataclass(frozen=True)
class CustomerRanges:
    ranges: tuple[IpRange, ...] = ()
    risky: tuple[IpNetwork, ...] = ()

    def match(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> IpRange | None:
        for r in self.ranges:
            if any(ip.version == n.version and ip in n for n in r.networks):
                return r
        return None

    def is_risky(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == n.version and ip in n for n in self.risky)


def _network(text: object, where: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an IP address or CIDR") from None


def parse_ranges(doc: Any, source: str) -> CustomerRanges:
    """Validate a parsed YAML document; errors name the file, the range and the field."""
    if doc is None:
        return CustomerRanges()
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping with `ranges` and `risky_ips`")
    unknown = set(doc) - {"ranges", "risky_ips"}
    if unknown:
        raise ConfigError(f"{source}: unknown keys {sorted(unknown)} (known: ranges, risky_ips)")
    ranges: list[IpRange] = []
    for i, raw in enumerate(doc.get("ranges") or []):
        name = str(raw.get("name", "")) if isinstance(raw, dict) else ""
        where = f"{source}: range {name or '#' + str(i + 1)}"
        if not isinstance(raw, dict) or not name:
            raise ConfigError(f"{where}: each range needs a `name`")
        cidrs = raw.get("cidrs")
        if not isinstance(cidrs, list) or not cidrs:
            raise ConfigError(f"{where}: field `cidrs` must be a non-empty list")
        category = category_name(raw.get("category", ""))
        if category is None:
            raise ConfigError(
                f"{where}: field `category` must be one of Corporate, Administrative, Risky, "
                f"VPN, Cloud provider; got {raw.get('category')!r}"
            )
        tags = raw.get("tags") or []
        if not isinstance(tags, list):
            raise ConfigError(f"{where}: field `tags` must be a list")
        ranges.append(
            IpRange(
                name,
                tuple(_network(c, f"{where}: field `cidrs`") for c in cidrs),
                category,
                tuple(str(t) for t in tags),
                str(raw.get("isp", "")),
                str(raw.get("country", "")).upper(),
            )
        )
    for i, a in enumerate(ranges):  # MDCA refuses overlapping ranges; so do we
        for b in ranges[i + 1 :]:
            for na in a.networks:
                for nb in b.networks:
                    if na.version == nb.version and na.overlaps(nb):
                        raise ConfigError(
                            f"{source}: range {a.name} ({na}) overlaps range {b.name} ({nb})"
                        )
    risky = tuple(_network(r, f"{source}: field `risky_ips`") for r in (doc.get("risky_ips") or []))
    return CustomerRanges(tuple(ranges), risky)


def load_ranges(path: str | None) -> CustomerRanges:
    if not path:
        return CustomerRanges()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"IP_RANGES_PATH: {path} does not exist; fix the setting or the file")
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_ranges(doc, str(p))
