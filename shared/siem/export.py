"""`siem_timer`: what waits in the outbox goes to Log Analytics in batches, each sent once.

Rows are cut into requests of at most MAX_REQUEST_BYTES of JSON (the Logs Ingestion API takes 1
MB per call; the SDK gzips each), and each request's rows are recorded sent as soon as it is
accepted. A refused or unanswered request leaves its rows waiting for the next run (the
schedule is the backoff); the SDK itself retries 429 and 5xx a few times within a run.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared.activities import ActivityBatch
from shared.config import SiemSettings, is_loopback_http
from shared.models import Activity
from shared.siem.outbox import ACTIVITIES, SiemOutbox, Waiting
from shared.siem.rows import activity_row, encoded

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 900_000  # of JSON per request, under the API's 1 MB
MAX_ROWS_PER_RUN = 5_000  # outbox rows (alerts or batches) one run takes on


class Ingestion(Protocol):
    """azure-monitor-ingestion's LogsIngestionClient, as used here."""

    def upload(self, rule_id: str, stream_name: str, logs: list[Any], **kwargs: Any) -> None: ...


@dataclass
class ExportResult:
    requests: int = 0
    rows: int = 0
    failed: int = 0  # requests refused or unanswered (their rows wait for the next run)


Keyed = tuple[str, dict[str, Any]]  # (outbox key, log row)


def requests_of(
    items: list[Keyed],
) -> Iterator[list[Keyed]]:
    """(outbox key, row) pairs cut into requests of at most MAX_REQUEST_BYTES; the rows of one
    key stay in one request when they fit."""
    part: list[Keyed] = []
    size = 2
    for key, row in items:
        n = len(encoded(row)) + 1
        if part and size + n > MAX_REQUEST_BYTES:
            yield part
            part, size = [], 2
        part.append((key, row))
        size += n
    if part:
        yield part


def export(
    outbox: SiemOutbox,
    client: Ingestion,
    settings: SiemSettings,
    load: Callable[[ActivityBatch], list[Activity]],
    now: datetime,
) -> ExportResult:
    result = ExportResult()
    waiting = outbox.waiting(MAX_ROWS_PER_RUN)
    alerts = [(w.key, json.loads(w.payload)) for w in waiting if w.kind != ACTIVITIES]
    _send(outbox, client, settings, settings.siem_stream, alerts, now, result)
    if settings.siem_activities:
        for w in (w for w in waiting if w.kind == ACTIVITIES):
            rows = [(w.key, activity_row(a)) for a in _activities(w, load)]
            _send(
                outbox,
                client,
                settings,
                settings.siem_activity_stream,
                rows,
                now,
                result,
                whole=w.key,
            )
    return result


def _activities(w: Waiting, load: Callable[[ActivityBatch], list[Activity]]) -> list[Activity]:
    return load(ActivityBatch.from_message(w.payload.encode()))


def _send(
    outbox: SiemOutbox,
    client: Ingestion,
    settings: SiemSettings,
    stream: str,
    items: list[Keyed],
    now: datetime,
    result: ExportResult,
    whole: str = "",
) -> None:
    """Upload the rows request by request; record each request's keys sent once accepted. With
    `whole` (one activity batch that spans requests), the key is recorded after the last one."""
    if not items and whole:
        outbox.mark_sent([whole], now, "empty")
        return
    parts = list(requests_of(items))
    for i, part in enumerate(parts):
        batch = uuid.uuid4().hex
        try:
            client.upload(
                settings.siem_rule_id or "",
                stream,
                [row for _, row in part],
                enforce_https=not is_loopback_http(settings.siem_endpoint or ""),
            )
        except AzureError as exc:
            result.failed += 1
            log.warning(
                "SIEM: %d rows to %s not accepted (%s); they wait for the next run",
                len(part),
                stream,
                type(exc).__name__,
            )
            return
        result.requests += 1
        result.rows += len(part)
        if not whole:
            outbox.mark_sent(dict.fromkeys(k for k, _ in part), now, batch)
        elif i == len(parts) - 1:
            outbox.mark_sent([whole], now, batch)
    if result.rows:
        log.info("SIEM: %d rows sent to %s in %d requests", result.rows, stream, result.requests)
