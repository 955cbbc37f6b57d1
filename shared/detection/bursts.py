"""N events within M minutes (event time), raised once while the burst continues.

Used by multiple failed logins and by repeated-activity policies. Late, out-of-order arrivals
count like in-order ones: the busiest window containing the new event is looked for both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from shared.detection.profiles import BurstState, Failure, OpenBurst
from shared.models import short_hash

RETENTION = timedelta(hours=24)  # events kept, so late arrivals still count
MAX_KEPT = 300  # keeps the state entity well under the 64 KiB property limit


@dataclass(frozen=True)
class Decision:
    """An alert to create (`new`) or to extend, with the events that make it."""

    alert_id: str
    new: bool
    first: datetime
    last: datetime
    failures: tuple[Failure, ...] = field(default=())


def busiest_window_with(
    t: datetime, events: list[Failure], window: timedelta
) -> tuple[Failure, ...]:
    best: tuple[Failure, ...] = ()
    for end in (f.time for f in events if t <= f.time <= t + window):
        candidate = tuple(f for f in events if end - window <= f.time <= end)
        if len(candidate) > len(best):
            best = candidate
    return best


def fold(
    state: BurstState,
    event: Failure,
    *,
    key: str,
    more_than: int,
    window: timedelta,
) -> tuple[BurstState, Decision | None]:
    """Add one event; return the alert it opens or extends when the window holds > `more_than`."""
    if any(f.event_id == event.event_id for f in state.failures):
        return state, None  # already counted: a redelivery changes nothing
    events = sorted((*state.failures, event), key=lambda f: (f.time, f.event_id))
    newest = events[-1].time
    events = [f for f in events if f.time >= newest - RETENTION][-MAX_KEPT:]
    t = event.time
    in_window = busiest_window_with(t, events, window)
    state = replace(state, failures=tuple(events))
    if len(in_window) <= more_than:
        return state, None
    burst = state.burst
    if burst is not None and burst.first - window <= t <= burst.last + window:
        first, last = burst.first, max(burst.last, t)  # `first` keys the alert: it never moves
        burst = OpenBurst(burst.alert_id, first, last, burst.count + 1)
        spanned = tuple(f for f in events if first <= f.time <= last)
        return replace(state, burst=burst), Decision(burst.alert_id, False, first, last, spanned)
    alert_id = short_hash(key, in_window[0].event_id)
    burst = OpenBurst(alert_id, in_window[0].time, t, len(in_window))
    return replace(state, burst=burst), Decision(alert_id, True, burst.first, t, in_window)
