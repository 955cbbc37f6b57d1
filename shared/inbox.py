"""The webhook inbox: each signed delivery is stored whole, in one write, before Workplace gets 200.

A delivery that fits a table row (the usual case) is one row; a larger one is one blob, so an
envelope of any size up to MAX_BODY is kept whole and still costs a single durable write.
`sync_timer` drains both oldest first and deletes what it has turned into activities.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError
from azure.storage.blob import ContainerClient

from shared.models import utc
from shared.storage import MAX_BATCH, chunks, ticks_key
from shared.table_tx import submit

CHUNK = 60_000  # bytes per binary property (the limit is 64 KiB)
# A row holds at most 1 MiB, counted by Azurite over the base64 form: stay well below.
TABLE_MAX_BODY = 600_000
MAX_CHUNKS = -(-TABLE_MAX_BODY // CHUNK)
MAX_BODY = 32 * 1024 * 1024  # larger deliveries are refused with 413
BLOB_SUFFIX = "_blob"  # row keys of deliveries kept as blobs end with this
INBOX_PREFIX, PARKED_PREFIX = "inbox/", "quarantine/"


class BodyTooLarge(ValueError):
    pass


def pack_body(body: bytes) -> dict[str, Any]:
    """Entity properties holding `body` whole, in binary chunks under the 64 KiB property limit."""
    if len(body) > TABLE_MAX_BODY:
        raise BodyTooLarge(
            f"body of {len(body)} bytes exceeds a table row's limit of {TABLE_MAX_BODY}"
        )
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

    def __init__(self, table: TableClient, blobs: ContainerClient | None = None) -> None:
        self._table, self._blobs = table, blobs

    def put(self, source: str, body: bytes, received_at: datetime) -> str:
        """One durable write (a row, or a blob when the body is too large for one); its key."""
        if len(body) > MAX_BODY or (len(body) > TABLE_MAX_BODY and self._blobs is None):
            limit = MAX_BODY if self._blobs is not None else TABLE_MAX_BODY
            raise BodyTooLarge(f"delivery of {len(body)} bytes exceeds the limit of {limit}")
        digest = hashlib.sha256(body).hexdigest()[:24]
        row_key = f"{ticks_key(received_at)}_{digest}"
        if len(body) > TABLE_MAX_BODY and self._blobs is not None:
            row_key += BLOB_SUFFIX
            self._blobs.upload_blob(
                INBOX_PREFIX + row_key,
                body,
                overwrite=True,
                metadata={"source": source, "received_at": utc(received_at).isoformat()},
            )
            return row_key
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
        if self._blobs is not None:
            for blob in self._blobs.list_blobs(name_starts_with=INBOX_PREFIX):
                row_key = blob.name[len(INBOX_PREFIX) :]
                if len(entries) >= limit and row_key > entries[-1].row_key:
                    break  # names sort like row keys (oldest first): the rest are newer
                with contextlib.suppress(ResourceNotFoundError):  # drained meanwhile
                    downloaded = self._blobs.download_blob(blob.name)
                    meta = downloaded.properties.metadata or {}
                    received = datetime.fromisoformat(meta.get("received_at", ""))
                    entries.append(
                        InboxEntry(row_key, meta.get("source", ""), received, downloaded.readall())
                    )
            entries = sorted(entries, key=lambda entry: entry.row_key)[:limit]
        return entries

    def park(self, row_key: str, body: bytes) -> str:
        """Keep a body too large for a quarantine row as a blob; returns where it is."""
        if self._blobs is None:
            raise BodyTooLarge(f"body of {len(body)} bytes needs blob storage to be kept")
        name = PARKED_PREFIX + row_key
        self._blobs.upload_blob(name, body, overwrite=True)
        return f"{self._blobs.container_name}/{name}"

    def discard_parked(self, where: str) -> None:
        """Delete a body `park` kept (`where` as it returned it); gone already is fine."""
        if self._blobs is None:
            return
        container, _, name = where.partition("/")
        if container != self._blobs.container_name or not name.startswith(PARKED_PREFIX):
            raise ValueError(f"not a parked body of this inbox: {where[:200]!r}")
        with contextlib.suppress(ResourceNotFoundError):
            self._blobs.delete_blob(name)

    def delete(self, row_keys: list[str]) -> None:
        in_table = [rk for rk in row_keys if not rk.endswith(BLOB_SUFFIX)]
        for rk in row_keys:
            if rk.endswith(BLOB_SUFFIX) and self._blobs is not None:
                with contextlib.suppress(ResourceNotFoundError):
                    self._blobs.delete_blob(INBOX_PREFIX + rk)
        for batch in chunks(in_table, MAX_BATCH):
            try:
                submit(
                    self._table,
                    [("delete", {"PartitionKey": self.PARTITION, "RowKey": rk}) for rk in batch],
                )
            except TableTransactionError:  # one already gone fails the batch: go one by one
                for rk in batch:
                    self._table.delete_entity(self.PARTITION, rk)
