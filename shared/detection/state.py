"""Per-user detection state in Table Storage, updated with ETag optimistic concurrency."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.detection.failed_logins import Failure, OpenBurst, UserState


class StateConflict(RuntimeError):
    """Another worker changed the state since it was read; read again and redo."""


def _dump(state: UserState) -> str:
    return json.dumps(
        asdict(state), default=lambda v: v.isoformat() if isinstance(v, datetime) else v
    )


def _load(text: str) -> UserState:
    raw: dict[str, Any] = json.loads(text)
    failures = tuple(
        Failure(
            datetime.fromisoformat(f["time"]), f["event_id"], f.get("ip", ""), f.get("country", "")
        )
        for f in raw.get("failures", [])
    )
    b = raw.get("burst")
    burst = (
        OpenBurst(
            b["alert_id"],
            datetime.fromisoformat(b["first"]),
            datetime.fromisoformat(b["last"]),
            b["count"],
        )
        if b
        else None
    )
    return UserState(failures, burst)


class DetectionStateStore:
    def __init__(self, table: TableClient, detector: str) -> None:
        self._table, self._detector = table, detector

    def _keys(self, tenant_id: str, user_id: str) -> tuple[str, str]:
        return f"{self._detector}_{tenant_id}", user_id

    def get(self, tenant_id: str, user_id: str) -> tuple[UserState, str | None]:
        pk, rk = self._keys(tenant_id, user_id)
        try:
            e = self._table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return UserState(), None
        return _load(e["State"]), e.metadata["etag"]

    def save(self, tenant_id: str, user_id: str, state: UserState, etag: str | None) -> None:
        pk, rk = self._keys(tenant_id, user_id)
        entity = {"PartitionKey": pk, "RowKey": rk, "State": _dump(state)}
        try:
            if etag is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise StateConflict(f"state of {user_id} changed concurrently") from exc
