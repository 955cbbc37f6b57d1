"""Where an alert is stored, found by its id alone: one index row per alert (its PartitionKey is
the alert's id) naming the alert's tenant and row key, so finding an alert is two point reads
however many alerts there are, instead of a scan of every alert.

The index row is written before the alert (`AlertStore`): a crash between the two leaves a row
that points at nothing, which the lookup answers as "no such alert" (true: there is none), and
the redelivered message writes both again. Alerts stored before the index existed have no row:
`backfill` (run by retention_timer until one pass completes) writes theirs, and until it has, a
lookup the index misses falls back to the scan and writes the row it lacked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.query_params import KEY_FORBIDDEN

ROW = "alert"  # the index row's RowKey (its PartitionKey is the alert id)
MAX_ID = 256  # longer is not an alert id (ours are 32 characters)
_COMPLETE = ("alert-index", "complete")  # in the API state table: every alert has its row


@dataclass(frozen=True)
class Location:
    tenant_id: str
    row_key: str


def usable_id(alert_id: str) -> bool:
    """Whether `alert_id` could be an alert id at all (a table key, printable, short); anything
    else is answered without reading storage."""
    return (
        0 < len(alert_id) <= MAX_ID
        and alert_id.isprintable()
        and not any(c in alert_id for c in KEY_FORBIDDEN)
    )


class AlertIndex:
    def __init__(self, table: TableClient, state: TableClient) -> None:
        self._table, self._state = table, state
        self._complete = False  # once seen true it stays true: cached for the process

    def record(self, alert_id: str, tenant_id: str, row_key: str) -> None:
        """Idempotent: the same alert always has the same location."""
        row = {"PartitionKey": alert_id, "RowKey": ROW, "Tenant": tenant_id, "AlertKey": row_key}
        self._table.upsert_entity(row, mode=UpdateMode.REPLACE)

    def locate(self, alert_id: str) -> Location | None:
        if not usable_id(alert_id):
            return None
        try:
            row = self._table.get_entity(alert_id, ROW)
        except ResourceNotFoundError:
            return None
        return Location(str(row["Tenant"]), str(row["AlertKey"]))

    def forget(self, alert_id: str) -> None:
        self._table.delete_entity(alert_id, ROW)  # no error when already gone

    def complete(self) -> bool:
        """Whether every alert has its index row (the backfill finished once)."""
        if not self._complete:
            try:
                self._state.get_entity(*_COMPLETE)
                self._complete = True
            except ResourceNotFoundError:
                pass
        return self._complete

    def backfill(self, alerts: TableClient, keep_going: Callable[[], bool]) -> int | None:
        """Write the index row of every stored alert (a scan, once per deployment), then mark
        the index complete. Returns the rows written, or None when `keep_going` stopped it
        first (the next run starts again: writing a row twice is harmless)."""
        if self.complete():
            return 0
        written = 0
        rows: Any = alerts.query_entities(
            "RowKey ne ''", select=["PartitionKey", "RowKey", "AlertId"]
        )
        for row in rows:
            if not keep_going():
                return None
            self.record(str(row["AlertId"]), str(row["PartitionKey"]), str(row["RowKey"]))
            written += 1
        self._state.upsert_entity({"PartitionKey": _COMPLETE[0], "RowKey": _COMPLETE[1]})
        self._complete = True
        return written
