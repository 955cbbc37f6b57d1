"""What waits for Log Analytics, and what was sent (one table, two kinds of partition).

`pending`: one row per alert (its log row) or per detected activity batch (the detect message,
whose activities are loaded when sent). `sent`: one row per alert or batch sent, so a later
`add` of the same thing (a redelivered message) does nothing. Rows leave `pending` only after
their batch was accepted (204), and after their `sent` record is written. `sent_<YYYYMMDD>`: the
same keys by the day they were sent (written first), so retention finds the old `sent` records
by partition (`shared/retention.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import Alert, utc
from shared.siem.rows import alert_row, encoded
from shared.storage import chunks, join_text, split_text

PENDING, SENT = "pending", "sent"
SENT_ON = "sent_"  # + the day of sending: which `sent` records that day wrote
ALERT, ACTIVITIES = "alert", "activities"


@dataclass(frozen=True)
class Waiting:
    key: str  # the row key: `<kind>|...`
    kind: str  # ALERT (Row: a log row) or ACTIVITIES (Message: a detect message)
    payload: str


def alert_key(alert: Alert) -> str:
    return f"{ALERT}|{alert.tenant_id}|{alert.id}"


def batch_key(message: bytes) -> str:
    return f"{ACTIVITIES}|{hashlib.sha256(message).hexdigest()[:40]}"


def sent_on(day: date) -> str:
    return f"{SENT_ON}{day:%Y%m%d}"


class SiemOutbox:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def _sent(self, key: str) -> bool:
        try:
            self._table.get_entity(SENT, key, select=["RowKey"])
        except ResourceNotFoundError:
            return False
        return True

    def _add(self, key: str, kind: str, payload: str) -> bool:
        if self._sent(key):
            return False
        entity = {"PartitionKey": PENDING, "RowKey": key, "Kind": kind, **split_text("P", payload)}
        self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return True

    def add_alert(self, alert: Alert) -> bool:
        """The alert waits to be sent (False: it was sent already)."""
        return self._add(alert_key(alert), ALERT, encoded(alert_row(alert)))

    def add_batch(self, message: bytes) -> bool:
        """A detected batch's activities wait to be sent (the detect message names them)."""
        return self._add(batch_key(message), ACTIVITIES, message.decode())

    def waiting(self, limit: int) -> list[Waiting]:
        rows = self._table.query_entities(
            "PartitionKey eq @p", parameters={"p": PENDING}, results_per_page=min(limit, 1000)
        )
        out: list[Waiting] = []
        for e in rows:
            if self._sent(e["RowKey"]):  # sent; the run that sent it stopped before this delete
                self._table.delete_entity(PENDING, e["RowKey"])
                continue
            out.append(Waiting(e["RowKey"], e.get("Kind", ALERT), join_text("P", e)))
            if len(out) >= limit:
                break
        return out

    def mark_sent(self, keys: Iterable[str], at: datetime, batch: str) -> None:
        """Record them sent (the day's index first, so no record is written that retention
        cannot find), then take them out of `pending` (after a crash in between, the record
        keeps them from being sent again and the next run deletes the pending rows)."""
        keys = list(keys)
        for partition in (sent_on(utc(at).date()), SENT):
            for part in chunks(keys, 100):
                ops: list[Any] = [
                    (
                        "upsert",
                        {"PartitionKey": partition, "RowKey": k, "SentAt": utc(at), "Batch": batch},
                        {"mode": UpdateMode.REPLACE},
                    )
                    for k in part
                ]
                self._table.submit_transaction(ops)
        for part in chunks(keys, 100):
            deletes: list[Any] = [("delete", {"PartitionKey": PENDING, "RowKey": k}) for k in part]
            self._table.submit_transaction(deletes)

    def sent_keys(self) -> list[str]:
        rows = self._table.query_entities(
            "PartitionKey eq @p", parameters={"p": SENT}, select=["RowKey"]
        )
        return [e["RowKey"] for e in rows]
