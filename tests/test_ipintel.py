"""IP intelligence: geography data, customer ranges, Tor list, MaxMind and embedded databases."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mmdb_writer import MmdbU16, MmdbU32, MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]

from shared.config import ConfigError
from shared.ipintel import IpIntel, geo
from shared.ipintel.databases import EmbeddedDatabase, MaxMindDatabase
from shared.ipintel.ranges import load_ranges, parse_ranges
from shared.ipintel.tor import TorEntry, TorExitStore, http_fetch, merge, parse_exit_list, refresh
from shared.services import Services

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- geography ----------------------------------------------------------------------------


def test_the_shipped_country_table_has_centroids_radii_and_neighbours() -> None:
    assert len(geo.countries()) > 240
    us = geo.country("us")
    assert us is not None and us.radius_km == 1000 and "CA" in us.neighbours
    sg = geo.country("SG")
    assert sg is not None and sg.radius_km == 25


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("PL", "PL", True),
        ("PL", "DE", True),
        ("DE", "pl", True),
        ("US", "NZ", False),
        ("", "GB", False),
    ],
)
def test_same_or_bordering(a: str, b: str, expected: bool) -> None:
    assert geo.same_or_bordering(a, b) is expected


def test_haversine_new_york_to_auckland() -> None:
    km = geo.haversine_km(40.7128, -74.006, -36.8485, 174.7633)
    assert km == pytest.approx(14_194, rel=0.002)


def test_a_country_only_address_sits_at_the_centroid_with_a_country_sized_radius() -> None:
    info = IpIntel(()).lookup("192.0.2.1", "pl")
    assert (info.country, info.latitude, info.longitude, info.radius_km) == ("PL", 52, 20, 315)
    assert info.geo_source == "source"


# --- customer ranges ----------------------------------------------------------------------

RANGES_YAML = """
ranges:
  - name: London office
    cidrs: [198.51.100.0/25, "2001:db8::/48"]
    category: Corporate
    tags: [office, london]
    isp: Contoso WAN
    country: GB
  - {name: Cloud, cidrs: [192.0.2.0/26], category: 5}
