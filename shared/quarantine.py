"""Quarantine: what could not be read or evaluated, kept with its reason for an operator.

Every source's unreadable input and detection's unevaluable activities land here; nothing in it
ever blocks the rest. Retention deletes it by key range (shared/retention.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from azure.data.tables import TableClient

from shared import storage as st
from shared.activities import ActivityBatch
from shared.inbox import TABLE_MAX_BODY, pack_body
from shared.logsafe import quoted
from shared.models import Activity, short_hash, utc

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE_PARTITION = "queue"  # queue messages no delivery could read
MAX_REASON = 8000  # characters of a quarantine row's reason (a property holds 32,000)


@dataclass(frozen=True)
class QuarantineDeps:
    """The quarantine table, and where a body too large for a row is parked (a blob)."""

    table: TableClient
    park: Callable[[str, bytes], str]  # (key, body) -> where the blob is


def quarantine(
    deps: QuarantineDeps, source: str, key: str, body: bytes, reason: str, now: datetime
) -> None:
    """Keep what cannot be read, with why, for an operator; it never blocks the rest.

    A body too large for a row is kept as a blob, and the row says where.
    """
    if len(body) > TABLE_MAX_BODY:
        kept: dict[str, Any] = {"BodyBlob": deps.park(key, body)}
    else:
        kept = pack_body(body)
    deps.table.upsert_entity(
        {
            "PartitionKey": source,
            "RowKey": key,
            # Whole (every rejected change's reason fits), and storable whatever it quotes.
            "Reason": reason[:MAX_REASON].encode("utf-8", "backslashreplace").decode(),
            "QuarantinedAt": now,
            "Size": len(body),
            **kept,
        }
    )


def quarantine_activities(
    deps: QuarantineDeps, activities: list[Activity], reason: str, now: datetime
) -> None:
    """Keep activities detection could not evaluate, as a detection message (v2) an operator can
    queue again once the cause is fixed."""
    if not activities:
        return
    # The earliest event time first (retention deletes by key range); the hash keeps it one row.
    earliest = st.ticks_key(min(utc(a.time) for a in activities))
    key = f"{earliest}_{short_hash(*(f'{a.tenant_id}|{a.event_id}' for a in activities))}"
    body = ActivityBatch(activities=tuple(activities)).to_message().encode()
    quarantine(deps, "detection", key, body, reason, now)


def read_message(
    deps: QuarantineDeps, queue: str, body: bytes, parse: Callable[[bytes], T], now: datetime
) -> T | None:
    """A queue message as `parse` reads it; None when it cannot (it raises ValueError: malformed,
    wrong schema or version). That message is kept in quarantine (partition `queue`, the reason
    naming the queue) and then completed: every retry would fail the same way, so it takes none
    of the host's deliveries and never holds back the messages after it."""
    try:
        return parse(body)
    except ValueError as bad:
        reason = f"{queue}: {bad}"
        key = f"{st.ticks_key(now)}_{hashlib.sha256(body).hexdigest()[:24]}"
        quarantine(deps, QUEUE_PARTITION, key, body, reason, now)
        log.warning("unreadable message quarantined: %s", quoted(reason))
        return None
