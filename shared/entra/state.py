"""Per Entra tenant and log (sign-ins, directory audits): where the pull stands (one row each)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.models import utc

PARTITION = "entra"


@dataclass(frozen=True)
class LogState:
    tenant_id: str
    log: str  # "signIns" | "directoryAudits"
    origin: datetime | None = None  # where the back-fill started (now - ENTRA_BACKFILL_DAYS)
    watermark: datetime | None = None  # every record up to here has been read
    window_start: datetime | None = None  # the window being read (ge) ...
    window_end: datetime | None = None  # ... and (le)
    next_link: str = ""  # `@odata.nextLink` of the next page of that window
    state: str = "backfilling"  # backfilling | current | throttled | unlicensed | forbidden | error
    reason: str = ""  # why it is not `current`, in words an operator can act on
    resume_after: datetime | None = None  # throttled / unlicensed: not asked again before then
    last_run_at: datetime | None = None
    records: int = 0  # records read, in all
    quarantined: int = 0
    unknown: str = "{}"  # JSON: unmapped names (audits) or error codes (sign-ins) -> count

    @property
    def unknown_counts(self) -> dict[str, int]:
        counts: dict[str, int] = json.loads(self.unknown or "{}")
        return counts

    def with_unknown(self, names: dict[str, int]) -> LogState:
        merged = self.unknown_counts
        for name, n in names.items():
            merged[name] = merged.get(name, 0) + n
        return replace(self, unknown=json.dumps(dict(sorted(merged.items()))))


_PROPS = {f.name: "".join(p.capitalize() for p in f.name.split("_")) for f in fields(LogState)}
_TIMES = {n for n, f in LogState.__dataclass_fields__.items() if "datetime" in str(f.type)}


class LogStateStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, tenant_id: str, log: str) -> LogState:
        try:
            e = self._table.get_entity(PARTITION, f"{tenant_id}_{log}")
        except ResourceNotFoundError:
            return LogState(tenant_id, log)
        values: dict[str, Any] = {}
        for name, prop in _PROPS.items():
            if name in ("tenant_id", "log") or prop not in e:
                continue
            value = e[prop]
            values[name] = (utc(value) if value else None) if name in _TIMES else value
        return LogState(tenant_id, log, **values)

    def all(self) -> list[LogState]:
        rows = self._table.query_entities("PartitionKey eq @p", parameters={"p": PARTITION})
        out = []
        for e in rows:
            tenant, _, log = str(e["RowKey"]).rpartition("_")
            out.append(self.get(tenant, log))
        return out

    def save(self, s: LogState) -> None:
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": f"{s.tenant_id}_{s.log}"}
        for name, prop in _PROPS.items():
            value = getattr(s, name)
            entity[prop] = (utc(value) if value else "") if name in _TIMES else value
        self._table.upsert_entity(entity)
