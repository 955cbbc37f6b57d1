"""Draining Workplace's webhook inbox into the activity log, queueing the work for detection.

Crash-safe in any step: activities are upserted by deterministic keys, detection is idempotent,
and an inbox entry is deleted only after its activities are stored and queued.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient

from shared import telemetry
from shared.activities import ActivityStore
from shared.held import RELEASE_WINDOW, HeldEvent, HeldEvents
from shared.inbox import InboxEntry, WebhookInbox
from shared.installs import InstallStore
from shared.logsafe import quoted
from shared.models import Activity, Install
from shared.quarantine import QuarantineDeps, quarantine, quarantine_activities
from shared.workplace.counts import EventCountStore, new_activities
from shared.workplace.directory_sync import record_login_methods
from shared.workplace.events import EVENTS
from shared.workplace.normalize import SOURCE, EnvelopeError, normalise
from shared.workplace.sync_state import SyncStateStore

log = logging.getLogger(__name__)
T = TypeVar("T")
ENQUEUE_PARALLELISM = 4
COUNT_FOLD_AGE = timedelta(hours=1)  # tallies younger than this stay separate (retries find them)
RELEASE_PAGE = 1000  # held events re-fed at a time


@dataclass(frozen=True)
class DrainDeps:
    """What draining the inbox reads and writes."""

    inbox: WebhookInbox
    installs: InstallStore
    activities: ActivityStore
    activities_table: TableClient  # which activities are new (counted once)
    users_table: TableClient  # each user's auth method, from login events
    held: HeldEvents
    counts: EventCountStore
    sync_states: SyncStateStore
    quarantine: QuarantineDeps
    enqueue_detection: Callable[[str], None]
    max_envelopes: int  # SYNC_MAX_ENVELOPES: inbox entries read per page


@dataclass
class DrainResult:
    envelopes: int = 0
    activities: int = 0
    batches: int = 0
    quarantined: int = 0
    rejected_changes: int = 0
    held: int = 0  # events of communities without an active install, held apart
    released: int = 0  # held events released into the pipeline (their install became active)
    by_type: Counter[str] = field(default_factory=Counter)

    def merge(self, other: DrainResult) -> None:
        for name in (
            "envelopes", "activities", "batches", "quarantined", "rejected_changes", "held",
            "released",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.by_type.update(other.by_type)


def drain_inbox(deps: DrainDeps, now: datetime, max_rounds: int = 20) -> DrainResult:
    """Drain the inbox a page (SYNC_MAX_ENVELOPES) at a time until it is empty or max_rounds."""
    result = DrainResult()
    for _ in range(max_rounds):
        if drain_page(deps, now, result) < deps.max_envelopes:
            break
    release_held(deps, now, result)
    telemetry.activities_ingested(result.activities)
    if result.envelopes or result.released:
        log.info(
            "sync: %d webhook deliveries -> %d activities (%d quarantined, %d held, %d released)",
            result.envelopes,
            result.activities,
            result.quarantined,
            result.held,
            result.released,
            extra={
                "envelopes": result.envelopes,
                "activities": result.activities,
                "quarantined": result.quarantined,
                "held": result.held,
                "released": result.released,
            },
        )
    return result


def _note_unknown_events(activities: list[Activity]) -> None:
    unknown = Counter(a.event_name for a in activities if a.event_name not in EVENTS)
    if unknown:
        log.warning(
            "sync: %d events with names Vigil does not map (kept as `other`): %s",
            sum(unknown.values()),
            ", ".join(f"{quoted(name)} x{n}" for name, n in unknown.most_common(20)),
            extra={"unknown_events": dict(unknown)},
        )


def _record_drain(deps: DrainDeps, activities: list[Activity], now: datetime) -> None:
    """Per community: when its webhooks were last stored and the newest event time among them."""
    states = deps.sync_states
    newest: dict[str, datetime] = {}
    for a in activities:
        newest[a.tenant_id] = max(a.time, newest.get(a.tenant_id, a.time))
    counts = deps.counts
    for tenant, latest in newest.items():
        before = states.get(tenant).newest_event_at
        states.update(tenant, last_drain_at=now, newest_event_at=max(latest, before or latest))
        counts.compact(tenant, older_than=now - COUNT_FOLD_AGE)
        telemetry.sync_lag((now - latest).total_seconds())


def _reason_held(community_id: str, install: Install | None) -> str:
    if install is None:
        return f"community {community_id} has no Vigil install: held, not detected on"
    return (
        f"community {community_id}'s install is {install.status}, not active: held, "
        "not detected on"
    )


def _store(
    deps: DrainDeps, units: list[tuple[str, list[Activity]]], now: datetime, result: DrainResult
) -> None:
    """Units of work (an inbox entry, or released events by their entry) into the activity log,
    counted once and queued for detection."""
    activities = [a for _, acts in units for a in acts]
    if not activities:
        return
    # Counted before they are written, once per inbox entry: see shared/workplace/counts.py.
    counts = deps.counts
    counted = counts.counted(units)
    counts.record_once(new_activities(deps.activities_table, units, counted))
    batches = deps.activities.write(activities)
    # Several puts in flight: each is a small round trip, and the order does not matter.
    with ThreadPoolExecutor(max_workers=ENQUEUE_PARALLELISM) as pool:
        list(pool.map(deps.enqueue_detection, [b.to_message() for b in batches]))
    result.batches += len(batches)
    result.activities += len({(a.tenant_id, a.event_id) for a in activities})
    result.by_type.update(a.type for a in activities)
    _note_unknown_events(activities)
    record_login_methods(deps.users_table, activities)
    _record_drain(deps, activities, now)


@dataclass(frozen=True)
class _Drained:
    """One readable inbox entry: the events to store and those to hold."""

    entry: InboxEntry
    admitted: list[Activity]
    held: list[HeldEvent]


def drain_page(deps: DrainDeps, now: datetime, result: DrainResult) -> int:
    """One page of the inbox into activities; returns how many envelopes it held.

    Nothing in a delivery can make this raise: what cannot be read is quarantined with its
    reason, and events of a community without an active install are held (shared/held.py).
    """
    entries = deps.inbox.oldest(deps.max_envelopes)
    # Read after the page, so an install that becomes active later releases what this holds.
    installs = {i.community_id: i for i in deps.installs.all()}
    drained: list[_Drained] = []
    for entry in entries:
        result.envelopes += 1
        try:
            normalised = normalise(entry.body, now)
        except Exception as exc:  # EnvelopeError, or anything unforeseen: never blocks the rest
            reason = str(exc) if isinstance(exc, EnvelopeError) else f"{type(exc).__name__}: {exc}"
            quarantine(deps.quarantine, entry.source, entry.row_key, entry.body, reason, now)
            result.quarantined += 1
            continue
        if normalised.rejected:
            reason = json.dumps(normalised.rejected[:20])
            quarantine(deps.quarantine, entry.source, entry.row_key, entry.body, reason, now)
            result.rejected_changes += len(normalised.rejected)
        admitted: list[Activity] = []
        held: list[HeldEvent] = []
        for a in normalised.activities:
            install = installs.get(a.tenant_id)
            if install is not None and install.status == "active":
                admitted.append(a)
            else:
                reason = _reason_held(a.tenant_id, install)
                held.append(HeldEvent(entry.row_key, entry.received_at, a, reason))
        drained.append(_Drained(entry, admitted, held))
    _settle(deps, drained, now, result)
    # Deleted last: a crash before this line only means the page is read again (idempotent).
    deps.inbox.delete([e.row_key for e in entries])
    return len(entries)


def _refused(exc: HttpResponseError) -> bool:
    """Storage refused what a delivery holds (400, 413), rather than failing itself."""
    return exc.status_code in (400, 413)


def _apart_if_refused(
    items: list[T],
    attempt: Callable[[list[T], DrainResult], None],
    keep: Callable[[T, str], None],
    result: DrainResult,
) -> None:
    """`attempt` the items together. Should storage refuse something one of them holds (a value
    it will not keep), attempt each alone and `keep` the refused ones (quarantine) with storage's
    answer; any other failure raises, and the work is done again next time."""
    part = DrainResult()
    try:
        attempt(items, part)
    except HttpResponseError as exc:
        if not _refused(exc):
            raise
        part = DrainResult()
        for item in items:
            try:
                attempt([item], part)
            except HttpResponseError as one:
                if not _refused(one):
                    raise
                keep(item, f"storage refused its events: {str(one)[:1000]}")
                part.quarantined += 1
    result.merge(part)


def _settle(deps: DrainDeps, drained: list[_Drained], now: datetime, result: DrainResult) -> None:
    """Hold and store the page's events; a delivery storage refuses is kept whole instead."""

    def keep(d: _Drained, why: str) -> None:
        deps.held.delete(d.held)
        quarantine(deps.quarantine, d.entry.source, d.entry.row_key, d.entry.body, why, now)

    _apart_if_refused(drained, lambda ds, r: _hold_and_store(deps, ds, now, r), keep, result)