risky_ips: [203.0.113.66]
"""


def test_customer_ranges_beat_built_in_data_and_tags_accumulate(tmp_path: Path) -> None:
    path = tmp_path / "ranges.yaml"
    path.write_text(RANGES_YAML)
    intel = IpIntel((), load_ranges(str(path)), frozenset({"198.51.100.9"}))
    office = intel.lookup("198.51.100.9", "BR")  # a Tor exit by the list, Corporate by the customer
    assert office.category == "corporate" and office.safe and office.custom_range == "London office"
    assert (
        office.anonymous == ("tor",) and "Tor exit nodes" in office.tags and "office" in office.tags
    )
    assert office.country == "GB" and office.isp == "Contoso WAN"  # the overrides win
    assert intel.lookup("2001:db8::1").category == "corporate"
    assert intel.lookup("192.0.2.1").category == "cloud_provider"
    risky = intel.lookup("203.0.113.66")
    assert risky.category == "risky" and risky.risky_listed and not risky.safe


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"ranges": [{"name": "A", "cidrs": ["10.0.0.0/8"], "category": "Friendly"}]},
            "range A: field `category`",
        ),
        (
            {"ranges": [{"name": "A", "cidrs": ["10.0.0.300/8"], "category": "VPN"}]},
            "range A: field `cidrs`",
        ),
        ({"ranges": [{"name": "A", "category": "VPN"}]}, "range A: field `cidrs`"),
        (
            {
                "ranges": [
                    {"name": "A", "cidrs": ["10.0.0.0/8"], "category": "VPN"},
                    {"name": "B", "cidrs": ["10.1.0.0/16"], "category": "Risky"},
                ]
            },
            "range A (10.0.0.0/8) overlaps range B",
        ),
        ({"risky_ips": ["nope"]}, "field `risky_ips`"),
        ({"rangez": []}, "unknown keys"),
    ],
)
def test_bad_ranges_are_refused_naming_file_range_and_field(doc: object, message: str) -> None:
    with pytest.raises(ConfigError, match="ranges.yaml") as err:
        parse_ranges(doc, "ranges.yaml")
    assert message in str(err.value)


def test_a_missing_ranges_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IP_RANGES_PATH"):
        load_ranges(str(tmp_path / "nope.yaml"))


# --- Tor exit list ------------------------------------------------------------------------

BULK = "185.220.101.1\n185.220.101.2\n\n# comment\nnot-an-ip\n2001:db8::7\n"
DNSEL = """ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E
Published 2026-03-01 20:47:06
LastStatus 2026-03-02 01:00:00
ExitAddress 162.247.74.201 2026-03-02 01:03:34
ExitNode 0091174DE56EADE91E3F8F0BFE57F4C4A8D5A3F6
Published 2026-03-01 11:20:00
LastStatus 2026-03-02 00:00:00
ExitAddress 192.42.116.16 2026-03-02 00:07:10
"""


def test_both_list_formats_parse() -> None:
    assert parse_exit_list(BULK) == {"185.220.101.1", "185.220.101.2", "2001:db8::7"}
    assert parse_exit_list(DNSEL) == {"162.247.74.201", "192.42.116.16"}


def test_entries_unseen_for_72_hours_drop_out() -> None:
    known = {
        "1.1.1.1": TorEntry("1.1.1.1", NOW - timedelta(days=9), NOW - timedelta(hours=73)),
        "2.2.2.2": TorEntry("2.2.2.2", NOW - timedelta(days=9), NOW - timedelta(hours=10)),
        "3.3.3.3": TorEntry("3.3.3.3", NOW - timedelta(days=9), NOW - timedelta(hours=1)),
    }
    merged = merge(known, {"3.3.3.3", "4.4.4.4"}, NOW)
    assert set(merged) == {"2.2.2.2", "3.3.3.3", "4.4.4.4"}
    assert merged["3.3.3.3"].first_seen == NOW - timedelta(days=9)
    assert merged["3.3.3.3"].last_seen == NOW and merged["4.4.4.4"].first_seen == NOW


@pytest.fixture
def tor_list_server() -> Iterator[tuple[str, dict[str, object]]]:
    """A real HTTP server answering the bulk list (or an error, when told)."""
    state: dict[str, object] = {"status": 200, "body": BULK}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(str(state["status"])))
            self.end_headers()
            self.wfile.write(str(state["body"]).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/torbulkexitlist", state
    server.shutdown()
    thread.join(timeout=5)


def test_the_refresh_keeps_the_last_good_copy_when_the_list_fails(
    svc: Services, tor_list_server: tuple[str, dict[str, object]]
) -> None:
    url, state = tor_list_server
    store = TorExitStore(svc.storage.table("IpIntel"))
    assert refresh(store, http_fetch(url), NOW) == (True, 3)
    state["status"] = 503
    assert refresh(store, http_fetch(url), NOW + timedelta(hours=1)) == (False, 3)
    state["status"], state["body"] = 200, "<html>maintenance</html>"
    assert refresh(store, http_fetch(url), NOW + timedelta(hours=2)) == (False, 3)
    assert store.addresses() == frozenset({"185.220.101.1", "185.220.101.2", "2001:db8::7"})


def test_detection_sees_the_stored_tor_list(svc: Services) -> None:
    svc.tor_exits.save({"203.0.113.50": TorEntry("203.0.113.50", NOW, NOW)}, NOW)
    assert svc.ip_intel_with_tor().lookup("203.0.113.50").anonymous == ("tor",)


# --- MaxMind and the embedded database ----------------------------------------------------


def build(path: Path, db_type: str, records: dict[str, dict[str, object]]) -> str:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=db_type, languages=["en"])
    for cidr, data in records.items():
        w.insert_network(IPSet([cidr]), data)
    w.to_db_file(str(path))
    return str(path)


@pytest.fixture
def maxmind(tmp_path: Path) -> MaxMindDatabase:
    city = build(
        tmp_path / "city.mmdb",
        "Test-GeoIP2-City",
        {
            "192.0.2.0/24": {
                "country": {"iso_code": "US", "names": {"en": "United States"}},
                "city": {"names": {"en": "New York"}},
                "location": {
                    "latitude": 40.7128,
                    "longitude": -74.006,
                    "accuracy_radius": MmdbU16(5),
                },
            },
        },
    )
    asn = build(
        tmp_path / "asn.mmdb",
        "Test-GeoLite2-ASN",
        {
            "192.0.2.0/24": {
                "autonomous_system_number": MmdbU32(64500),
                "autonomous_system_organization": "Example Corp",
            }
        },
    )
    anon = build(
        tmp_path / "anon.mmdb",
        "Test-GeoIP2-Anonymous-IP",
        {
            "198.51.100.0/24": {"is_anonymous": True, "is_tor_exit_node": True},
            "203.0.113.0/24": {"is_anonymous": True, "is_hosting_provider": True},
        },
    )
    return MaxMindDatabase(city, asn, anon)


def test_maxmind_gives_coordinates_radius_asn_and_anonymity(maxmind: MaxMindDatabase) -> None:
    intel = IpIntel((maxmind,))
    ny = intel.lookup("192.0.2.10", "FR")  # the City database beats the source's country
    assert (ny.country, ny.latitude, ny.radius_km, ny.geo_source) == ("US", 40.7128, 5.0, "maxmind")
    assert (ny.asn, ny.isp) == (64500, "Example Corp")
    tor = intel.lookup("198.51.100.1", "DE")
    assert tor.anonymous == ("tor",) and tor.category == "risky" and tor.country == "DE"
    hosting = intel.lookup("203.0.113.1")
    assert hosting.anonymous == ("hosting",) and hosting.category == "cloud_provider"
    assert hosting.no_physical_location


def test_a_missing_or_wrong_database_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GEOIP_CITY_DB"):
        MaxMindDatabase(str(tmp_path / "missing.mmdb"), None, None)
    junk = tmp_path / "junk.mmdb"
    junk.write_text("not a database")
    with pytest.raises(ConfigError, match="GEOIP_ASN_DB"):
        MaxMindDatabase(None, str(junk), None)


def test_the_embedded_database_needs_no_download() -> None:
    db = EmbeddedDatabase()
    g = db.geo("8.8.8.8")
    assert g is not None and g.country == "US" and g.latitude is None
    assert db.asn("8.8.8.8") == (0, "GOOGLE")
    assert db.geo("192.0.2.1") is None  # TEST-NET: reserved, no country
    info = IpIntel((db,)).lookup("8.8.8.8")
    assert info.country == "US" and info.radius_km == 1000 and info.geo_source == "embedded"


def test_the_intel_timer_refreshes_the_list_from_the_configured_url(
    vigil_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tor_list_server: tuple[str, dict[str, object]],
) -> None:
    from azure.functions.timer import TimerRequest

    from intel_timer import intel_timer
    from shared import services

    url, _ = tor_list_server
    monkeypatch.setenv("TOR_EXIT_LIST_URL", url)
    services.reset()
    intel_timer.build().get_user_function()(TimerRequest(past_due=False))
    assert services.get_services().tor_exits.addresses() == parse_exit_list(BULK)
