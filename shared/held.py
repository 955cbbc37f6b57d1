"""Events of a community without an active install: held apart, never detected on or governed.

Each held event is a row in its community's partition (`<source>_<community>`), keyed by when its
delivery arrived and the event id, with the reason. When the community's install becomes active,
sync re-feeds the events that arrived at most RELEASE_WINDOW before that through the normal path
and then deletes them: a crash in between re-feeds them, and the activities' idempotent keys mean
nothing doubles. Older ones stay held, with their reason, for an operator.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError

from shared.activities import from_entity, to_entity
from shared.models import Activity, utc
from shared.storage import MAX_BATCH, chunks, ticks_key, upsert_batches
from shared.table_tx import submit

# Webhooks can start before an install completes (or before the first timer run registers a
# custom integration): what arrived up to this long before the install became active is released.
RELEASE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class HeldEvent:
    entry: str  # the inbox entry it arrived in (the unit its count is recorded under)
    received_at: datetime
    activity: Activity
    reason: str


def partition(source: str, community_id: str) -> str:
    return f"{source}_{community_id}"


INDEX = "communities"  # one row per source and community ever held: retention's list of partitions


def _row_key(e: HeldEvent) -> str:
    return f"{ticks_key(utc(e.received_at))}_{e.activity.event_id}"


class HeldEvents:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def hold(self, events: list[HeldEvent]) -> None:
        """Keep the events (an upsert: holding one again after a crash changes nothing)."""
        entities: list[dict[str, Any]] = []
        for e in events:
            entity = to_entity(e.activity)
            entity.update(
                PartitionKey=partition(e.activity.source, e.activity.tenant_id),
                RowKey=_row_key(e),
                Entry=e.entry,
                ReceivedAt=utc(e.received_at),
                Reason=e.reason[:1000],
            )
            entities.append(entity)
        upsert_batches(self._table, entities)
        held = sorted({partition(e.activity.source, e.activity.tenant_id) for e in events})
        upsert_batches(self._table, [{"PartitionKey": INDEX, "RowKey": pk} for pk in held])

    def communities(self, source: str) -> list[str]:
        """Every community of the source that has had events held (one partition read)."""
        prefix = f"{source}_"
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": INDEX}, select=["RowKey"]
        )
        return [r["RowKey"][len(prefix) :] for r in rows if r["RowKey"].startswith(prefix)]

    def releasable(
        self, source: str, community_id: str, since: datetime, limit: int
    ) -> list[HeldEvent]:
        """Up to `limit` of the community's events that arrived from `since` on, oldest first."""
        rows = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo",
            parameters={"pk": partition(source, community_id), "lo": ticks_key(utc(since))},
            results_per_page=min(limit, 1000),
        )
        out: list[HeldEvent] = []
        for e in rows:
            out.append(
                HeldEvent(e["Entry"], utc(e["ReceivedAt"]), from_entity(e), e.get("Reason", ""))
            )
            if len(out) >= limit:
                break
        return out

    def delete(self, events: list[HeldEvent]) -> None:
        keys: dict[str, list[str]] = {}
        for e in events:
            keys.setdefault(partition(e.activity.source, e.activity.tenant_id), []).append(
                _row_key(e)
            )
        for pk, rks in keys.items():
            for batch in chunks(sorted(set(rks)), MAX_BATCH):
                try:
                    submit(
                        self._table,
                        [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in batch],
                    )
                except TableTransactionError:  # one already gone fails the batch: one by one
                    for rk in batch:
                        with contextlib.suppress(ResourceNotFoundError):
                            self._table.delete_entity(pk, rk)

    def counts(self, source: str) -> Counter[str]:
        """Events held per community (the status page's count; one listing of keys only)."""
        prefix = f"{source}_"
        found: Counter[str] = Counter()
        for e in self._table.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi",
            parameters={"lo": prefix, "hi": prefix[:-1] + chr(ord(prefix[-1]) + 1)},
            select=["PartitionKey"],
        ):
            found[e["PartitionKey"][len(prefix) :]] += 1
        return found
