"""Quality on a labelled scenario: two weeks of benign traffic for 200 users, every attack found.

Benign: people at shared offices (Corporate ranges), at home (their own ISP address), on mobile
networks (a new carrier address every time, same country), on the corporate VPN (egress in
another country, tagged VPN), admins doing their usual admin work, the odd mistyped password.
Attacks, injected after the learning period, one per built-in detection.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.detection import builtins
from shared.detection.base import Directory
from shared.detection.fold import DetectorSet, fold_user
from shared.detection.profiles import TenantProfile, UserProfile
from shared.models import Activity
from tests.detect_samples import T0, act, office_intel

DAYS, USERS = 14, 200
OFFICES = {"GB": "198.51.100.", "PL": "198.51.101.", "US": "198.51.102."}
VPN_EGRESS = "192.0.2."  # in NL, tagged VPN by the customer
TOR, RISKY = "203.0.113.50", "203.0.113.66"
INTEL = office_intel(OFFICES, VPN_EGRESS, TOR, RISKY, "scenario")
LEARNING = timedelta(days=7)
DETECTIONS = DetectorSet(
    builtins.configure({}, learning=LEARNING, failed_login_actions=("revoke_sessions",)),
    (),
    LEARNING,
)


@dataclass(frozen=True)
class Attack:
    user: str
    detector: str
    activities: tuple[Activity, ...]
    directory: Directory = field(default_factory=Directory)


def benign(rng: random.Random) -> dict[str, list[Activity]]:
    out: dict[str, list[Activity]] = {}
    for u in range(USERS):
        user, email = str(1000 + u), f"user{u}@contoso.com"
        country = list(OFFICES)[u % 3]
        office = OFFICES[country] + str(10 + u % 200)
        home = f"100.{64 + u % 50}.{u // 50}.{u % 250 + 1}"
        vpn_user, admin = u % 10 == 0, u % 25 == 0
        acts = out.setdefault(user, [])
        for day in range(DAYS):
            start = T0 + timedelta(days=day, hours=7 + rng.random() * 2)
            for i in range(rng.randint(2, 6)):
                at = start + timedelta(minutes=90 * i + rng.randint(0, 30))
                where = rng.random()
                if vpn_user and where < 0.3:
                    ip, c = VPN_EGRESS + str(u % 200 + 1), country  # source says home country
                elif where < 0.6:
                    ip, c = office, country
                elif where < 0.85:
                    ip, c = home, country
                else:
                    carrier = rng.randint(0, 15), rng.randint(0, 255), rng.randint(1, 254)
                    ip, c = "172.{}.{}.{}".format(16 + carrier[0], *carrier[1:]), country
                if rng.random() < 0.05:
                    acts.append(
                        act("login_failed", at=at, ip=ip, country=c, user=user, email=email)
                    )
                acts.append(
                    act(
                        "login",
                        at=at + timedelta(seconds=30),
                        ip=ip,
                        country=c,
                        user=user,
                        email=email,
                    )
                )
                if admin and i == 1:
                    acts.append(
                        act(
                            "admin_added",
                            event=rng.choice(["ADMIN_CREATED", "EMAIL_CHANGED"]),
                            administrative=True,
                            at=at + timedelta(minutes=5),
                            ip=office,
                            country=country,
                            user=user,
                            email=email,
                        )
                    )
            if admin and day < 3:  # both usual actions seen during learning
                for e in ("ADMIN_CREATED", "EMAIL_CHANGED"):
                    acts.append(
                        act(
                            "admin_added",
                            event=e,
                            administrative=True,
                            at=start + timedelta(hours=3),
                            ip=office,
                            country=country,
                            user=user,
                            email=email,
                        )
                    )
    return out


def attacks() -> list[Attack]:
    day9 = T0 + timedelta(days=9, hours=13)

    def who(u: int) -> dict[str, str]:
        return {"user": str(1000 + u), "email": f"user{u}@contoso.com"}

    return [
        Attack(str(1001), "vigil.anonymous_ip", (act(at=day9, ip=TOR, country="DE", **who(1)),)),
        Attack(str(1002), "vigil.suspicious_ip", (act(at=day9, ip=RISKY, country="GB", **who(2)),)),
        Attack(
            str(1003),
            "vigil.infrequent_country",
            (act(at=day9, ip="198.18.0.3", country="BR", **who(3)),),
        ),
        Attack(
            str(1004),
            "vigil.impossible_travel",
            (
                act(at=day9, ip="100.68.0.5", country="PL", **who(4)),
                act(at=day9 + timedelta(minutes=40), ip="198.18.0.4", country="AU", **who(4)),
            ),
        ),
        Attack(
            str(1005),
            "vigil.terminated_user",
            (act(at=day9, ip="100.69.0.6", country="US", **who(5)),),
            Directory("deactivated", day9 - timedelta(days=1)),
        ),
        Attack(
            str(1006),
            "vigil.multiple_failed_logins",
            tuple(
                act(
                    "login_failed",
                    at=day9 + timedelta(seconds=12 * i),
                    ip="198.18.0.6",
                    country="GB",
                    **who(6),
                )
                for i in range(15)
            ),
        ),
        Attack(
            str(1007),
            "vigil.unusual_admin",
            (
                act(
                    "domain_added",
                    event="DOMAIN_ADDED",
                    administrative=True,
                    at=day9,
                    ip="100.71.0.7",
                    country="GB",
                    **who(7),
                ),
            ),
        ),
        Attack(
            str(1008),
            "vigil.unusual_impersonation",
            (
                act(
                    "other",
                    event="SEND_ON_BEHALF",
                    impersonated=True,
                    at=day9,
                    ip="100.72.0.8",
                    country="US",
                    **who(8),
                ),
            ),
        ),
    ]


def evaluate(
    traffic: dict[str, list[Activity]],
    directories: dict[str, Directory],
    detections: DetectorSet = DETECTIONS,
) -> list[tuple[str, str, datetime]]:
    """Every new alert as (user, detector, time), folding each user's day as one batch."""
    view = TenantProfile()
    found = []
    for user, acts in traffic.items():
        profile = UserProfile()
        acts = sorted(acts, key=lambda x: (x.time, x.event_id))
        for day in range(DAYS):
            batch = [x for x in acts if (x.time - T0).days == day]
            if not batch:
                continue
            fold = fold_user(profile, view, batch, detections, INTEL, directories.get(user))
            profile, view = fold.profile, view.merge(fold.learned)
            found += [
                (user, r.finding.detector_id, r.finding.first)
                for r in fold.raised
                if not r.finding.extends
            ]
    return found


