"""Per community: where the directory sync stands and how the connector is doing (one row each)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import utc


@dataclass(frozen=True)
class SyncState:
    community_id: str
    run_id: str = ""  # the directory snapshot being read ("" when none is)
    run_started_at: datetime | None = None
    edge: int = 0  # index into directory.EDGES of the edge being read (or GROUP_MEMBERS, DONE)
    group: str = ""  # at GROUP_MEMBERS: the group whose members are being read
    cursor: str = ""  # `after` cursor of the next page of that edge
    pages: int = 0  # pages read in this run
    directory_synced_at: datetime | None = None  # when the last complete snapshot was taken
    users: int = 0  # people in the last complete snapshot
    last_attempt_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    failures: int = 0  # consecutive runs that failed the way calls fail after the shutdown
    last_drain_at: datetime | None = None  # when webhooks for it were last stored as activities
    newest_event_at: datetime | None = None  # event time of the newest of those
    token_fingerprint: str = ""  # custom integration: which token the install was checked with


_NAMES = {f.name: "".join(p.capitalize() for p in f.name.split("_")) for f in fields(SyncState)}
_TIMES = {n for n, f in SyncState.__dataclass_fields__.items() if "datetime" in str(f.type)}


class SyncStateStore:
    PARTITION = "workplace"

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, community_id: str) -> SyncState:
        try:
            e = self._table.get_entity(self.PARTITION, community_id)
        except ResourceNotFoundError:
            return SyncState(community_id)
        values: dict[str, Any] = {}
        for name, prop in _NAMES.items():
            if name == "community_id" or prop not in e:
                continue
            value = e[prop]
            if name in _TIMES:
                value = utc(value) if value else None
            values[name] = value
        return SyncState(community_id, **values)

    def update(self, community_id: str, **changes: Any) -> None:
        """Merge only the given fields: the drain and the directory sync never clobber each other.

        A datetime field set to None is stored as an empty string (Table Storage has no null).
        """
        entity: dict[str, Any] = {"PartitionKey": self.PARTITION, "RowKey": community_id}
        for name, value in changes.items():
            prop = _NAMES[name]
            if name in _TIMES:
                entity[prop] = utc(value) if value is not None else ""
            else:
                entity[prop] = value
        self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
