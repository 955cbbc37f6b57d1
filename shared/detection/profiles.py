"""What the detections remember: per-user and per-tenant profiles, all on event time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

BASELINE = timedelta(days=30)  # MDCA compares with "the past month"
MAX_HOPS = 20
HOP_RETENTION = timedelta(days=2)
MAX_KEYS = 200
WIDELY_USED = 5  # users on one anonymous-looking address before it counts as the org's
MAX_ANONYMOUS_IPS = 2000
MAX_ALERTS = 1000  # alert ids kept for dedup; keeps the profile entity small


@dataclass(frozen=True)
class Seen:
    """First and last time an attribute (a country, an admin action) was seen; on how many days."""

    first: datetime
    last: datetime
    days: int = 1

    def again(self, t: datetime) -> Seen:
        day = t.date()
        if day == self.last.date() and self.first <= t <= self.last:
            return self  # the most common case: again today, nothing new to remember
        new_day = day not in (self.first.date(), self.last.date())
        return Seen(min(self.first, t), max(self.last, t), self.days + (1 if new_day else 0))


def remember(seen: dict[str, Seen], key: str, t: datetime) -> dict[str, Seen]:
    """`seen` with `key` seen at `t` (the same dict when nothing changed); a new key ages out
    entries unseen for three baseline periods."""
    old = seen.get(key)
    if old is not None:
        new = old.again(t)
        return seen if new is old else {**seen, key: new}
    out = {**seen, key: Seen(t, t)}
    newest = max(s.last for s in out.values())
    out = {k: s for k, s in out.items() if s.last >= newest - 3 * BASELINE}
    if len(out) > MAX_KEYS:
        out = dict(sorted(out.items(), key=lambda kv: kv[1].last)[-MAX_KEYS:])
    return out


@dataclass(frozen=True)
class Hop:
    """A place the user was, for impossible travel (MozDef's locality)."""

    time: datetime
    event_id: str
    ip: str
    country: str
    latitude: float
    longitude: float
    radius_km: float
    isp: str = ""
    safe: bool = False  # a customer range (Corporate, VPN...)
    no_physical_location: bool = False  # VPN, hosting, Tor: says nothing about where


@dataclass(frozen=True)
class Failure:
    time: datetime
    event_id: str
    ip: str = ""
    country: str = ""


@dataclass(frozen=True)
class OpenBurst:
    alert_id: str
    first: datetime
    last: datetime
    count: int


@dataclass(frozen=True)
class BurstState:
    """Matching events kept for an N-within-M count, and the burst already alerted, if any."""

    failures: tuple[Failure, ...] = ()
    burst: OpenBurst | None = None


@dataclass(frozen=True)
class Stamp:
    """One activity, briefly: when, which, what and from where."""

    time: datetime
    event_id: str
    event: str = ""
    ip: str = ""


@dataclass(frozen=True)
class DaySpan:
    """The first and last of a user's own activities on one event day (for late re-checks)."""

    first: Stamp
    last: Stamp


@dataclass(frozen=True)
class Lifecycle:
    """An account switched off (`enabled` false) or on again, by one source, at an event time."""

    time: datetime
    source: str  # workplace | entra
    enabled: bool
    event_id: str = ""


@dataclass(frozen=True)
class Incident:
    """An alert still growing: findings of its detector within its merge window join it."""

    alert_id: str
    key: str  # the finding window that opened it
    created: datetime  # the alert's row key time: never moves
    first: datetime
    last: datetime


@dataclass(frozen=True)
class UserProfile:
    first_seen: datetime | None = None
    countries: dict[str, Seen] = field(default_factory=dict)
    isps: dict[str, Seen] = field(default_factory=dict)
    hops: tuple[Hop, ...] = ()
    admin: dict[str, Seen] = field(default_factory=dict)
    impersonated: dict[str, Seen] = field(default_factory=dict)
    failed: BurstState = field(default_factory=BurstState)
    failed_peaks: dict[str, int] = field(default_factory=dict)  # event day -> busiest window
    repeated: dict[str, BurstState] = field(default_factory=dict)  # per activity policy
    alerts: dict[str, datetime] = field(default_factory=dict)  # alert id -> its last activity
    # Deactivations and re-activations of this account (the target of an admin's action).
    lifecycle: tuple[Lifecycle, ...] = ()
    active: dict[str, DaySpan] = field(default_factory=dict)  # event day -> own activity
    incidents: dict[str, tuple[Incident, ...]] = field(default_factory=dict)  # per detector
    admin_where: dict[str, Seen] = field(default_factory=dict)  # "country:GB", "isp:..", "ip:.."
    admin_hours: dict[str, Seen] = field(default_factory=dict)  # hour of day "00".."23"
    hours: dict[str, datetime] = field(default_factory=dict)  # hour of day -> last own activity
    admin_recent: tuple[Stamp, ...] = ()  # the last admin actions (bursts)

    def evolve(self, **changes: Any) -> UserProfile:
        """`dataclasses.replace` without re-running `__init__`: this runs once per activity."""
        new = object.__new__(UserProfile)
        new.__dict__.update(self.__dict__, **changes)
        return new

    def with_hop(self, hop: Hop) -> UserProfile:
        hops = self.hops
        if hops and hop.time >= hops[-1].time:  # the usual case: the newest place
            if hop.time == hops[-1].time and any(h.event_id == hop.event_id for h in hops):
                return self
            kept = (*hops, hop)
        else:
            if any(h.event_id == hop.event_id for h in hops):
                return self
            kept = tuple(sorted((*hops, hop), key=lambda h: (h.time, h.event_id)))
        cutoff = kept[-1].time - HOP_RETENTION
        if kept[0].time < cutoff:
            kept = tuple(h for h in kept if h.time >= cutoff)
        return self.evolve(hops=kept[-MAX_HOPS:])

    def with_alert(self, alert_id: str, last: datetime) -> UserProfile:
        """Remember an alert raised (for dedup) for two baseline periods, at most MAX_ALERTS."""
        alerts = {**self.alerts, alert_id: max(last, self.alerts.get(alert_id, last))}
        newest = max(alerts.values())
        alerts = {k: t for k, t in alerts.items() if t >= newest - 2 * BASELINE}
        if len(alerts) > MAX_ALERTS:
            alerts = dict(sorted(alerts.items(), key=lambda kv: kv[1])[-MAX_ALERTS:])
        return self.evolve(alerts=alerts)


@dataclass(frozen=True)
class TenantProfile:
    """Organisation-wide memory. Every field merges commutatively, so concurrent updates combine."""

    first_seen: datetime | None = None
    countries: dict[str, datetime] = field(default_factory=dict)  # country -> first seen
    alerted_isps: dict[str, datetime] = field(default_factory=dict)  # tenant suppression tier
    # Anonymous-looking addresses -> the users seen on them (a few): one that many people use
    # is the organisation's own egress mis-tagged by the IP data, not an attacker's proxy. A hosting
    # range's provider is counted too, as "isp:<name>" (cloud proxies, Cloud PCs).
    anonymous_ip_users: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Admin actions -> a few of the users who did them (how common an action is in the org).
    admin_actions: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def merge(self, other: TenantProfile) -> TenantProfile:
        """Both profiles combined (`self` itself when `other` adds nothing: the common case)."""
        first = self.first_seen
        if other.first_seen is not None and (first is None or other.first_seen < first):
            first = other.first_seen
        countries = _combine(self.countries, other.countries, min)
        isps = _combine(self.alerted_isps, other.alerted_isps, max)
        shared = _few_users(self.anonymous_ip_users, other.anonymous_ip_users)
        if len(shared) > MAX_ANONYMOUS_IPS:
            shared = dict(list(shared.items())[-MAX_ANONYMOUS_IPS:])
        admin = _few_users(self.admin_actions, other.admin_actions)
        if (first, countries, isps, shared, admin) == (
            self.first_seen,
            self.countries,
            self.alerted_isps,
            self.anonymous_ip_users,
            self.admin_actions,
        ):
            return self
        return TenantProfile(first, countries, isps, shared, admin)


def _few_users(
    mine: dict[str, tuple[str, ...]], theirs: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Union per key of at most WIDELY_USED users (commutative: the lowest ids are kept)."""
    out = mine
    for k, users in theirs.items():
        have = mine.get(k, ())
        if len(have) < WIDELY_USED and not set(users) <= set(have):
            joined = tuple(sorted(set(have) | set(users)))[:WIDELY_USED]
            out = {**out, k: joined}
    return out


def _combine(
    mine: dict[str, datetime],
    theirs: dict[str, datetime],
    pick: Callable[[datetime, datetime], datetime],
) -> dict[str, datetime]:
    out = mine
    for k, v in theirs.items():
        old = mine.get(k)
        new = v if old is None else pick(old, v)
        if new != old:
            out = {**out, k: new} if out is mine else out
            out[k] = new
    return out
