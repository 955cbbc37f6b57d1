"""Activity performed by a terminated user, on event time.

A termination is recorded against the account it switched off, at the time it happened: a
Workplace `ACCOUNT_DEACTIVATED` (an admin's action, the user as its target), the directory
snapshot's `DIRECTORY_ACCOUNT_DEACTIVATED`, the synced record's deactivation time, or an Entra ID
answer (disabled, or deleted for an SSO user) taken as the state at the event time of the activity
it was asked for. A re-activation at its own time ends it. Any of the user's own successful
activity from the termination on (for up to TERMINATION_DAYS, or until re-activation) alerts, once
per termination: later activity joins that alert.

Event-time order, whatever the arrival order: the profile keeps the terminations and the first
and last of the user's own activities per day (a week), so a deactivation that arrives after the
activity it precedes (a backlog, another batch, another worker) finds that activity and alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.detection.base import DetectorConfig, Directory, Finding, Observation
from shared.detection.profiles import DaySpan, Lifecycle, Stamp, TenantProfile, UserProfile
from shared.models import Activity, utc

DETECTOR_ID = "vigil.terminated_user"
TERMINATION_DAYS = 30
KEPT = timedelta(days=TERMINATION_DAYS + 1)  # switches
# Own activity kept for a deactivation that arrives late (a backlog, a snapshot): first and last
# per day, a week of it (about 1.5 KB of profile); activity after a late arrival always counts.
ACTIVE_KEPT = timedelta(days=7)
MAX_LIFECYCLE = 40
# Activity types that switch an account off or on: recorded against the target, never counted as
# the target's own activity.
OFF = frozenset({"account_deactivated", "account_deleted"})
ON = frozenset({"account_activated"})
# Ending a session is not using the account (Workplace logs the user out when deactivating).
NOT_USE = frozenset({"logout", "forced_logout", "account_created", *OFF, *ON})


def lifecycle_of(a: Activity) -> tuple[str, Lifecycle] | None:
    """(target user, the switch) when the activity deactivates or re-activates an account."""
    if a.type not in OFF and a.type not in ON:
        return None
    if a.outcome != "success" or not (a.target_id or a.actor_id):
        return None
    return a.target_id or a.actor_id, Lifecycle(utc(a.time), a.source, a.type in ON, a.event_id)


def is_use(a: Activity) -> bool:
    """The user's own successful activity (what a terminated account must not show)."""
    return a.outcome == "success" and a.type not in NOT_USE and a.category != "directory"


@dataclass(frozen=True)
class Termination:
    source: str
    start: datetime  # the first switch-off of the run
    until: datetime  # re-activation, or start + TERMINATION_DAYS
    key: str  # identifies it whatever order its switch-offs arrived in
    how: str = "deactivated"  # deactivated | disabled | deleted

    def covers(self, t: datetime) -> bool:
        return self.start <= t < self.until


def terminations(lifecycle: tuple[Lifecycle, ...]) -> list[Termination]:
    """Each run of switch-offs of one source, ended by that source's next switch-on."""
    out: list[Termination] = []
    for source in sorted({x.source for x in lifecycle}):
        entries = [x for x in lifecycle if x.source == source]
        start: Lifecycle | None = None
        after = "-"
        for x in entries:
            if not x.enabled and start is None:
                start = x
            elif x.enabled:
                if start is not None:
                    out.append(_termination(source, start, x.time, after))
                    start = None
                after = x.time.isoformat()
        if start is not None:
            out.append(_termination(source, start, None, after))
    return out


def _termination(source: str, off: Lifecycle, on: datetime | None, after: str) -> Termination:
    limit = off.time + timedelta(days=TERMINATION_DAYS)
    how = off.event_id if off.event_id in ("disabled", "deleted") else "deactivated"
    until = min(on, limit) if on else limit
    return Termination(source, off.time, until, f"{source}|after|{after}", how)


def record(profile: UserProfile, switches: list[Lifecycle]) -> UserProfile:
    """The profile with these switches (already known ones change nothing)."""
    known = {(x.time, x.source, x.enabled) for x in profile.lifecycle}
    new = [x for x in switches if (x.time, x.source, x.enabled) not in known]
    if not new:
        return profile
    kept = sorted({*profile.lifecycle, *new}, key=lambda x: (x.time, x.source, x.enabled))
    newest = kept[-1].time
    kept = [x for x in kept if x.time >= newest - 2 * KEPT][-MAX_LIFECYCLE:]
    return profile.evolve(lifecycle=tuple(kept))


def stamp(profile: UserProfile, a: Activity) -> UserProfile:
    """Remember the user's own activity (first and last per event day, for ACTIVE_KEPT)."""
    t = utc(a.time)
    day = t.date().isoformat()
    s = Stamp(t, a.event_id, a.event_name, a.ip)
    span = profile.active.get(day)
    if span is None:
        days = {**profile.active, day: DaySpan(s, s)}
        newest = max([t, *(v.last.time for v in profile.active.values())])
        oldest = (newest - ACTIVE_KEPT).date().isoformat()
        days = {d: v for d, v in days.items() if d >= oldest}
        return profile.evolve(active=days)
    if span.first.time <= t <= span.last.time:
        return profile
    changed = DaySpan(s, span.last) if t < span.first.time else DaySpan(span.first, s)
    return profile.evolve(active={**profile.active, day: changed})


