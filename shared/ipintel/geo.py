"""Country geography shipped with Vigil: centroids with a country-sized radius, and neighbours.

`countries.csv` was generated once from GeoNames `countryInfo` (area, `neighbours`; CC BY 4.0)
and the `countryinfo` package's centroids (MIT): latitude, longitude, a radius of
sqrt(area / pi) clamped to 25..1,000 km, and the ISO-3166 alpha-2 codes of bordering countries.
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path

EARTH_RADIUS_KM = 6371.0088
_DATA = Path(__file__).with_name("countries.csv")


@dataclass(frozen=True)
class Country:
    iso: str
    latitude: float
    longitude: float
    radius_km: float
    neighbours: frozenset[str]
    name: str


@functools.cache
def countries() -> dict[str, Country]:
    with _DATA.open(newline="", encoding="utf-8") as f:
        return {
            row["iso"]: Country(
                row["iso"],
                float(row["latitude"]),
                float(row["longitude"]),
                float(row["radius_km"]),
                frozenset(row["neighbours"].split()),
                row["name"],
            )
            for row in csv.DictReader(f)
        }


def country(iso: str) -> Country | None:
    return countries().get(iso.upper()) if iso else None


def same_or_bordering(a: str, b: str) -> bool:
    """True for the same country or neighbours (either side of the map may list the border)."""
    if not a or not b:
        return False
    a, b = a.upper(), b.upper()
    if a == b:
        return True
    ca, cb = country(a), country(b)
    return bool((ca and b in ca.neighbours) or (cb and a in cb.neighbours))


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
