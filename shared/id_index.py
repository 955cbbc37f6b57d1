"""Where a record is stored, found by its id alone: one index row per id (its PartitionKey is the
id, its RowKey the kind: `alert` or `action`) naming the record's tenant and row key, so finding
an alert or a governance action by id is two point reads however many are stored, instead of a
scan of every tenant's partition.

The index row is written before its record (`AlertStore`, `ActionStore`): a crash between the two
leaves a row that points at nothing, which the lookup answers as "no such record" (true: there
is none), and the redelivered message writes both again. Records stored before the index
existed have no row: `backfill` (run by retention_timer until one pass completes) writes theirs,
and until it has, a lookup the index misses falls back to the scan and writes the row it lacked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.query_params import BadInput, checked

Kind = Literal["alert", "action"]
MAX_ID = 256  # longer is not an id of ours (ours are 32 characters)


@dataclass(frozen=True)
class Location:
    tenant_id: str
    row_key: str


def usable_id(record_id: str) -> bool:
    """Whether `record_id` could be an id at all (a table key, printable, short); anything else
    is answered without reading storage."""
    try:
        return bool(checked("id", record_id, max_len=MAX_ID, key=True))
    except BadInput:
        return False


class IdIndex:
    """The index rows of one kind of record, and whether every such record has its row."""

    def __init__(self, table: TableClient, state: TableClient, kind: Kind) -> None:
        self._table, self._state, self.kind = table, state, kind
        self._complete = False  # once seen true it stays true: cached for the process

    def record(self, record_id: str, tenant_id: str, row_key: str) -> None:
        """Idempotent: a record always has the same location."""
        row = {"PartitionKey": record_id, "RowKey": self.kind, "Tenant": tenant_id}
        self._table.upsert_entity({**row, "Key": row_key}, mode=UpdateMode.REPLACE)

    def locate(self, record_id: str) -> Location | None:
        if not usable_id(record_id):
            return None
        try:
            row = self._table.get_entity(record_id, self.kind)
        except ResourceNotFoundError:
            return None
        return Location(str(row["Tenant"]), str(row["Key"]))

    def forget(self, record_id: str) -> None:
        self._table.delete_entity(record_id, self.kind)  # no error when already gone

    def complete(self) -> bool:
        """Whether every record of the kind has its index row (the backfill finished once)."""
        if not self._complete:
            try:
                self._state.get_entity("id-index", self.kind)
                self._complete = True
            except ResourceNotFoundError:
                pass
        return self._complete

    def backfill(
        self, stored: Iterable[tuple[str, Location]], keep_going: Callable[[], bool]
    ) -> int | None:
        """Write the index row of every stored record (`stored`: a scan, read once per
        deployment), then mark the index complete. Returns the rows written, or None when
        `keep_going` stopped it first (the next run starts again: a row written twice is
        harmless)."""
        if self.complete():
            return 0
        written = 0
        for record_id, at in stored:
            if not keep_going():
                return None
            self.record(record_id, at.tenant_id, at.row_key)
            written += 1
        self._state.upsert_entity({"PartitionKey": "id-index", "RowKey": self.kind})
        self._complete = True
        return written
