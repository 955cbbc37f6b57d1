"""A second labelled month, written from the contracts rather than beside the detectors.

`bench/labelled.py` was written next to the detections; this month was written from the Workplace
event vocabulary, the Entra schema and the detection semantics alone (docs in the reference
shelf), to find the blind spots the two might share. 300 people in 12 cities for six weeks
(2026-03-02 to 2026-04-12, across both daylight-saving changes), each with a persona whose
ordinary life stresses the detections:

- office workers (hybrid: office, a home line whose address changes every few days, a phone on a
  carrier whose addresses are placed anywhere in the country, now and then across a border);
- travellers on real flights (speeds of a scheduled airliner), on airport and hotel Wi-Fi, with
  in-flight Wi-Fi whose satellite operator's addresses are placed in its home country, and with
  the phone roaming (home-routed, so still in the home country) while abroad;
- the corporate VPN (tagged `VPN`, egress in the US, the Netherlands and Singapore), a security
  service edge cloud proxy (untagged hosting addresses rotating per session), Cloud PCs in
  Azure (untagged hosting), a service account scripting from a cloud VM around the clock;
- night shifts, new joiners (no history, created by an admin the day they start, some in a
  country the organisation has not worked from), people back from five weeks' leave, a team
  conference behind one shared NAT abroad;
- eight admins rotating duties weekly, an onboarding wave done from home, a forced password
  reset of 60 people after which mail apps retry the old password, leavers (who never come back,
  some with a phone that keeps failing to sign in), a rehire, a mistaken deactivation;
- deliveries 1-20 s after the event, 2 % minutes late, 0.5 % hours late, 1 % delivered twice.

Attacks (labelled, after the learning week), several shapes per detection: fast and slow
impossible travel (including an attacker in the victim's own region after a login abroad),
credential stuffing through rotating proxies and a slow brute force, a password spray across
80 people from an IP threat intelligence lists (three succeed), takeover through Tor, a
commercial anonymous VPN and a residential proxy in the victim's own country, sign-ins from a
country new to the user, a compromised admin and an insider admin, a rogue integration acting
for users, and leavers' accounts used after deactivation (one whose deactivation is delivered
after the use).

Replayed and scored by `bench/labelled.py` (`replay`, `score`: the engine's fold, batch per
minute's timer run), with an IP database standing in for MaxMind (city, accuracy radius, ASN,
anonymous-IP flags). False alerts are reported per persona, so each can be explained by class.
`python -m bench.independent` (add `--entra` for the Entra rendering through `bench/entra.py`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import labelled
from bench.labelled import Incident, Traffic
from local.sim_workplace import EVENT_FIELDS
from shared.ipintel import AnonymousRecord, GeoRecord, IpIntel, geo
from shared.ipintel.ranges import parse_ranges
from shared.models import Activity
from shared.workplace.normalize import activity_from_change

USERS, DAYS = 300, 42
START = datetime(2026, 3, 2, tzinfo=UTC)
LEARNING_DAYS = 8  # attacks start after the learning week
COMMUNITY = "771100223344556"
US_DST, EU_DST, AU_DST_END = datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 4, 4, 16, tzinfo=UTC)  # fmt: skip


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float
    utc: float  # standard offset, hours
    dst: str = ""  # "eu", "us", "au" (southern: DST until AU_DST_END)

    def offset(self, at: datetime) -> float:
        if (self.dst == "eu" and at >= EU_DST) or (self.dst == "us" and at >= US_DST):
            return self.utc + 1
        if self.dst == "au" and at < AU_DST_END:
            return self.utc + 1
        return self.utc


CITIES = {
    c.name: c
    for c in (
        City("London", "GB", 51.51, -0.13, 0, "eu"),
        City("Manchester", "GB", 53.48, -2.24, 0, "eu"),
        City("Warsaw", "PL", 52.23, 21.01, 1, "eu"),
        City("Krakow", "PL", 50.06, 19.94, 1, "eu"),
        City("Berlin", "DE", 52.52, 13.40, 1, "eu"),
        City("Frankfurt", "DE", 50.11, 8.68, 1, "eu"),
        City("Paris", "FR", 48.86, 2.35, 1, "eu"),
        City("Amsterdam", "NL", 52.37, 4.90, 1, "eu"),
        City("Dublin", "IE", 53.35, -6.26, 0, "eu"),
        City("Madrid", "ES", 40.42, -3.70, 1, "eu"),
        City("Lisbon", "PT", 38.72, -9.14, 0, "eu"),
        City("New York", "US", 40.71, -74.01, -5, "us"),
        City("Chicago", "US", 41.88, -87.63, -6, "us"),
        City("San Francisco", "US", 37.77, -122.42, -8, "us"),
        City("Ashburn", "US", 39.04, -77.49, -5, "us"),
        City("Toronto", "CA", 43.65, -79.38, -5, "us"),
        City("Mexico City", "MX", 19.43, -99.13, -6),
        City("Sao Paulo", "BR", -23.55, -46.63, -3),
        City("Mumbai", "IN", 19.08, 72.88, 5.5),
        City("Bangalore", "IN", 12.97, 77.59, 5.5),
        City("Singapore", "SG", 1.35, 103.82, 8),
        City("Tokyo", "JP", 35.68, 139.69, 9),
        City("Sydney", "AU", -33.87, 151.21, 10, "au"),
        City("Dubai", "AE", 25.20, 55.27, 4),
        City("Lagos", "NG", 6.52, 3.38, 1),
        City("Moscow", "RU", 55.76, 37.62, 3),
        City("Hanoi", "VN", 21.03, 105.85, 7),
        City("Bucharest", "RO", 44.43, 26.10, 2, "eu"),
    )
}
# Where people live (weights) and the company's offices.
HOMES = {"London": 50, "Manchester": 15, "Warsaw": 30, "Krakow": 15, "Berlin": 25, "Paris": 15,
         "New York": 35, "Chicago": 15, "San Francisco": 20, "Bangalore": 40, "Tokyo": 20,
         "Sydney": 10, "Sao Paulo": 10}  # fmt: skip
OFFICE_OF = {"London": "London", "Manchester": "London", "Warsaw": "Warsaw", "Krakow": "Warsaw",
             "Berlin": "Berlin", "Paris": "Paris", "New York": "New York", "Chicago": "New York",
             "San Francisco": "San Francisco", "Bangalore": "Bangalore", "Tokyo": "Tokyo",
             "Sydney": "Sydney", "Sao Paulo": "Sao Paulo", "Mexico City": "Mexico City"}  # fmt: skip


@dataclass(frozen=True)
class Net:
    """One /24 as an IP database sees it."""

    prefix: str
    city: City
    radius: float
    asn: int
    isp: str
    anonymous: AnonymousRecord | None = None

    def ip(self, rng: random.Random) -> str:
        return self.prefix + str(rng.randint(1, 254))


@dataclass
class World:
    """Every network of the month, and the IP database (MaxMind's stand-in) over them."""

    nets: dict[str, Net] = field(default_factory=dict)
    ranges: list[dict[str, Any]] = field(default_factory=list)
    risky: list[str] = field(default_factory=list)
    tor: set[str] = field(default_factory=set)

    def net(
        self,
        city: str,
        radius: float,
        asn: int,
        isp: str,
        anonymous: AnonymousRecord | None = None,
        category: str = "",
    ) -> Net:
        n = len(self.nets)
        prefix = f"{11 + n // 65536}.{n // 256 % 256}.{n % 256}."
        net = Net(prefix, CITIES[city], radius, asn, isp, anonymous)
        self.nets[prefix] = net
        if category:
            self.ranges.append({"name": f"{isp} {city}", "cidrs": [prefix + "0/24"],
                                "category": category})  # fmt: skip
        return net

    def _of(self, ip: str) -> Net | None:
        return self.nets.get(ip.rsplit(".", 1)[0] + ".")

    def geo(self, ip: str) -> GeoRecord | None:
        n = self._of(ip)
        return GeoRecord(n.city.country, n.city.lat, n.city.lon, n.radius) if n else None

    def asn(self, ip: str) -> tuple[int, str] | None:
        n = self._of(ip)
        return (n.asn, n.isp) if n else None

    def anonymous(self, ip: str) -> AnonymousRecord | None:
        n = self._of(ip)
        return n.anonymous if n else None

    def country(self, ip: str) -> str:
        n = self._of(ip)
        return n.city.country if n else ""

    def intel(self) -> IpIntel:
        doc = {"ranges": self.ranges, "risky_ips": self.risky}
        return IpIntel((self,), parse_ranges(doc, "independent"), frozenset(self.tor))


HOSTING = AnonymousRecord(is_hosting_provider=True)


def build_world() -> tuple[World, dict[Any, Any]]:
    """The networks: offices, homes, carriers, VPN, cloud, hotels, satellites, attackers."""
    w = World()
    n: dict[Any, Any] = {}
    for city in set(OFFICE_OF.values()):
        n["office", city] = w.net(city, 5, 64600, "Contoso WAN", category="Corporate")
    for city in HOMES:
        n["home", city] = [w.net(city, r, 3000 + k, f"Home ISP {k}") for k, r in ((1, 10), (2, 20), (3, 50))]  # fmt: skip
    by_country: dict[str, list[str]] = {}
    for c in CITIES.values():
        by_country.setdefault(c.country, []).append(c.name)
    for country, names in by_country.items():  # carriers: placed anywhere in the country
        n["mobile", country] = [w.net(name, 200, 4000 + len(w.nets), f"Carrier {country}") for name in names * 2]  # fmt: skip
    # Border jitter: some Polish and Irish carrier blocks are placed across the border.
    n["mobile", "PL"].append(w.net("Berlin", 100, 4500, "Carrier PL"))
    n["mobile", "FR"].append(w.net("Madrid", 100, 4501, "Carrier FR"))
    for city in ("Ashburn", "Amsterdam", "Singapore"):
        n["vpn", city] = w.net(city, 20, 64601, "Contoso VPN", category="VPN")
    for city in ("Frankfurt", "Amsterdam", "Paris", "London"):  # security service edge
        n["sse", city] = [w.net(city, 20, 62044, "Zscaler", HOSTING) for _ in range(2)]
    for city in ("Amsterdam", "Ashburn"):  # Azure regions: Cloud PCs, service VMs
        n["azure", city] = [w.net(city, 50, 8075, "Microsoft Azure", HOSTING) for _ in range(2)]
    for city in CITIES:
        n["hotel", city] = w.net(city, 10, 5000 + len(w.nets), f"Hotel Wi-Fi {city}")
        n["airport", city] = w.net(city, 10, 5500 + len(w.nets), f"Airport Wi-Fi {city}")
    # In-flight Wi-Fi: the satellite operator's addresses, placed in its home country.
    n["inflight"] = w.net("Chicago", 1000, 22351, "Intelsat (in-flight)")
    # Attackers' infrastructure.
    for city in ("Lagos", "Moscow", "Sao Paulo", "Hanoi", "Bucharest", "Amsterdam", "Frankfurt"):
        n["vps", city] = w.net(city, 50, 14061, "DigitalOcean", HOSTING)
        n["resi", city] = w.net(city, 20, 7000 + len(w.nets), f"Residential {city}")
    n["tor"] = w.net("Frankfurt", 100, 60729, "Tor relay", AnonymousRecord(is_anonymous=True, is_tor_exit_node=True))  # fmt: skip
    n["anonvpn"] = {c: w.net(c, 50, 9009, "M247 (NordVPN)", AnonymousRecord(is_anonymous=True, is_anonymous_vpn=True)) for c in ("London", "New York", "Warsaw")}  # fmt: skip
    n["resiproxy"] = {c: w.net(c, 20, 3001, "Home ISP 1", AnonymousRecord(is_anonymous=True, is_residential_proxy=True)) for c in ("London", "Berlin")}  # fmt: skip
    n["spray"] = [w.net(c, 50, 14061, "Spray VPS", HOSTING) for c in ("Bucharest", "Hanoi")]
    return w, n


@dataclass
class Person:
    index: int
    id: str
    email: str
    home: City
    persona: str
    home_nets: list[Net]
    admin: bool = False
    joined: int = 0  # first day of work
    left: int = DAYS  # last day of work (exclusive)


PERSONAS = (  # (persona, how many); the rest are hybrid office workers
    ("traveller", 20), ("vpn", 40), ("sse", 30), ("cloudpc", 15), ("mobile", 20),
    ("nightshift", 10), ("joiner", 15), ("leave", 8), ("leaver", 6), ("rehire", 2),
    ("service", 4),
)  # fmt: skip


class Month:
    """One seeded month: the changes, the labelled attacks and each user's persona."""

    def __init__(self, seed: int = 2026) -> None:
        self.rng = random.Random(seed)
        self.world, self.n = build_world()
        self.t = Traffic()
        self.incidents: list[Incident] = []
        self.persona: dict[str, str] = {}
        self.people = self._people()
        self.admins = [p for p in self.people if p.admin]
        self.hijacked: set[str] = set()  # users whose attack ends their ordinary life for a day

    def _people(self) -> list[Person]:
        rng = self.rng
        homes = [c for c, k in HOMES.items() for _ in range(k)]
        rng.shuffle(homes)
        personas = [name for name, k in PERSONAS for _ in range(k)]
        personas += ["office"] * (USERS - len(personas))
        rng.shuffle(personas)
        out = []
        for u in range(USERS):
            home = CITIES[homes[u % len(homes)]]
            persona = personas[u]
            if persona == "joiner" and u % 3 == 0:
                home = CITIES["Mexico City"]  # a new office the organisation never worked from
            if ("home", home.name) not in self.n:
                self.n["home", home.name] = [self.world.net(home.name, r, 3100, "Home ISP MX") for r in (10, 20)]  # fmt: skip
            nets = self.n["home", home.name]
            p = Person(u, str(200000 + u), f"p{u}@fabrikam.com", home, persona, nets)
            p.admin = u in (3, 17, 42, 77, 101, 150, 199, 250)
            if persona == "joiner":
                p.joined = rng.randint(9, DAYS - 6)
            elif persona == "leaver":
                p.left = rng.randint(10, DAYS - 8)
            if p.admin:
                p.persona = "admin"
            self.persona[p.id] = p.persona
            out.append(p)
        return out

    # -- the wire -----------------------------------------------------------------------------

    def add(self, event: str, actor: Person, at: datetime, ip: str,
            target: Person | None = None, **extra: Any) -> None:  # fmt: skip
        target = target or actor
        value = {
            "actor_community_id": COMMUNITY,
            "actor_id": actor.id,
            "actor_email": actor.email,
            "target_id": target.id,
            "target_email": target.email,
            "ip": ip,
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "event": event,
            "ip_country": self.world.country(ip),
            "target_community_id": COMMUNITY,
            "browser_name": "Chrome",
            **extra,
        }
        self.t.changes.append((at, EVENT_FIELDS.get(event, "account"), value))

    def session(self, p: Person, at: datetime, ip: str, actions: int = 2, typo: float = 0.04) -> None:  # fmt: skip
        rng = self.rng
        if rng.random() < typo:
            for k in range(rng.randint(1, 3)):
                self.add("LOGIN_FAILED", p, at - timedelta(seconds=40 - 10 * k), ip)
        self.add("LOGIN", p, at, ip, login_method="sso")
        for k in range(actions):
            ev = "FILE_DOWNLOADED" if rng.random() < 0.7 else "FILE_UPLOADED"
            self.add(ev, p, at + timedelta(minutes=3 + 11 * k + rng.randint(0, 6)), ip)

    # -- ordinary life ------------------------------------------------------------------------

    def local(self, p: Person, day: int, hour: float) -> datetime:
        noon = START + timedelta(days=day, hours=12)
        return START + timedelta(days=day, hours=hour - p.home.offset(noon))

    def place(self, p: Person, day: int) -> str:
        """Where an ordinary session of this person comes from today."""
        rng, n = self.rng, self.n
        r = rng.random()
        mobile = n["mobile", p.home.country]
        if p.persona == "vpn" and r < 0.5:
            return str(n["vpn", rng.choice(("Ashburn", "Amsterdam", "Singapore"))].ip(rng))
        if p.persona == "sse":
            dc = (
                ("Frankfurt", "Amsterdam")
                if p.home.country in ("DE", "PL")
                else ("Paris", "London")
            )
            return str(rng.choice(n["sse", rng.choice(dc)]).ip(rng))
        if p.persona == "cloudpc" and r < 0.7:
            region = "Ashburn" if p.home.country in ("US", "BR") else "Amsterdam"
            return str(rng.choice(n["azure", region]).ip(rng))
        if (p.persona == "mobile" and r < 0.8) or r < 0.12:
            return str(rng.choice(mobile).ip(rng))
        office = n.get(("office", OFFICE_OF.get(p.home.name, "")))
        if office is not None and r < 0.55 and p.persona != "leave":
            return f"{office.prefix}{10 + p.index % 240}"
        # Home: the line's address changes every few days (DHCP), now and then another ISP block.
        net = p.home_nets[0 if (p.index + day // 9) % 5 else 1]
        return f"{net.prefix}{(p.index * 7 + day // 4) % 250 + 1}"

    def ordinary(self) -> None:
        rng = self.rng
        for p in self.people:
            if p.persona == "service":
                self.service(p)
                continue
            away = self.trips(p) if p.persona == "traveller" else set()
            for day in range(DAYS):
                if not p.joined <= day < p.left or day in away:
                    continue
                if p.persona == "leave" and 3 <= day < 37:
                    continue
                weekend = (START + timedelta(days=day)).weekday() >= 5
                if weekend and rng.random() < 0.85:
                    continue
                start_h = 21.5 if p.persona == "nightshift" else 8 + rng.random() * 2
                for k in range(rng.randint(2, 5)):
                    at = self.local(p, day, start_h + 2.2 * k + rng.random())
                    self.session(p, at, self.place(p, day), rng.randint(0, 3))
                    if rng.random() < 0.1:
                        self.add("LOGOUT", p, at + timedelta(minutes=50), self.place(p, day))

    def service(self, p: Person) -> None:
        """A reporting integration's own account: logs in and uploads every hour from a VM."""
        ip = self.n["azure", "Ashburn"][0].prefix + str(200 + p.index % 50)
        for hour in range(DAYS * 24):
            at = START + timedelta(hours=hour, minutes=p.index % 60)
            interactive: dict[str, Any] = {} if p.index % 2 else {"is_interactive": False}
            self.add("LOGIN", p, at, ip, login_method="password", **interactive)
            self.add("FILE_UPLOADED", p, at + timedelta(seconds=20), ip)

    def trips(self, p: Person) -> set[int]:
        """Business trips on real flights; returns the days away (worked here, not at home)."""
        rng, n = self.rng, self.n
        away: set[int] = set()
        day = rng.randint(2, 6)
        while day < DAYS - 5:
            dest = CITIES[rng.choice(["London", "New York", "Warsaw", "Bangalore", "Tokyo",
                                      "Singapore", "Dubai", "Paris", "Madrid", "Toronto",
                                      "San Francisco", "Frankfurt"])]  # fmt: skip
            if dest.country == p.home.country:
                day += 3
                continue
            stay = rng.randint(2, 4)
            there = self.fly(p, p.home, dest, self.local(p, day, 7 + rng.random() * 4))
            for d in range(stay):
                at = there + timedelta(days=d, hours=1 + rng.random())
                for k in range(rng.randint(2, 4)):
                    when = at + timedelta(hours=2.5 * k)
                    r = rng.random()
                    if r < 0.5:
                        ip = n["hotel", dest.name].ip(rng)
                    elif r < 0.8:  # the phone, roaming: home-routed, still the home carrier
                        ip = rng.choice(n["mobile", p.home.country]).ip(rng)
                    else:
                        office = n.get(("office", dest.name))
                        ip = (office or n["hotel", dest.name]).ip(rng)
                    self.session(p, when, ip, rng.randint(0, 2))
            self.fly(p, dest, p.home, there + timedelta(days=stay, hours=3))
            away.update(range(day, day + stay + 2))
            day += stay + rng.randint(6, 10)
        return away

    def fly(self, p: Person, a: City, b: City, depart: datetime) -> datetime:
        """A scheduled flight a -> b leaving at `depart`: airport Wi-Fi before, in-flight Wi-Fi
        on some long flights, the phone on landing. Returns the time of arrival."""
        rng, n = self.rng, self.n
        km = geo.haversine_km(a.lat, a.lon, b.lat, b.lon)
        hours = km / 820 + 0.75 + (2.5 if km > 9000 else 0)  # cruise plus taxi; a connection
        self.session(p, depart - timedelta(minutes=50), n["airport", a.name].ip(rng), 1)
        if hours > 4 and rng.random() < 0.4:
            self.session(p, depart + timedelta(hours=hours / 2), n["inflight"].ip(rng), 1)
        land = depart + timedelta(hours=hours)
        ip = rng.choice([n["airport", b.name], *n["mobile", p.home.country]]).ip(rng)
        self.session(p, land + timedelta(minutes=25), ip, 0)
        return land

    def conference(self) -> None:
        """A team offsite in Lisbon: 30 people behind one shared NAT for two days."""
        rng = self.rng
        ip = self.n["hotel", "Lisbon"].prefix + "77"
        crowd = [p for p in self.people if p.persona == "office" and p.home.country in ("GB", "PL", "DE", "FR")][:30]  # fmt: skip
        ids = {p.id for p in crowd}
        there = (START + timedelta(days=21, hours=18), START + timedelta(days=24, hours=6))
        self.t.changes = [c for c in self.t.changes if not (c[2]["actor_id"] in ids and there[0] <= c[0] < there[1])]  # fmt: skip
        for p in crowd:
            for d in (22, 23):
                at = START + timedelta(days=d, hours=8 + rng.random() * 3)
                for k in range(3):
                    self.session(p, at + timedelta(hours=2.5 * k), ip, 1)

    # -- admins -------------------------------------------------------------------------------

    def admin_work(self) -> None:
        rng, people = self.rng, self.people
        duties = [
            ("ACCOUNT_CREATED", "EMAIL_CHANGED", "ACCOUNT_DEACTIVATED"),
            ("ADMIN_ROLE_CHANGED", "FORCED_PASSWORD_RESET"),
            ("CUSTOM_INTEGRATION_EDIT", "EMAIL_CHANGED"),
        ]
        for i, a in enumerate(self.admins):
            office = self.n["office", OFFICE_OF.get(a.home.name, "London")]
            for day in range(DAYS):
                if (START + timedelta(days=day)).weekday() >= 5:
                    continue
                rota = duties[(i + day // 7) % len(duties)]  # duties rotate weekly
                for k in range(rng.randint(1, 4)):
                    at = self.local(a, day, 10 + 1.5 * k + rng.random())
                    other = people[rng.randrange(USERS)]
                    event = rng.choice(rota)
                    if event == "ACCOUNT_DEACTIVATED":
                        event = "EMAIL_CHANGED"  # real deactivations are the leavers' below
                    self.add(event, a, at, f"{office.prefix}{10 + a.index % 240}", target=other)
        lead, deputy = self.admins[0], self.admins[1]
        # The domain work is the lead's; once, on day 20, the deputy covers it.
        for day, who in ((4, lead), (20, deputy)):
            at = self.local(who, day, 11)
            office = self.n["office", OFFICE_OF.get(who.home.name, "London")]
            self.add("DOMAIN_ADDED", who, at, f"{office.prefix}{10 + who.index % 240}", target=who)
        # Onboarding wave, from the admin's home: the joiners created, given roles and e-mails.
        a = self.admins[2]
        ip = f"{a.home_nets[0].prefix}{(a.index * 7 + 30 // 4) % 250 + 1}"
        start = self.local(a, 30, 9)
        for k, p in enumerate(people[:25]):
            at = start + timedelta(minutes=2 * k)
            self.add("ACCOUNT_CREATED", a, at, ip, target=p)
            self.add("EMAIL_CHANGED", a, at + timedelta(seconds=40), ip, target=p)
            if k % 5 == 0:
                self.add("ADMIN_ROLE_CHANGED", a, at + timedelta(seconds=80), ip, target=p)

    def lifecycle(self) -> None:
        """Joiners created, leavers deactivated (some phones keep trying), a rehire, a mistake."""
        rng = self.rng
        hr = self.admins[3]
        office = self.n["office", OFFICE_OF.get(hr.home.name, "London")]
        hr_ip = f"{office.prefix}{10 + hr.index % 240}"
        for p in self.people:
            if p.persona == "joiner":
                self.add("ACCOUNT_CREATED", hr, self.local(p, p.joined, 7.5), hr_ip, target=p)
            if p.persona in ("leaver", "rehire"):
                left = p.left if p.persona == "leaver" else 12
                off = self.local(p, left - 1, 18)
                self.add("ACCOUNT_DEACTIVATED", hr, off, hr_ip, target=p)
                self.t.changes = [c for c in self.t.changes if not (c[2]["actor_id"] == p.id and off < c[0] < off + timedelta(days=18))]  # fmt: skip
                if p.index % 2:  # the phone keeps trying the old session for a day
                    for k in range(12):
                        self.add("LOGIN_FAILED", p, off + timedelta(hours=2 * k + 1),
                                 rng.choice(self.n["mobile", p.home.country]).ip(rng))  # fmt: skip
                if p.persona == "rehire":
                    self.add("ACCOUNT_ACTIVATED", hr, off + timedelta(days=18), hr_ip, target=p)
        mistaken = next(p for p in self.people if p.persona == "office" and p.index > 200)
        at = self.local(mistaken, 16, 14)
        self.add("ACCOUNT_DEACTIVATED", hr, at, hr_ip, target=mistaken)
        self.add("ACCOUNT_ACTIVATED", hr, at + timedelta(minutes=6), hr_ip, target=mistaken)
        self.t.changes = [c for c in self.t.changes if not (c[2]["actor_id"] == mistaken.id and at <= c[0] <= at + timedelta(minutes=6))]  # fmt: skip

    def reset_storm(self) -> None:
        """After a phishing scare, 60 people's passwords are reset; mail apps retry the old one."""
        rng = self.rng
        a = self.admins[1]
        office = self.n["office", OFFICE_OF.get(a.home.name, "London")]
        start = START + timedelta(days=26, hours=9)
        crowd = [p for p in self.people if p.persona in ("office", "mobile", "vpn")][40:100]
        for k, p in enumerate(crowd):
            at = start + timedelta(seconds=30 * k)
            self.add("FORCED_PASSWORD_RESET", a, at, f"{office.prefix}{10 + a.index % 240}", target=p)  # fmt: skip
            phone = rng.choice(self.n["mobile", p.home.country]).ip(rng)
            every = rng.choice((20, 30, 45, 120, 300))
            tries = rng.randint(6, 40)
            first = at + timedelta(minutes=rng.randint(1, 20))
            for i in range(tries):
                self.add("LOGIN_FAILED", p, first + timedelta(seconds=every * i), phone)
            done = first + timedelta(seconds=every * tries + 60)
            self.add("PASSWORD_CHANGED", p, done, phone)
            self.add("LOGIN", p, done + timedelta(seconds=30), phone)

    # -- attacks ------------------------------------------------------------------------------

    def victims(self) -> list[Person]:
        pool = [p for p in self.people if p.persona in ("office", "mobile", "vpn") and not p.admin][100:]  # fmt: skip
        self.rng.shuffle(pool)
        return pool

    def label(self, detector: str, p: Person, start: datetime, end: datetime) -> None:
        self.incidents.append(Incident(f"vigil.{detector}", p.id, start, end))

    def takeover(self, p: Person, at: datetime, ip: str, steps: int = 4, gap_min: int = 6) -> datetime:  # fmt: skip
        self.add("LOGIN", p, at, ip, login_method="password")
        for i in range(1, steps):
            self.add("FILE_DOWNLOADED", p, at + timedelta(minutes=gap_min * i), ip)
        return at + timedelta(minutes=gap_min * (steps - 1))

    def attacks(self) -> None:
        rng, n = self.rng, self.n
        victims = iter(self.victims())

        def day(d: int, hour: float) -> datetime:
            return START + timedelta(days=d, hours=hour)

        # Impossible travel: fast (an hour), slow (just above airliner speed), and back home.
        for d, far, gap_h in ((9, "Lagos", 1.0), (15, "Hanoi", 8.0), (24, "Sao Paulo", 2.5), (33, "Moscow", 1.5)):  # fmt: skip
            v = next(victims)
            home_ip = self.place(v, d)
            t0 = self.local(v, d, 10)
            self.session(v, t0, home_ip, 1, typo=0)
            if CITIES[far].country == v.home.country:
                far = "Lagos"
            end = self.takeover(v, t0 + timedelta(hours=gap_h), n["resi", far].ip(rng), 3)
            self.label("impossible_travel", v, t0, end)
        # An attacker abroad, then the victim's own login at home soon after (the order reversed).
        v = next(victims)
        t0 = day(28, 3)
        self.takeover(v, t0, n["resi", "Bucharest"].ip(rng), 2)
        back = t0 + timedelta(hours=1.5)  # the victim, up early (or late) at home
        self.session(v, back, self.place(v, 28), 1, typo=0)
        self.label("impossible_travel", v, t0, back)
        # Infrequent country: a new country, from a residential line (no anonymiser).
        for d, where in ((11, "Lagos"), (19, "Hanoi"), (27, "Moscow"), (35, "Bucharest")):
            v = next(victims)
            at = day(d, 2 + rng.random() * 4)
            self.label("infrequent_country", v, at, self.takeover(v, at, n["resi", where].ip(rng)))
        # Anonymous: Tor; a commercial VPN in the victim's own country; a residential proxy.
        for d in (10, 21):
            v = next(victims)
            ip = n["tor"].ip(rng)
            self.world.tor.add(ip)
            at = day(d, 14)
            self.label("anonymous_ip", v, at, self.takeover(v, at, ip))
        for d, city in ((17, "London"), (31, "New York")):
            v = next(victims)
            at = day(d, 16)
            self.label("anonymous_ip", v, at, self.takeover(v, at, n["anonvpn"][city].ip(rng)))
        v = next(victims)
        at = day(25, 20)
        self.label("anonymous_ip", v, at, self.takeover(v, at, n["resiproxy"]["Berlin"].ip(rng)))
        # Suspicious (threat intelligence lists the IP): a password spray across 80 people at two
        # tries each, from two addresses; three accounts fall and are used.
        spray = [n["spray"][0].ip(rng), n["spray"][1].ip(rng)]
        self.world.risky.extend(spray)
        t0 = day(18, 1)
        targets = [p for p in self.people if p.persona == "office"][:80]
        for k, p in enumerate(targets):
            for i in range(2):
                self.add("LOGIN_FAILED", p, t0 + timedelta(minutes=k, seconds=20 * i), spray[k % 2])
        for k in range(3):
            v = next(victims)
            at = t0 + timedelta(hours=2 + k)
            self.label("suspicious_ip", v, at, self.takeover(v, at, spray[k % 2], 3))
        v = next(victims)  # another listed address, a single session
        ip = n["vps", "Amsterdam"].ip(rng)
        self.world.risky.append(ip)
        at = day(30, 11)
        self.label("suspicious_ip", v, at, self.takeover(v, at, ip, 2))
        # Failed logins: stuffing through rotating proxies (fast), a slow brute force, and a
        # burst from one address followed by success.
        for d in (12, 29):
            v = next(victims)
            at = day(d, 4)
            for i in range(25):
                ip = n["resi", rng.choice(("Lagos", "Moscow", "Hanoi", "Sao Paulo"))].ip(rng)
                self.add("LOGIN_FAILED", v, at + timedelta(seconds=7 * i), ip)
            self.label("multiple_failed_logins", v, at, at + timedelta(seconds=7 * 24))
        v = next(victims)
        at = day(20, 0)
        ip = n["vps", "Frankfurt"].ip(rng)
        for i in range(45):  # one try every 4 minutes for three hours
            self.add("LOGIN_FAILED", v, at + timedelta(minutes=4 * i), ip)
        self.label("multiple_failed_logins", v, at, at + timedelta(minutes=4 * 44))
        v = next(victims)
        at = day(34, 13)
        ip = n["resi", "Bucharest"].ip(rng)
        for i in range(14):
            self.add("LOGIN_FAILED", v, at + timedelta(seconds=15 * i), ip)
        self.label("multiple_failed_logins", v, at, self.takeover(v, at + timedelta(minutes=4), ip, 2))  # fmt: skip
        # Terminated: a leaver's account used two days after; a deleted account used the same
        # hour; a deactivation delivered late, after the use it precedes (see `arrivals`).
        for k, (d, lag) in enumerate(((13, timedelta(days=2)), (22, timedelta(minutes=40)), (32, timedelta(hours=5)))):  # fmt: skip
            v = next(victims)
            hr = self.admins[3]
            off = self.local(hr, d, 16)
            event = "ACCOUNT_DELETED" if k == 1 else "ACCOUNT_DEACTIVATED"
            office = self.n["office", OFFICE_OF.get(hr.home.name, "London")]
            self.add(event, hr, off, f"{office.prefix}{10 + hr.index % 240}", target=v,
                     late_hours=3 if k == 2 else 0)  # fmt: skip
            self.t.changes = [c for c in self.t.changes if not (c[2]["actor_id"] == v.id and c[0] > off)]  # fmt: skip
            at = off + lag
            self.label("terminated_user", v, at, self.takeover(v, at, self.place(v, d), 3))
        # Unusual admin: a compromised admin at night from abroad; an insider admin granting
        # himself rights and adding a domain from the office; a non-admin suddenly administering.
        a = self.admins[5]
        at = day(16, 2.5)
        ip = n["resi", "Lagos"].ip(rng)
        for i, ev in enumerate(("ADMIN_CREATED", "DOMAIN_ADDED", "CUSTOM_INTEGRATION_EDIT")):
            self.add(ev, a, at + timedelta(minutes=4 * i), ip, target=self.people[i + 5])
        self.label("unusual_admin", a, at, at + timedelta(minutes=8))
        a = self.admins[6]
        office = self.n["office", OFFICE_OF.get(a.home.name, "London")]
        at = self.local(a, 23, 11)
        for i, ev in enumerate(("ACCOUNT_PROMOTED_TO_ADMIN", "DOMAIN_ADDED", "ADMIN_CREATED")):
            self.add(ev, a, at + timedelta(minutes=6 * i), f"{office.prefix}{10 + a.index % 240}", target=a)  # fmt: skip
        self.label("unusual_admin", a, at, at + timedelta(minutes=12))
        v = next(victims)
        at = day(26, 22)
        ip = n["vps", "Moscow"].ip(rng)
        self.add("LOGIN", v, at - timedelta(minutes=2), ip)
        self.add("ADMIN_ROLE_CHANGED", v, at, ip, target=self.people[9])
        self.label("unusual_admin", v, at, at)
        # Unusual impersonation: a rogue integration acting for people who never had one.
        for d in (14, 27, 36):
            v = next(victims)
            at = day(d, 3)
            ip = n["vps", "Frankfurt"].ip(rng)
            for i in range(3):
                self.add("FILE_DOWNLOADED", v, at + timedelta(minutes=5 * i), ip,
                         impersonator_id="990000000000777", impersonator_email="sync@evil.example")  # fmt: skip
            self.label("unusual_impersonation", v, at, at + timedelta(minutes=10))

    def impersonation_routine(self) -> None:
        """A file-sync integration acting for a fifth of the people from Azure, all month."""
        rng = self.rng
        for p in self.people[::5]:
            if p.persona in ("service", "leaver", "rehire", "leave", "joiner"):
                continue
            ip = self.n["azure", "Ashburn"][1].ip(rng)
            for day in range(DAYS):
                at = START + timedelta(days=day, hours=rng.randint(0, 23), minutes=rng.randint(0, 59))  # fmt: skip
                self.add("FILE_UPLOADED", p, at, ip, impersonator_id="990000000000001",
                         impersonator_email="filesync@fabrikam.com")  # fmt: skip

    def build(self) -> Month:
        self.ordinary()
        self.conference()
        self.admin_work()
        self.impersonation_routine()
        self.reset_storm()
        self.attacks()  # before the lifecycle: leavers' removal of later activity covers them
        self.lifecycle()
        return self


def arrivals(t: Traffic, seed: int = 7) -> list[tuple[datetime, Activity]]:
    """Webhook deliveries: 1-20 s after the event; 2 % minutes and 0.5 % hours late; 1 %
    delivered again later; the ones marked `late_hours` that much late."""
    rng = random.Random(seed)
    out = []
    for at, fld, value in sorted(t.changes, key=lambda c: c[0]):
        value = dict(value)
        late = float(value.pop("late_hours", 0) or 0)
        r = rng.random()
        delay = timedelta(seconds=rng.uniform(1, 20))
        if late:
            delay = timedelta(hours=late)
        elif r < 0.005:
            delay = timedelta(hours=rng.uniform(1, 6))
        elif r < 0.025:
            delay = timedelta(minutes=rng.uniform(2, 45))
        entry = {"id": COMMUNITY, "time": int(at.timestamp())}
        times = [at + delay]
        if rng.random() < 0.01:
            times.append(at + delay + timedelta(minutes=rng.uniform(1, 120)))
        for arrived in times:
            out.append((arrived, activity_from_change(entry, fld, value, arrived)))
    return out


def scenario(seed: int = 2026) -> Month:
    return Month(seed).build()


def user_days(m: Month) -> int:
    return sum(min(p.left, DAYS) - p.joined for p in m.people)


def explain(result: dict[str, Any], m: Month) -> dict[str, Any]:
    """False alerts by (detector, persona) and misses by detector."""
    false = Counter(f"{d} / {m.persona.get(u, '?')}" for d, u, _ in result["false_alerts"])
    return {**result, "false_by_class": dict(false.most_common())}


def run(seed: int = 2026) -> dict[str, Any]:
    m = scenario(seed)
    # Strip the delivery hints before rendering, so the Workplace wire stays as documented.
    intel = m.world.intel()
    result = labelled.score(arrivals(m.t), m.incidents, intel, user_days(m))
    result["users"], result["days"] = USERS, DAYS
    return explain(result, m)


def run_entra(seed: int = 2026) -> dict[str, Any]:
    """The same month rendered as Entra sign-ins and directory audits (bench/entra.py)."""
    from bench import entra

    m = scenario(seed)
    for _, _, v in m.t.changes:
        v.pop("late_hours", None)
    records, skipped = entra.render(m.t)
    kept = []
    for i in m.incidents:
        user = entra.object_id(i.user)
        if any(
            entra.object_id(v["actor_id"]) == user and i.start <= at <= i.end
            for at, _, v in m.t.changes
            if v["event"] in entra.SIGN_INS or v["event"] in entra.AUDIT_NAMES
        ):
            kept.append(Incident(i.detector, user, i.start, i.end))
    result = labelled.score(entra.arrivals(records), kept, m.world.intel(), user_days(m))
    persona = {entra.object_id(u): p for u, p in m.persona.items()}
    m.persona = persona
    result["users"], result["days"] = USERS, DAYS
    result["not_rendered"] = dict(skipped.most_common())
    return explain(result, m)


def report(result: dict[str, Any], title: str = "Workplace") -> str:
    lines = [
        f"## Independent month ({title}: {result['users']} users x {result['days']} days, "
        f"{result['activities']:,} activities, {result['incidents']} attacks)",
        "",
        "| Detector | Recall |",
        "|---|---|",
        *(f"| `{d}` | {r:.0%} |" for d, r in result["recall"].items()),
        "",
        f"- False alerts: {len(result['false_alerts'])} "
        f"({result['false_alerts_per_1000_user_days']:.2f} per 1,000 user-days)",
        f"- Alerts per incident: {result['alerts_per_incident']:.2f} "
        f"(+{result['related_alerts']} other detectors' alerts on the attacks)",
        "- False alerts by detector / persona: "
        + (", ".join(f"{k} {v}" for k, v in result["false_by_class"].items()) or "none"),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--entra", action="store_true", help="also the Entra rendering")
    ap.add_argument("--verbose", action="store_true", help="list every false alert")
    args = ap.parse_args()
    results = [("Workplace", run(args.seed))]
    if args.entra:
        results.append(("Entra", run_entra(args.seed)))
    for title, r in results:
        print(report(r, title))
        if args.verbose:
            print(json.dumps(r["false_alerts"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
