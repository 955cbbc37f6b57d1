"""The sync step: drain the webhook inbox into the activity log and queue the work for detection.

Crash-safe in any step: activities are upserted by deterministic keys, detection is idempotent,
and an inbox entry is deleted only after its activities are stored and queued.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from shared import storage as st
from shared.inbox import pack_body
from shared.models import Activity
from shared.services import Services
from shared.workplace.normalize import EnvelopeError, normalise

log = logging.getLogger(__name__)


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
    """Keep what cannot be read, with why, for an operator; it never blocks the rest."""
    svc.storage.table(st.QUARANTINE).upsert_entity(
        {
            "PartitionKey": source,
            "RowKey": key,
            "Reason": reason[:1000],
            "QuarantinedAt": now,
            "Size": len(body),
            **pack_body(body),
        }
    )


def drain_inbox(svc: Services, now: datetime, max_rounds: int = 20) -> SyncResult:
    """Drain the inbox a page (SYNC_MAX_ENVELOPES) at a time until it is empty or max_rounds."""
    result = SyncResult()
    for _ in range(max_rounds):
        if drain_page(svc, now, result) < svc.settings.sync_max_envelopes:
            break
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


def drain_page(svc: Services, now: datetime, result: SyncResult) -> int:
    """One page of the inbox into activities; returns how many envelopes it held."""
    entries = svc.inbox.oldest(svc.settings.sync_max_envelopes)
    activities: list[Activity] = []
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
        done.append(entry.row_key)
    if activities:
        batches = svc.activities.write(activities)
        for batch in batches:
            svc.enqueue_detection(batch.to_message())
        result.batches += len(batches)
        result.activities += len({(a.tenant_id, a.event_id) for a in activities})
        result.by_type.update(a.type for a in activities)
    # Deleted last: a crash before this line only means the page is read again (idempotent).
    svc.inbox.delete(done)
    return len(entries)
