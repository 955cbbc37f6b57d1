"""The sync step: drain the webhook inbox into the activity log and queue the work for detection.

Crash-safe in any step: activities are upserted by deterministic keys, detection is idempotent,
and an inbox entry is deleted only after its activities are stored and queued.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import storage as st
from shared import telemetry
from shared.inbox import TABLE_MAX_BODY, pack_body
from shared.logsafe import quoted
from shared.models import Activity
from shared.services import Services
from shared.workplace.counts import EventCountStore, new_activities
from shared.workplace.directory_sync import record_login_methods
from shared.workplace.events import EVENTS
from shared.workplace.normalize import EnvelopeError, normalise
from shared.workplace.sync_state import SyncStateStore

log = logging.getLogger(__name__)
ENQUEUE_PARALLELISM = 4
COUNT_FOLD_AGE = timedelta(hours=1)  # tallies younger than this stay separate (retries find them)


@dataclass
class SyncResult:
    envelopes: int = 0
    activities: int = 0
    batches: int = 0
    quarantined: int = 0
    rejected_changes: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


def quarantine(
    svc: Services, source: str, key: str, body: bytes, reason: str, now: datetime
) -> None:
    """Keep what cannot be read, with why, for an operator; it never blocks the rest.

    A body too large for a row is kept as a blob, and the row says where.
    """
    if len(body) > TABLE_MAX_BODY:
        kept: dict[str, Any] = {"BodyBlob": svc.inbox.park(key, body)}
    else:
        kept = pack_body(body)
    svc.storage.table(st.QUARANTINE).upsert_entity(
        {
            "PartitionKey": source,
            "RowKey": key,
            "Reason": reason[:1000],
            "QuarantinedAt": now,
            "Size": len(body),
            **kept,
        }
    )


def drain_inbox(svc: Services, now: datetime, max_rounds: int = 20) -> SyncResult:
    """Drain the inbox a page (SYNC_MAX_ENVELOPES) at a time until it is empty or max_rounds."""
    result = SyncResult()
    for _ in range(max_rounds):
        if drain_page(svc, now, result) < svc.settings.sync_max_envelopes:
            break
    telemetry.activities_ingested(result.activities)
    if result.envelopes:
        log.info(
            "sync: %d webhook deliveries -> %d activities (%d quarantined)",
            result.envelopes,
            result.activities,
            result.quarantined,
            extra={
                "envelopes": result.envelopes,
                "activities": result.activities,
                "quarantined": result.quarantined,
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


def _record_drain(svc: Services, activities: list[Activity], now: datetime) -> None:
    """Per community: when its webhooks were last stored and the newest event time among them."""
    states = SyncStateStore(svc.storage.table(st.WORKPLACE_SYNC))
    newest: dict[str, datetime] = {}
    for a in activities:
        newest[a.tenant_id] = max(a.time, newest.get(a.tenant_id, a.time))
    counts = EventCountStore(svc.storage.table(st.EVENT_COUNTS))
    for tenant, latest in newest.items():
        before = states.get(tenant).newest_event_at
        states.update(tenant, last_drain_at=now, newest_event_at=max(latest, before or latest))
        counts.compact(tenant, older_than=now - COUNT_FOLD_AGE)
        telemetry.sync_lag((now - latest).total_seconds())


def drain_page(svc: Services, now: datetime, result: SyncResult) -> int:
    """One page of the inbox into activities; returns how many envelopes it held."""
    entries = svc.inbox.oldest(svc.settings.sync_max_envelopes)
    activities: list[Activity] = []
    units: list[tuple[str, list[Activity]]] = []  # (inbox entry, its activities), for counting
    done: list[str] = []
    for entry in entries:
        result.envelopes += 1
        try:
            normalised = normalise(entry.body)
        except EnvelopeError as exc:
            quarantine(svc, entry.source, entry.row_key, entry.body, str(exc), now)
            result.quarantined += 1
            done.append(entry.row_key)
            continue
        if normalised.rejected:
            reason = json.dumps(normalised.rejected[:20])
            quarantine(svc, entry.source, entry.row_key, entry.body, reason, now)
            result.rejected_changes += len(normalised.rejected)
        activities.extend(normalised.activities)
        units.append((entry.row_key, normalised.activities))
        done.append(entry.row_key)
    if activities:
        # Counted before they are written, once per inbox entry: see shared/workplace/counts.py.
        counts = EventCountStore(svc.storage.table(st.EVENT_COUNTS))
        counted = counts.counted(units)
        counts.record_once(new_activities(svc.storage.table(st.ACTIVITIES), units, counted))
        batches = svc.activities.write(activities)
        # Several puts in flight: each is a small round trip, and the order does not matter.
        with ThreadPoolExecutor(max_workers=ENQUEUE_PARALLELISM) as pool:
            list(pool.map(svc.enqueue_detection, [b.to_message() for b in batches]))
        result.batches += len(batches)
        result.activities += len({(a.tenant_id, a.event_id) for a in activities})
        result.by_type.update(a.type for a in activities)
        _note_unknown_events(activities)
        record_login_methods(svc, activities)
        _record_drain(svc, activities, now)
    # Deleted last: a crash before this line only means the page is read again (idempotent).
    svc.inbox.delete(done)
    return len(entries)
