"""The activity log in Table Storage, and the detection work items that point into it.

Keys come from the event itself (time + event id), so a rerun overwrites instead of duplicating.
Partitions are per source, tenant and day, so a sync's writes batch well and no partition is hot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from azure.data.tables import TableClient

from shared.models import Activity, utc
from shared.storage import MAX_BATCH, chunks, inverted_ticks, join_text, split_text, upsert_batches

_FIELDS = [f for f in Activity.__dataclass_fields__ if f not in ("time",)]


def partition_key(a: Activity) -> str:
    return f"{a.source}_{a.tenant_id}_{a.time:%Y%m%d}"


def row_key(a: Activity) -> str:
    return f"{inverted_ticks(a.time)}_{a.event_id}"


def to_entity(a: Activity) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key(a), "RowKey": row_key(a)}
    for name, value in asdict(a).items():
        if name == "raw":
            entity.update(split_text("raw", value))  # a large event stays whole across properties
        else:
            entity[name] = utc(value) if name == "time" else value
    return entity


def from_entity(e: dict[str, Any]) -> Activity:
    values = {name: e[name] for name in _FIELDS if name in e and name != "raw"}
    return Activity(time=utc(e["time"]), raw=join_text("raw", e), **values)


@dataclass(frozen=True)
class ActivityBatch:
    """A detection work item: up to 100 activities of one partition, by key (never the records)."""

    partition_key: str
    row_keys: tuple[str, ...]

    def to_message(self) -> str:
        return json.dumps({"v": 1, "pk": self.partition_key, "rks": list(self.row_keys)})

    @classmethod
    def from_message(cls, body: bytes) -> ActivityBatch:
        try:
            data = json.loads(body)
            pk, rks = data["pk"], data["rks"]
            if not isinstance(pk, str) or not isinstance(rks, list) or not rks:
                raise TypeError
            if not all(isinstance(rk, str) for rk in rks) or len(rks) > MAX_BATCH:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                'detection message must be {"pk": str, "rks": [str, ...]} with 1-100 keys'
            ) from None
        return cls(pk, tuple(rks))


class ActivityStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def write(self, activities: list[Activity]) -> list[ActivityBatch]:
        """Upsert activities (idempotent) and return them as detection work items."""
        entities = [to_entity(a) for a in activities]
        upsert_batches(self._table, entities)
        by_pk: dict[str, list[str]] = {}
        for e in entities:
            keys = by_pk.setdefault(e["PartitionKey"], [])
            if e["RowKey"] not in keys:
                keys.append(e["RowKey"])
        return [
            ActivityBatch(pk, tuple(group))
            for pk, rks in by_pk.items()
            for group in chunks(sorted(rks), MAX_BATCH)
        ]

    def load(self, batch: ActivityBatch) -> list[Activity]:
        """The batch's activities in one range query; keys no longer stored are skipped."""
        wanted = set(batch.row_keys)
        rows = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
            parameters={"pk": batch.partition_key, "lo": min(wanted), "hi": max(wanted)},
        )
        found = [from_entity(e) for e in rows if e["RowKey"] in wanted]
        return sorted(found, key=lambda a: (a.time, a.event_id))
