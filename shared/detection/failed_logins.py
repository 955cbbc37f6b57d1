"""Multiple failed logins: more than N failures by one user within M minutes (event time).

A burst is raised once while it continues: later failures within the window of the last one
extend the same alert instead of opening another.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.models import Activity, short_hash, utc

DETECTOR_ID = "vigil.multiple_failed_logins"
RETENTION = timedelta(hours=24)  # failures kept per user, so late arrivals still count
MAX_KEPT = 300  # keeps the state entity well under the 64 KiB property limit


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
class UserState:
    failures: tuple[Failure, ...] = ()
    burst: OpenBurst | None = None


@dataclass(frozen=True)
class Decision:
    """An alert to create (`new`) or to extend, with the failures that make it."""

    alert_id: str
    new: bool
    first: datetime
    last: datetime
    failures: tuple[Failure, ...] = field(default=())


def is_failed_login(a: Activity) -> bool:
    return a.type == "login_failed"


def _busiest_window_with(
    t: datetime, failures: list[Failure], window: timedelta
) -> tuple[Failure, ...]:
    """The most failures in any window of length `window` that contains `t`.

    Looking forward as well as back makes late, out-of-order arrivals count like in-order ones.
    """
    best: tuple[Failure, ...] = ()
    for end in (f.time for f in failures if t <= f.time <= t + window):
        candidate = tuple(f for f in failures if end - window <= f.time <= end)
        if len(candidate) > len(best):
            best = candidate
    return best


def decide(
    state: UserState, activity: Activity, *, tenant_id: str, threshold: int, window: timedelta
) -> tuple[UserState, Decision | None]:
    """Fold one activity into the user's state; return the alert it raises or extends, if any."""
    if not is_failed_login(activity) or any(
        f.event_id == activity.event_id for f in state.failures
    ):
        return state, None  # not ours, or already counted: a redelivery changes nothing
    t = utc(activity.time)
    failures = sorted(
        (*state.failures, Failure(t, activity.event_id, activity.ip, activity.country)),
        key=lambda f: (f.time, f.event_id),
    )
    newest = failures[-1].time
    failures = [f for f in failures if f.time >= newest - RETENTION][-MAX_KEPT:]
    in_window = _busiest_window_with(t, failures, window)
    state = replace(state, failures=tuple(failures))
    if len(in_window) <= threshold:
        return state, None
    burst = state.burst
    if burst is not None and burst.first - window <= t <= burst.last + window:
        first, last = burst.first, max(burst.last, t)  # `first` keys the alert: it never moves
        burst = OpenBurst(burst.alert_id, first, last, burst.count + 1)
        spanned = tuple(f for f in failures if first <= f.time <= last)
        return replace(state, burst=burst), Decision(burst.alert_id, False, first, last, spanned)
    alert_id = short_hash(DETECTOR_ID, tenant_id, activity.actor_id, in_window[0].event_id)
    burst = OpenBurst(alert_id, in_window[0].time, t, len(in_window))
    return replace(state, burst=burst), Decision(alert_id, True, burst.first, t, in_window)
