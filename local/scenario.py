"""Simulated traffic for the local stack: ordinary days at the office, and an account takeover.

Everything here is what Workplace would send: signed `workplace_security` webhooks built by the
simulated tenant. Times are parameters, so the demo replays a fixed scenario and `make run`
produces live traffic from the same building blocks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from local.sim_workplace import SimMember, SimulatedWorkplace

# Documentation ranges only (RFC 5737): offices, and the attacker.
OFFICE = {"GB": "198.51.100.10", "PL": "198.51.100.20", "US": "198.51.100.30"}
ATTACKER_IP, ATTACKER_COUNTRY = "203.0.113.66", "BR"

Change = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Delivery:
    """One webhook POST: a few changes in one envelope."""

    changes: tuple[Change, ...]
    label: str


def office_of(member: SimMember) -> tuple[str, str]:
    country = sorted(OFFICE)[int(member.id[-1]) % len(OFFICE)]
    return OFFICE[country], country


def ordinary_day(wp: SimulatedWorkplace, start: datetime, rng: random.Random) -> list[Delivery]:
    """Each member logs in from their office, some mistype a password once, some log out."""
    out: list[Delivery] = []
    for i, member in enumerate(wp.members):
        office = office_of(member)
        at = start + timedelta(minutes=i, seconds=rng.randint(0, 50))
        changes: list[Change] = []
        if rng.random() < 0.3:
            changes.append(_login(wp, "LOGIN_FAILED", member, office, at))
            at += timedelta(seconds=15)
        changes.append(_login(wp, "LOGIN", member, office, at))
        if rng.random() < 0.5:
            changes.append(_login(wp, "LOGOUT", member, office, at + timedelta(hours=1)))
        out.append(Delivery(tuple(changes), f"{member.email} at the office"))
    return out


def brute_force(
    wp: SimulatedWorkplace, victim: SimMember, start: datetime, attempts: int = 14
) -> list[Delivery]:
    """Password guessing from abroad, then a successful login: an account takeover."""
    attacker = (ATTACKER_IP, ATTACKER_COUNTRY)
    times = [start + timedelta(seconds=12 * i) for i in range(attempts + 1)]
    guesses = [_login(wp, "LOGIN_FAILED", victim, attacker, at) for at in times[:-1]]
    # Workplace batches a few changes per delivery.
    batches = [tuple(guesses[i : i + 4]) for i in range(0, attempts, 4)]
    out = [Delivery(b, f"{len(b)} failed logins for {victim.email}") for b in batches]
    success = _login(wp, "LOGIN", victim, attacker, times[-1])
    out.append(Delivery((success,), f"successful login for {victim.email} from {ATTACKER_COUNTRY}"))
    return out


def _login(
    wp: SimulatedWorkplace, event: str, member: SimMember, where: tuple[str, str], at: datetime
) -> Change:
    ip, country = where
    return wp.change(event, actor=member, ip=ip, ip_country=country, timestamp=at)
