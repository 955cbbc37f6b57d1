"""The activity log in Table Storage, and the detection work items sync queues for it.

Keys come from the event itself (time + event id), so a rerun overwrites instead of duplicating.
Partitions are per source, tenant and day, so a sync's writes batch well and no partition is hot.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import zlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from azure.data.tables import TableClient

from shared.models import Activity, utc
from shared.storage import MAX_BATCH, chunks, inverted_ticks, join_text, split_text, upsert_batches

_FIELDS = [f for f in Activity.__dataclass_fields__ if f not in ("time",)]
# What detection reads of an activity, in the order a v2 message carries them (`raw` stays in
# the table: the detections never read it, and it is the bulk of a record).
_WIRE = tuple(f for f in Activity.__dataclass_fields__ if f != "raw")


def partition_key(a: Activity) -> str:
    return f"{a.source}_{a.tenant_id}_{a.time:%Y%m%d}"


def day_partitions(source: str, tenant_id: str, before: date) -> tuple[str, str]:
    """The key range [lo, hi) of the tenant's partitions for event days before `before`."""
    return f"{source}_{tenant_id}_", f"{source}_{tenant_id}_{before:%Y%m%d}"


def row_key(a: Activity) -> str:
    return f"{inverted_ticks(a.time)}_{a.event_id}"


def to_entity(a: Activity) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": partition_key(a), "RowKey": row_key(a)}
    for name in _WIRE:  # every field but raw; plain values, so no asdict() copying
        value = getattr(a, name)
        if value is not None:  # Table Storage has no null: an absent property reads as None
            entity[name] = value
    entity["time"] = utc(a.time)
    entity.update(split_text("raw", a.raw))  # a large event stays whole across properties
    return entity


def from_entity(e: dict[str, Any]) -> Activity:
    values = {name: e[name] for name in _FIELDS if name in e and name != "raw"}
    return Activity(time=utc(e["time"]), raw=join_text("raw", e), **values)


# A queue message is at most 64 KiB after the host's base64 encoding: 48 KiB of text.
MAX_MESSAGE_CHARS = 45_000
# What a v2 message's rows may inflate to (100 activities without `raw` are far less): a message
# compressed to inflate to gigabytes is refused, not expanded.
MAX_UNPACKED = 16 * 1024 * 1024


def _to_row(a: Activity) -> list[Any]:
    return [utc(a.time).isoformat() if f == "time" else getattr(a, f) for f in _WIRE]


@dataclass(frozen=True)
class ActivityBatch:
    """A detection work item: up to 100 activities of one tenant.

    Sync carries the activities in the message itself (v2: compressed, without `raw`), so
    detection needs no read to find them; a v1 message names them by key in one partition
    (still read, and what an activity too large for a message falls back to).
    """

    partition_key: str = ""
    row_keys: tuple[str, ...] = ()
    activities: tuple[Activity, ...] = ()

    def __len__(self) -> int:
        return len(self.activities) or len(self.row_keys)

    def to_message(self) -> str:
        return self._message

    @functools.cached_property
    def _message(self) -> str:
        """Encoded once: sync checks its size, then sends it."""
        if not self.activities:
            return json.dumps({"v": 1, "pk": self.partition_key, "rks": list(self.row_keys)})
        packed = json.dumps([_to_row(a) for a in self.activities], separators=(",", ":"))
        z = base64.b64encode(zlib.compress(packed.encode(), 6)).decode()
        return json.dumps({"v": 2, "f": list(_WIRE), "z": z}, separators=(",", ":"))

    @classmethod
    def from_message(cls, body: bytes) -> ActivityBatch:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("v") == 2:
                return cls(activities=_unpack(data))
            pk, rks = data["pk"], data["rks"]
            if not isinstance(pk, str) or not isinstance(rks, list) or not rks:
                raise TypeError
            if not all(isinstance(rk, str) for rk in rks) or len(rks) > MAX_BATCH:
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError, zlib.error):
            raise ValueError(
                "detection message must be v2 "
                '{"v": 2, "f": [field, ...], "z": base64(zlib(JSON rows))} with 1-100 '
                'activities, or v1 {"pk": str, "rks": [str, ...]} with 1-100 keys'
            ) from None
        return cls(pk, tuple(rks))


def _unpack(data: dict[str, Any]) -> tuple[Activity, ...]:
    names, z = data["f"], data["z"]
    if not isinstance(names, list) or not isinstance(z, str) or "time" not in names:
        raise TypeError
    inflate = zlib.decompressobj()
    packed = inflate.decompress(base64.b64decode(z, validate=True), MAX_UNPACKED)
    if inflate.unconsumed_tail or not inflate.eof:
        raise ValueError("inflates beyond MAX_UNPACKED, or is cut short")
    rows = json.loads(packed)
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_BATCH:
        raise TypeError
    known = [(i, n) for i, n in enumerate(names) if n in _WIRE]
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) != len(names):
            raise TypeError
        values = {n: row[i] for i, n in known}
        values["time"] = utc(datetime.fromisoformat(values["time"]))
        out.append(Activity(**values))
    return tuple(out)


def work_items(activities: list[Activity]) -> list[ActivityBatch]:
    """Detection work for activities just stored: per tenant, ordered by user, up to 100 each.

    Ordered by user, a message holds all of few users' activities rather than one each of
    many, so detection reads and writes few profiles per message.
    """
    unique = {(a.tenant_id, a.event_id): a for a in activities}
    ordered = sorted(unique.values(), key=lambda a: (a.tenant_id, a.actor_id, a.time, a.event_id))
    out: list[ActivityBatch] = []
    for _, tenant_acts in itertools.groupby(ordered, key=lambda a: a.tenant_id):
        for chunk in chunks(list(tenant_acts), MAX_BATCH):
            out.extend(_fitting(chunk))
    return out


def _fitting(acts: list[Activity]) -> list[ActivityBatch]:
    """The activities as messages that fit the queue: halved until they do; an activity too
    large alone is sent by key."""
    batch = ActivityBatch(activities=tuple(acts))
    if len(batch.to_message()) <= MAX_MESSAGE_CHARS:
        return [batch]
    if len(acts) == 1:
        (a,) = acts
        return [ActivityBatch(partition_key(a), (row_key(a),))]
    half = len(acts) // 2
    return _fitting(acts[:half]) + _fitting(acts[half:])


class ActivityStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def write(self, activities: list[Activity]) -> list[ActivityBatch]:
        """Upsert activities (idempotent) and return them as detection work items."""
        upsert_batches(self._table, [to_entity(a) for a in activities])
        return work_items(activities)

    def load(self, batch: ActivityBatch) -> list[Activity]:
        """The batch's activities: those it carries, or (v1) one range query for its keys, where
        keys no longer stored are skipped."""
        if batch.activities:
            return sorted(batch.activities, key=lambda a: (a.time, a.event_id))
        wanted = set(batch.row_keys)
        rows = self._table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
            parameters={"pk": batch.partition_key, "lo": min(wanted), "hi": max(wanted)},
        )
        found = [from_entity(e) for e in rows if e["RowKey"] in wanted]
        return sorted(found, key=lambda a: (a.time, a.event_id))