def _hold_and_store(
    deps: DrainDeps, drained: list[_Drained], now: datetime, result: DrainResult
) -> None:
    held = [h for d in drained for h in d.held]
    if held:
        deps.held.hold(held)
        result.held += len(held)
        _note_held(held)
    _store(deps, [(d.entry.row_key, d.admitted) for d in drained], now, result)


def _note_held(held: list[HeldEvent]) -> None:
    by_community = Counter(e.activity.tenant_id for e in held)
    log.warning(
        "sync: %d events held for communities without an active install: %s",
        len(held),
        ", ".join(f"{c} x{n}" for c, n in by_community.most_common(20)),
        extra={"held_events": dict(by_community)},
    )


def _release(
    deps: DrainDeps, units: dict[str, list[Activity]], now: datetime, result: DrainResult
) -> None:
    """Store released events by the entry they came in; the events of one that storage refuses
    are quarantined (as a detection message) instead."""

    def keep(unit: tuple[str, list[Activity]], why: str) -> None:
        quarantine_activities(deps.quarantine, unit[1], why, now)

    _apart_if_refused(list(units.items()), lambda us, r: _store(deps, us, now, r), keep, result)


def release_held(deps: DrainDeps, now: datetime, result: DrainResult, max_rounds: int = 20) -> None:
    """Re-feed the held events of each active install that arrived at most RELEASE_WINDOW before
    it became active, then delete them: a crash in between re-feeds them (idempotent keys)."""
    held = deps.held
    for install in deps.installs.all():
        if install.status != "active":
            continue
        since = (install.status_changed_at or install.installed_at) - RELEASE_WINDOW
        for _ in range(max_rounds):
            events = held.releasable(SOURCE, install.community_id, since, RELEASE_PAGE)
            if not events:
                break
            units: dict[str, list[Activity]] = {}
            for e in events:
                units.setdefault(e.entry, []).append(e.activity)
            _release(deps, units, now, result)
            held.delete(events)
            result.released += len(events)
            log.info(
                "sync: released %d held events of community %s (install active since %s)",
                len(events),
                install.community_id,
                install.status_changed_at or install.installed_at,
            )
            if len(events) < RELEASE_PAGE:
                break
