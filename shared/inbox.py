"""The webhook inbox: each signed delivery is stored whole, in one write, before Workplace gets 200.

`sync_timer` drains it oldest first and deletes what it has turned into activities.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient, TableTransactionError

from shared.storage import MAX_BATCH, chunks, ticks_key

CHUNK = 60_000  # bytes per binary property (the limit is 64 KiB)
MAX_CHUNKS = 15  # an entity holds at most 1 MiB
MAX_BODY = CHUNK * MAX_CHUNKS


class BodyTooLarge(ValueError):
    pass


def pack_body(body: bytes) -> dict[str, Any]:
    """Entity properties holding `body` whole, in binary chunks under the 64 KiB property limit."""
    if len(body) > MAX_BODY:
        raise BodyTooLarge(f"delivery of {len(body)} bytes exceeds the limit of {MAX_BODY}")
    props: dict[str, Any] = {"Chunks": max(1, -(-len(body) // CHUNK))}
    for i, start in enumerate(range(0, max(len(body), 1), CHUNK)):
        props[f"Body{i}"] = body[start : start + CHUNK]
    return props


def unpack_body(entity: dict[str, Any]) -> bytes:
    return b"".join(bytes(entity.get(f"Body{i}", b"")) for i in range(int(entity.get("Chunks", 1))))


@dataclass(frozen=True)
class InboxEntry:
    row_key: str
    source: str
    received_at: datetime
    body: bytes


class WebhookInbox:
    PARTITION = "inbox"

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def put(self, source: str, body: bytes, received_at: datetime) -> str:
        """One durable write; returns the entry's key."""
        digest = hashlib.sha256(body).hexdigest()[:24]
        row_key = f"{ticks_key(received_at)}_{digest}"
        entity: dict[str, Any] = {
            "PartitionKey": self.PARTITION,
            "RowKey": row_key,
            "Source": source,
            "ReceivedAt": received_at,
            **pack_body(body),
        }
        self._table.upsert_entity(entity)
        return row_key

    def oldest(self, limit: int) -> list[InboxEntry]:
        pages = self._table.query_entities(
            "PartitionKey eq @pk",
            parameters={"pk": self.PARTITION},
            results_per_page=min(limit, 1000),
        )
        entries: list[InboxEntry] = []
        for e in pages:
            entries.append(
                InboxEntry(e["RowKey"], e.get("Source", ""), e["ReceivedAt"], unpack_body(e))
            )
            if len(entries) >= limit:
                break
        return entries

    def delete(self, row_keys: list[str]) -> None:
        for batch in chunks(row_keys, MAX_BATCH):
            try:
                self._table.submit_transaction(
                    [("delete", {"PartitionKey": self.PARTITION, "RowKey": rk}) for rk in batch]
                )
            except TableTransactionError:  # one already gone fails the batch: go one by one
                for rk in batch:
                    self._table.delete_entity(self.PARTITION, rk)
