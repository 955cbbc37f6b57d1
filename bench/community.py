"""A generated community and its security traffic, deterministic for a seed, built lazily."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from local.sim_workplace import SimMember, SimulatedWorkplace

COUNTRIES = ("GB", "PL", "US", "DE", "FR", "NL", "SE", "ES")
START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Shape:
    users: int
    activities: int
    changes_per_delivery: int = 10
    days: int = 5


def members(wp: SimulatedWorkplace, n: int) -> list[SimMember]:
    return [
        SimMember(id=f"1000{i:08d}", name=f"User {i}", email=f"user{i}@contoso.com")
        for i in range(n)
    ]


def deliveries(wp: SimulatedWorkplace, shape: Shape, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Envelopes of `changes_per_delivery` changes, in time order, spread over `days` days.

    Most activity is ordinary logins and logouts from each user's home country; 2 % is failed
    logins; every ~5,000 activities one user is brute-forced from abroad (20 failures).
    """
    rng = random.Random(seed)
    people = members(wp, shape.users)
    home = {m.id: COUNTRIES[i % len(COUNTRIES)] for i, m in enumerate(people)}
    step = timedelta(days=shape.days) / shape.activities
    changes: list[tuple[str, dict[str, Any]]] = []
    made = 0
    t = START
    while made < shape.activities:
        if made and made % 5000 == 0 and shape.activities - made >= 20:
            victim = rng.choice(people)
            for i in range(20):
                changes.append(
                    wp.change(
                        "LOGIN_FAILED",
                        actor=victim,
                        ip="203.0.113.66",
                        ip_country="BR",
                        timestamp=t + timedelta(seconds=5 * i),
                    )
                )
            made += 20
        else:
            m = rng.choice(people)
            r = rng.random()
            event = "LOGIN_FAILED" if r < 0.02 else ("LOGOUT" if r < 0.35 else "LOGIN")
            country = home[m.id]
            changes.append(
                wp.change(
                    event,
                    actor=m,
                    ip=f"198.51.100.{int(m.id) % 250 + 1}",
                    ip_country=country,
                    timestamp=t,
                )
            )
            made += 1
        t += step
        while len(changes) >= shape.changes_per_delivery:
            batch, changes = (
                changes[: shape.changes_per_delivery],
                changes[shape.changes_per_delivery :],
            )
            yield wp.security_envelope(batch, entry_time=int(t.timestamp()))
    if changes:
        yield wp.security_envelope(changes, entry_time=int(t.timestamp()))
