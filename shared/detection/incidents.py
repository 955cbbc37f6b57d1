"""One alert per incident: which findings of a detector join an open alert (pure, event time).

A finding joins the user's open alert of the same detector when it falls within the detector's
merge gap of that alert's activity (before or after it: late arrivals join too); the alert's
counts, activities, IPs and last activity then grow. Some detectors merge only findings of the
same window: infrequent country per country, terminated user per termination (however long).
Activity policies are not listed: a single-activity policy alerts on every match, a repeated
one per burst (`bursts.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shared.alerts import merge_facts
from shared.detection import (
    anonymous_ip,
    failed_logins,
    impossible_travel,
    infrequent_country,
    suspicious_ip,
    terminated_user,
    unusual_admin,
    unusual_impersonation,
)
from shared.detection.base import Finding
from shared.detection.profiles import Incident, UserProfile
from shared.models import short_hash, utc

KEPT_PER_DETECTOR = 4  # incidents remembered per slot (late findings may join older ones)
MAX_SLOTS = 40  # slots (a detector, or a detector and window) kept, most recently active first


@dataclass(frozen=True)
class Merge:
    gap: timedelta  # findings this close (event time) to the alert's activity join it
    same_window: bool = False  # only findings of the same window join (a country, a termination)


MERGE: dict[str, Merge] = {
    anonymous_ip.DETECTOR_ID: Merge(timedelta(hours=1)),
    suspicious_ip.DETECTOR_ID: Merge(timedelta(hours=1)),
    infrequent_country.DETECTOR_ID: Merge(timedelta(hours=24), same_window=True),
    impossible_travel.DETECTOR_ID: Merge(timedelta(hours=24)),
    terminated_user.DETECTOR_ID: Merge(
        timedelta(days=terminated_user.TERMINATION_DAYS), same_window=True
    ),
    failed_logins.DETECTOR_ID: Merge(timedelta(minutes=30)),
    unusual_admin.DETECTOR_ID: Merge(timedelta(hours=1)),
    unusual_impersonation.DETECTOR_ID: Merge(timedelta(hours=1)),
}


@dataclass(frozen=True)
class Joined:
    alert_id: str
    created: datetime  # the alert's creation time (its row key): never moves
    extends: bool  # an alert raised before (no governance again)
    skip: bool = False  # already raised and no longer open: a redelivery


def join(profile: UserProfile, f: Finding, tenant: str, user: str) -> tuple[UserProfile, Joined]:
    """The alert the finding raises or grows, and the profile remembering that incident."""
    first, last = utc(f.first), utc(f.last)
    rule = MERGE.get(f.detector_id)
    if rule is None:
        fresh = short_hash(f.detector_id, tenant, user, f.window)
        if fresh in profile.alerts and not f.extends:
            return profile, Joined(fresh, first, True, skip=True)
        return profile, Joined(fresh, first, f.extends)
    # A new incident's id includes when it began: the same window (a country) months later is
    # another incident, while a redelivered finding gives the same id again.
    fresh = short_hash(f.detector_id, tenant, user, f.window, first.isoformat())
    slot = f"{f.detector_id}|{f.window}" if rule.same_window else f.detector_id
    known = profile.incidents.get(slot, ())
    for inc in known:
        if inc.first - rule.gap <= last and first <= inc.last + rule.gap:
            grown = replace(inc, first=min(inc.first, first), last=max(inc.last, last))
            if grown != inc:
                kept = tuple(grown if x is inc else x for x in known)
                profile = profile.evolve(incidents={**profile.incidents, slot: kept})
            return profile, Joined(inc.alert_id, inc.created, True)
    if fresh in profile.alerts:  # raised before, its incident since forgotten: a redelivery
        return profile, Joined(fresh, first, True, skip=not f.extends)
    inc = Incident(fresh, f.window, first, first, last)
    kept = tuple(sorted((*known, inc), key=lambda x: x.last)[-KEPT_PER_DETECTOR:])
    slots = {**profile.incidents, slot: kept}
    if len(slots) > MAX_SLOTS:  # the least recently active slots go (their ids stay in `alerts`)
        slots = dict(sorted(slots.items(), key=lambda kv: kv[1][-1].last)[-MAX_SLOTS:])
    return profile.evolve(incidents=slots), Joined(fresh, first, False)


def reopen(profile: UserProfile, closed: str, alert_id: str, created: datetime) -> UserProfile:
    """After an analyst closed `closed`, its incident goes on as a new alert."""
    out = {
        slot: tuple(
            replace(x, alert_id=alert_id, created=created) if x.alert_id == closed else x
            for x in incs
        )
        for slot, incs in profile.incidents.items()
    }
    return profile.evolve(incidents=out).with_alert(alert_id, created)


def combine(a: Finding, b: Finding) -> Finding:
    """Two findings of one incident in one batch, as one."""
    ids = list(a.activity_ids)
    added = [i for i in b.activity_ids if i not in ids]
    return replace(
        a,
        facts=merge_facts(a.facts, b.facts),
        first=min(utc(a.first), utc(b.first)),
        last=max(utc(a.last), utc(b.last)),
        activity_ids=tuple(ids + added),
        event_count=a.event_count + len(added),
        suppressions_evaluated=tuple(
            dict.fromkeys((*a.suppressions_evaluated, *b.suppressions_evaluated))
        ),
        severity=b.severity if _rank(b.severity) > _rank(a.severity) else a.severity,
    )


def _rank(severity: str) -> int:
    return ("informational", "low", "medium", "high").index(severity)
