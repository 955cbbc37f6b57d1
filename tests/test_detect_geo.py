"""The geo detections on sample activity sequences (pure: no storage)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.detection import anonymous_ip, impossible_travel, infrequent_country, suspicious_ip
from shared.detection.base import DetectorConfig, Finding, Observation, Sensitivity
from shared.detection.fold import learn
from shared.detection.profiles import Seen, TenantProfile, UserProfile
from shared.ipintel import IpInfo, IpIntel
from shared.ipintel.ranges import parse_ranges
from shared.models import Activity
from tests.detect_samples import T0, act, known_tenant, located, replay, seasoned

TOR = "203.0.113.50"
RANGES = parse_ranges(
    {
        "ranges": [
            {"name": "HQ", "cidrs": ["198.51.100.0/25"], "category": "Corporate"},
            {"name": "Egress", "cidrs": ["198.51.100.128/26"], "category": "VPN"},
            {"name": "Bad", "cidrs": ["192.0.2.128/25"], "category": "Risky", "tags": ["botnet"]},
        ],
        "risky_ips": ["203.0.113.66"],
    },
    "ranges.yaml",
)
INTEL = IpIntel((), RANGES, frozenset({TOR, "198.51.100.5"}))


# --- anonymous IP -------------------------------------------------------------------------


def test_activity_from_a_tor_exit_alerts_high_with_the_anonymity_in_evidence() -> None:
    _, found = replay(anonymous_ip.detect, [act(ip=TOR)], intel=INTEL)
    (f,) = found
    assert f.severity == "high" and f.facts["anonymity"] == ["tor"]
    assert "Tor exit nodes" in f.facts["tags"]


@pytest.mark.parametrize(
    ("activity", "why"),
    [
        (act(ip="198.51.100.5"), "a Tor exit the customer tags Corporate: custom tags win"),
        (act("login_failed", ip=TOR), "failed logins are skipped by geo detections"),
        (act(ip=TOR, interactive=False), "non-interactive activity is skipped"),
        (act(ip="198.51.100.200"), "an ordinary address"),
    ],
)
def test_anonymous_ip_stays_quiet(activity: Activity, why: str) -> None:
    _, found = replay(anonymous_ip.detect, [activity], intel=INTEL)
    assert found == [], why


def _hosting(ip: str, isp: str = "CloudCo") -> IpInfo:
    return IpInfo(ip, country="NL", isp=isp, category="cloud_provider", anonymous=("hosting",))


def test_a_hosting_provider_new_for_the_user_and_the_org_alerts_once_known_it_does_not() -> None:
    first = act(ip="192.0.2.10")
    later = act(ip="192.0.2.11", at=T0 + timedelta(days=2))
    _, found = replay(
        anonymous_ip.detect,
        [first, later],
        infos={first.event_id: _hosting("192.0.2.10"), later.event_id: _hosting("192.0.2.11")},
    )
    assert [f.facts["ip"] for f in found] == ["192.0.2.10"]  # the user's own provider after
    assert "hosting provider CloudCo: new for the user and the organisation" in (
        found[0].suppressions_evaluated
    )


def test_a_hosting_provider_five_colleagues_use_is_the_orgs_cloud_but_tor_never_is() -> None:
    a = act(ip="192.0.2.99", user="9", email="u9@contoso.com")

    def seen_by(n: int) -> TenantProfile:
        return TenantProfile(anonymous_ip_users={"isp:CloudCo": tuple(str(u) for u in range(n))})

    def found(n: int, info: IpInfo) -> list[Finding]:
        return replay(anonymous_ip.detect, [a], tenant=seen_by(n), infos={a.event_id: info})[1]

    assert found(4, _hosting(a.ip)) == []  # the fifth person on the provider: the org's cloud
    assert len(found(3, _hosting(a.ip))) == 1
    assert len(found(4, replace(_hosting(a.ip), anonymous=("tor",)))) == 1  # never for Tor
    assert len(found(4, _hosting(a.ip, isp="OtherCloud"))) == 1


def test_the_org_learns_who_uses_a_hosting_provider_but_not_an_anonymisers() -> None:
    a = act(ip="192.0.2.10")
    _, taught = learn(UserProfile(), Observation(a, _hosting(a.ip), False, False))
    assert taught.anonymous_ip_users == {"192.0.2.10": (a.actor_id,), "isp:CloudCo": (a.actor_id,)}
    tor = replace(_hosting(a.ip), anonymous=("tor",))
    _, taught = learn(UserProfile(), Observation(a, tor, False, False))
    assert taught.anonymous_ip_users == {"192.0.2.10": (a.actor_id,)}


# --- suspicious IP ------------------------------------------------------------------------


def test_a_customer_risky_ip_and_a_risky_range_alert() -> None:
    _, found = replay(
        suspicious_ip.detect,
        [act(ip="203.0.113.66"), act(ip="192.0.2.200", at=T0 + timedelta(hours=1))],
        intel=INTEL,
    )
    assert [f.facts["ip"] for f in found] == ["203.0.113.66", "192.0.2.200"]
    assert found[1].facts["range"] == "Bad" and found[1].severity == "high"


def test_suspicious_ip_skips_failures_and_clean_or_merely_anonymous_addresses() -> None:
    acts = [act("login_failed", ip="203.0.113.66"), act(ip="198.51.100.200"), act(ip=TOR)]
    _, found = replay(suspicious_ip.detect, acts, intel=INTEL)
    assert found == []


# --- infrequent country -------------------------------------------------------------------


def test_a_country_new_for_the_user_and_the_org_alerts_once() -> None:
    acts = [act(country="BR", ip="203.0.113.9"), act(country="BR", at=T0 + timedelta(hours=1))]
    profile, found = replay(
        infrequent_country.detect, acts, profile=seasoned(GB=20), tenant=known_tenant("GB", "PL")
    )
    (f,) = found
    assert f.facts["new_for_user"] and f.facts["new_for_org"] and f.severity == "medium"
    assert f.facts["usual_countries"] == ["GB"]
    assert "BR" in profile.countries


def test_new_for_the_user_but_known_to_the_org_is_a_low_user_signal() -> None:
    _, found = replay(
        infrequent_country.detect,
        [act(country="PL")],
        profile=seasoned(GB=20),
        tenant=known_tenant("GB", "PL"),
    )
    (f,) = found
    assert f.facts["new_for_user"] and not f.facts["new_for_org"] and f.severity == "low"


def test_no_new_country_alerts_during_the_learning_period() -> None:
    acts = [act(country="GB"), act(country="BR", at=T0 + timedelta(days=2))]
    _, found = replay(infrequent_country.detect, acts)  # a brand-new user in a brand-new tenant
    assert found == []


def test_usual_countries_vpn_ranges_and_failures_do_not_alert() -> None:
    profile, tenant = seasoned(GB=20), known_tenant("GB")
    acts = [
        act(country="GB"),
        act(country="US", ip="198.51.100.130"),  # the customer's VPN egress: no location
        act("login_failed", country="BR"),
    ]
    _, found = replay(infrequent_country.detect, acts, profile=profile, tenant=tenant, intel=INTEL)
    assert found == []


def _last_seen(days_ago: dict[str, int], isps: dict[str, int] | None = None) -> UserProfile:
    """A seasoned user last seen in each country `days_ago`; ISPs used on N days until T0."""
    start = T0 - timedelta(days=90)
    return UserProfile(
        first_seen=start,
        countries={c: Seen(start, T0 - timedelta(days=d), 20) for c, d in days_ago.items()},
        isps={i: Seen(start, T0 - timedelta(days=1), n) for i, n in (isps or {}).items()},
    )


def test_back_from_a_long_absence_in_the_country_left_from_is_not_new() -> None:
    tenant = known_tenant("GB", "BR", "US")

    def found(profile: UserProfile, country: str) -> list[Finding]:
        acts = [act(country=country)]
        return replay(infrequent_country.detect, acts, profile=profile, tenant=tenant)[1]

    dormant = _last_seen({"GB": 34})
    assert found(dormant, "GB") == []
    assert len(found(dormant, "BR")) == 1  # a dormant account used from somewhere new alerts
    busy_elsewhere = _last_seen({"GB": 34, "US": 1})  # GB aged out while the user was active
    assert len(found(busy_elsewhere, "GB")) == 1


@pytest.mark.parametrize(
    ("country", "isp", "days", "alerts"),
    [
        ("DE", "Carrier PL", 5, False),  # the user's carrier, placed across the border
        ("DE", "Other ISP", 5, True),  # a neighbour, but not through the user's ISP
        ("DE", "Carrier PL", 1, True),  # an ISP used once is not a common preference
        ("ES", "Carrier PL", 5, True),  # the user's ISP, but nowhere near
    ],
)
def test_the_users_common_isp_across_a_border_is_not_a_new_country(
    country: str, isp: str, days: int, alerts: bool
) -> None:
    a = act(country=country)
    found = replay(
        infrequent_country.detect,
        [a],
        profile=_last_seen({"PL": 1}, {"Carrier PL": days}),
        tenant=known_tenant("PL", "DE", "ES"),
        infos={a.event_id: IpInfo(a.ip, country=country, isp=isp)},
    )[1]
    assert bool(found) is alerts


# --- impossible travel --------------------------------------------------------------------

NY = located("192.0.2.10", "US", 40.7128, -74.006, 5)
AKL = located("203.0.113.20", "NZ", -36.8485, 174.7633, 20)


def trip(
    first: IpInfo = NY,
    second: IpInfo = AKL,
    hours: float = 2,
    *,
    profile: UserProfile | None = None,
    tenant: TenantProfile | None = None,
    sensitivity: Sensitivity = "medium",
) -> list[Finding]:
    a1 = act(at=T0, ip=first.ip, country=first.country)
    a2 = act(at=T0 + timedelta(hours=hours), ip=second.ip, country=second.country)
    cfg = DetectorConfig(impossible_travel.DETECTOR_ID, sensitivity=sensitivity)
    _, found = replay(
        impossible_travel.detect,
        [a1, a2],
        profile=profile or seasoned(US=30),
        tenant=tenant,
        config=cfg,
        infos={a1.event_id: first, a2.event_id: second},
    )
    return found


def test_new_york_to_auckland_in_two_hours_is_impossible_with_the_worked_figures() -> None:
    (f,) = trip()
    assert f.facts["effective_km"] == pytest.approx(14_169, rel=0.002)
    assert f.facts["kmh"] == pytest.approx(7_084, rel=0.002)
    assert f.facts["radius_from_km"] == 5 and f.facts["radius_to_km"] == 20
    assert f.facts["countries"] == ["US", "NZ"]
    assert f.facts["coordinates"] == [[40.713, -74.006], [-36.849, 174.763]]  # the console's map
    assert "system (VPN, hosting, Tor): passed" in f.suppressions_evaluated


def test_the_same_trip_in_twenty_hours_is_possible() -> None:
    assert trip(hours=20) == []


def test_country_only_locations_are_padded_by_a_country_sized_radius() -> None:
    # Poland -> Germany centroids are ~650 km apart, but they border: never an alert.
    pl, de = located("192.0.2.1", "PL", 52, 20, 315), located("192.0.2.2", "DE", 51, 9, 337)
    assert trip(pl, de, hours=0.1) == []
    # Two countries whose radii swallow the distance: padding makes it possible.
    fr, gb = located("192.0.2.3", "FR", 46, 2, 420), located("192.0.2.4", "GB", 54, -2, 279)
    assert trip(fr, gb, hours=0.5) == []


def test_both_sides_safe_is_trusted_except_at_high_sensitivity() -> None:
    safe_ny = replace(NY, custom_range="HQ-NY", category="corporate")
    safe_akl = replace(AKL, custom_range="HQ-AKL", category="corporate")
    assert trip(safe_ny, safe_akl) == []
    (f,) = trip(safe_ny, safe_akl, sensitivity="high")
    assert "both sides safe: off at sensitivity high" in f.suppressions_evaluated
    assert len(trip(safe_ny, AKL)) == 1  # one safe side: detection runs normally


def test_vpn_hosting_or_tor_on_either_side_is_suppressed_at_every_sensitivity() -> None:
    vpn = replace(AKL, anonymous=("anonymous_vpn",))
    for level in ("low", "medium", "high"):
        assert trip(NY, vpn, sensitivity=level) == []


def test_a_satellite_operators_address_in_flight_says_nothing_about_where_the_user_is() -> None:
    inflight = replace(AKL, asn=22351, isp="Intelsat")  # placed at the operator, not the plane
    for level in ("low", "medium", "high"):
        assert trip(NY, inflight, sensitivity=level) == []
    assert len(trip(NY, replace(AKL, asn=64500, isp="Kiwi Broadband"))) == 1
    a = act(country="NZ")
    new_country = infrequent_country.detect
    seen = seasoned(US=30)
    assert replay(new_country, [a], profile=seen, infos={a.event_id: inflight})[1] == []
    assert len(replay(new_country, [a], profile=seen, infos={a.event_id: AKL})[1]) == 1


def test_a_country_the_user_commonly_uses_is_suppressed_below_high() -> None:
    regular = seasoned(US=30, NZ=10)
    assert trip(profile=regular) == []
    assert len(trip(profile=regular, sensitivity="high")) == 1


def test_an_attacker_abroad_then_the_user_at_home_is_not_suppressed_by_the_home_country() -> None:
    """The user's common country on one side only: the other side is the uncommon activity."""
    assert len(trip(AKL, NY, profile=seasoned(US=30))) == 1  # NZ first, then home
    assert len(trip(NY, AKL, profile=seasoned(US=30))) == 1
    assert trip(AKL, NY, profile=seasoned(US=30, NZ=10)) == []  # both the user's own


