"""A policy's daily alert limit, exact with any number of workers.

One entity per (tenant, policy, event day) in the detection state table holds the ids of the
alerts admitted that day. A worker reads it, decides (`admit`, pure) and writes it back only if
its ETag still holds; a conflict re-reads and decides again. An admitted id stays admitted, so a
redelivery or a retried batch gets the same answer. Only policies with a limit pay for it: a
read and a write per new alert, and once a day is full a process answers from memory.
"""

from __future__ import annotations

import threading
from datetime import date

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.storage import join_text, split_text, write_if_unchanged

MAX_ATTEMPTS = 50  # each conflict means another worker admitted an alert: the day fills fast
MAX_FULL_DAYS = 10_000  # full days remembered per process


class DailyLimitContention(RuntimeError):
    """The day's entity kept changing under this worker; the batch is retried."""


def admit(admitted: tuple[str, ...], alert_id: str, limit: int) -> tuple[bool, tuple[str, ...]]:
    """Whether the alert is within the limit, and the ids admitted once it is decided."""
    if alert_id in admitted:
        return True, admitted
    if len(admitted) >= limit:
        return False, admitted
    return True, (*admitted, alert_id)


def row_key(policy_id: str, day: date) -> str:
    return f"daily|{policy_id}|{day.isoformat()}"


class DailyLimits:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._full: dict[tuple[str, str], frozenset[str]] = {}  # ids never leave a day
        self._lock = threading.Lock()

    def _read(self, tenant_id: str, key: str) -> tuple[tuple[str, ...], str | None]:
        try:
            e = self._table.get_entity(tenant_id, key)
        except ResourceNotFoundError:
            return (), None
        ids = tuple(i for i in join_text("Ids", e).split(",") if i)
        return ids, e.metadata["etag"]

    def _write(self, tenant_id: str, key: str, ids: tuple[str, ...], etag: str | None) -> bool:
        entity = {"PartitionKey": tenant_id, "RowKey": key, **split_text("Ids", ",".join(ids))}
        return write_if_unchanged(self._table, entity, etag)

    def reserve(self, tenant_id: str, policy_id: str, day: date, alert_id: str, limit: int) -> bool:
        """True when the alert gets (or already had) one of the day's `limit` slots."""
        key = row_key(policy_id, day)
        full = self._full.get((tenant_id, key))
        if full is not None:
            return alert_id in full
        for _ in range(MAX_ATTEMPTS):
            ids, etag = self._read(tenant_id, key)
            admitted, after = admit(ids, alert_id, limit)
            if after != ids and not self._write(tenant_id, key, after, etag):
                continue  # another worker changed the day first: decide again on its ids
            if len(after) >= limit:
                self._remember_full(tenant_id, key, after)
            return admitted
        raise DailyLimitContention(
            f"daily alert limit of {policy_id} for {tenant_id} kept changing"
        )

    def _remember_full(self, tenant_id: str, key: str, ids: tuple[str, ...]) -> None:
        with self._lock:
            if len(self._full) >= MAX_FULL_DAYS:
                self._full.clear()
            self._full[(tenant_id, key)] = frozenset(ids)