def first_use(profile: UserProfile, term: Termination) -> Stamp | None:
    """The earliest remembered own activity within the termination."""
    found = [
        s
        for span in profile.active.values()
        for s in (span.first, span.last)
        if term.covers(s.time)
    ]
    return min(found, key=lambda s: (s.time, s.event_id)) if found else None


def from_directory(
    profile: UserProfile, d: Directory, t: datetime, source: str = "workplace"
) -> UserProfile:
    """What the directories said while judging activity at `t`, as switches at event times
    (the synced record's as the `source` of the activity, whose directory it is)."""
    if not d.entra and d.workplace_deactivated_at is None:
        return profile
    switches: list[Lifecycle] = []
    if d.workplace_status in ("deactivated", "deleted") and d.workplace_deactivated_at:
        switches.append(Lifecycle(utc(d.workplace_deactivated_at), source, False, "record"))
    entra = [x for x in profile.lifecycle if x.source == "entra" and x.time <= t]
    off_now = bool(entra) and not entra[-1].enabled
    if d.entra_terminated and not off_now:
        switches.append(Lifecycle(t, "entra", False, d.entra_terminated))
    elif d.entra == "enabled" and off_now:
        switches.append(Lifecycle(t, "entra", True, "enabled"))
    return record(profile, switches) if switches else profile


def apply(
    profile: UserProfile, switches: list[Lifecycle], user: str, cfg: DetectorConfig, d: Directory
) -> tuple[UserProfile, list[Finding]]:
    """Record switches from the event stream; alert on activity already seen inside them."""
    after = record(profile, switches)
    if after is profile:
        return profile, []
    return after, recheck(after, profile, user, cfg, d)


def recheck(
    profile: UserProfile, before: UserProfile, user: str, cfg: DetectorConfig, d: Directory
) -> list[Finding]:
    """Findings for the activity already seen in what the terminations newly cover (a new one,
    or one whose start a late switch-off moved earlier)."""
    old = {t.key: t for t in terminations(before.lifecycle)}
    out = []
    for term in terminations(profile.lifecycle):
        was = old.get(term.key)
        if was is not None and term.start >= was.start and term.until <= was.until:
            continue
        use = first_use(profile, term)
        if use is not None:
            out.append(_finding(term, use, user, cfg, d))
    return out


def detect(
    profile: UserProfile, tenant: TenantProfile, obs: Observation, cfg: DetectorConfig
) -> tuple[UserProfile, list[Finding]]:
    a, d = obs.activity, obs.directory
    if not is_use(a):
        return profile, []
    t = utc(a.time)
    who = a.actor_email or a.actor_id
    found: list[Finding] = []
    if d.workplace_deactivated_at is not None or d.entra or profile.lifecycle:
        recorded = from_directory(profile, d, t, a.source)
        if recorded is not profile:  # the directories said something new: look back too
            found = recheck(recorded, profile, who, cfg, d)
        profile = recorded
    profile = stamp(profile, a)
    if profile.lifecycle:
        for term in terminations(profile.lifecycle):
            if term.covers(t):
                use = Stamp(t, a.event_id, a.event_name, a.ip)
                found.append(_finding(term, use, who, cfg, d))
    return profile, found


def _finding(term: Termination, use: Stamp, who: str, cfg: DetectorConfig, d: Directory) -> Finding:
    where = "Workplace" if term.source == "workplace" else "Entra ID"
    return Finding(
        detector_id=DETECTOR_ID,
        window=term.key,  # one alert per termination, however long it goes on
        title=f"Activity performed by terminated user {who}",
        description=(
            f"{who} did {use.event or 'an activity'} at {use.time:%Y-%m-%d %H:%M:%S} UTC, "
            f"{_after(use.time - term.start)} after the account was {term.how} in {where} "
            f"({term.start:%Y-%m-%d %H:%M:%S} UTC)."
        ),
        severity=cfg.severity or ("high" if d.is_admin else "medium"),
        category="Persistence",
        mitre_techniques=("T1078", "T1531"),
        facts={
            "terminated_in": where,
            "termination": term.how,
            "terminated_at": term.start.isoformat(),
            "reactivated_at": None
            if term.until == term.start + timedelta(days=TERMINATION_DAYS)
            else term.until.isoformat(),
            "activities": [use.event] if use.event else [],
            "ips": [use.ip] if use.ip else [],
            "workplace_status": d.workplace_status,
            "entra": d.entra,
            "is_admin": d.is_admin,
        },
        first=use.time,
        last=use.time,
        activity_ids=(use.event_id,),
        recommended_actions=(
            f"Make sure the account stays disabled in {where} and revoke its sessions. Dismiss "
            "if the account was only temporarily disabled or deleted and re-registered."
        ),
    )


def _after(span: timedelta) -> str:
    s = int(span.total_seconds())
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h" if s < 172800 else f"{s // 86400} days"