def test_an_isp_alerted_before_in_the_org_is_suppressed_only_at_low() -> None:
    akl = replace(AKL, isp="Example Mobile")
    tenant = TenantProfile(alerted_isps={"Example Mobile": T0})
    assert trip(NY, akl, tenant=tenant, sensitivity="low") == []
    assert len(trip(NY, akl, tenant=tenant, sensitivity="medium")) == 1


def test_an_out_of_order_arrival_is_judged_by_its_own_time() -> None:
    a_ny = act(at=T0, ip=NY.ip, country="US")
    a_akl = act(at=T0 + timedelta(hours=2), ip=AKL.ip, country="NZ")
    _, found = replay(
        impossible_travel.detect,
        [a_akl, a_ny],  # Auckland arrives first, New York (earlier) afterwards
        profile=seasoned(US=30),
        infos={a_ny.event_id: NY, a_akl.event_id: AKL},
    )
    (f,) = found
    assert f.facts["countries"] == ["US", "NZ"] and f.facts["hours"] == 2


def test_no_impossible_travel_while_learning_or_for_failed_logins() -> None:
    a1 = act(at=T0, ip=NY.ip, country="US")
    a2 = act(at=T0 + timedelta(hours=2), ip=AKL.ip, country="NZ")
    infos = {a1.event_id: NY, a2.event_id: AKL}
    assert replay(impossible_travel.detect, [a1, a2], infos=infos)[1] == []  # new user
    failed = act("login_failed", at=a2.time, ip=AKL.ip, country="NZ")
    found = replay(
        impossible_travel.detect,
        [a1, failed],
        profile=seasoned(US=30),
        infos={a1.event_id: NY, failed.event_id: AKL},
    )[1]
    assert found == []


def test_an_anonymous_address_many_colleagues_use_is_the_orgs_own_egress() -> None:
    acts = [
        act(ip=TOR, user=str(u), email=f"u{u}@contoso.com", at=T0 + timedelta(minutes=u))
        for u in range(7)
    ]
    _, found = replay(anonymous_ip.detect, acts, intel=INTEL)
    assert len(found) == 4  # the fifth user on the address shows it is widely used
    assert "widely used in the organisation: 3 other user(s)" in found[-1].suppressions_evaluated[1]