def test_benign_traffic_raises_no_alert_and_every_injected_attack_is_found() -> None:
    traffic = benign(random.Random(4))
    clean = evaluate(traffic, {})
    user_days = USERS * DAYS
    assert clean == [], f"{len(clean)} false alerts in {user_days} user-days: {clean[:5]}"
    for attack in attacks():
        traffic[attack.user] = traffic[attack.user] + list(attack.activities)
    found = evaluate(traffic, {a.user: a.directory for a in attacks()})
    detected = {(u, d) for u, d, _ in found}
    recall = {a.detector: (a.user, a.detector) in detected for a in attacks()}
    assert recall == dict.fromkeys(recall, True), recall
    assert len(recall) == 8


DESTINATION = {"GB": "US", "PL": "JP", "US": "GB"}


def travellers(traffic: dict[str, list[Activity]]) -> list[str]:
    """Every 20th person flies abroad on day 10 (eleven hours after their last login at home)
    and works from a hotel there for the rest of the fortnight."""
    moved = []
    for user, acts in traffic.items():
        u = int(user) - 1000
        if u % 20 != 5:
            continue
        home = [a for a in acts if (a.time - T0).days < 10]
        away = DESTINATION[home[0].country]
        leave = max(a.time for a in home)
        hotel = f"198.18.{u % 250}.1"
        trip = [
            act(
                at=leave + timedelta(hours=11 + 24 * d),
                ip=hotel,
                country=away,
                user=user,
                email=home[0].actor_email,
            )
            for d in range(DAYS - 10)
        ]
        traffic[user] = home + trip
        moved.append(user)
    return moved


def test_travellers_raise_only_their_new_country_and_scope_excludes_them() -> None:
    traffic = benign(random.Random(4))
    moved = travellers(traffic)
    found = evaluate(traffic, {})
    assert {d for _, d, _ in found} == {"vigil.infrequent_country"}  # never impossible travel
    assert sorted(u for u, _, _ in found) == sorted(moved)  # one alert per trip
    excluded = frozenset(f"user{int(u) - 1000}@contoso.com" for u in moved)
    scoped = DetectorSet(
        tuple(
            (d, replace(c, exclude_users=excluded) if d.id == "vigil.infrequent_country" else c)
            for d, c in DETECTIONS.builtins
        ),
        (),
        LEARNING,
    )
    assert evaluate(traffic, {}, scoped) == []
