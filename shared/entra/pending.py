"""Detection messages sent by key, kept until they are queued (table `EntraSync`, partition
`entra_pending`).

An activity too large for a queue message is queued by its key, so only after its row is
written; the pull queues only activities it has not stored before. A crash between the write
and the enqueue would leave a stored activity nobody detects on: so the message is kept here
before the write and deleted once queued, and every pull first queues what a crashed one left
(detection is idempotent: queued twice is harmless, never not at all).
"""

from __future__ import annotations

from collections.abc import Callable

from azure.data.tables import TableClient

from shared.models import short_hash
from shared.storage import delete_rows, upsert_batches

PARTITION = "entra_pending"


class PendingDetection:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def keep(self, messages: list[str]) -> list[str]:
        """Keep the messages (before the activities they name are written); their keys."""
        rows = [
            {"PartitionKey": PARTITION, "RowKey": short_hash(m), "Message": m} for m in messages
        ]
        upsert_batches(self._table, rows)
        return [r["RowKey"] for r in rows]

    def done(self, keys: list[str]) -> None:
        delete_rows(self._table, ({"PartitionKey": PARTITION, "RowKey": k} for k in keys))

    def requeue(self, enqueue: Callable[[str], None]) -> int:
        """Queue what an interrupted pull left, then forget it; how many."""
        rows = list(self._table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION}))
        for row in rows:
            enqueue(str(row["Message"]))
        self.done([str(r["RowKey"]) for r in rows])
        return len(rows)
