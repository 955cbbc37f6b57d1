"""Installs of Vigil into a source tenant, and the single-use `state` nonces of the install flow."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import Install, utc

InstallStatus = Literal["active", "uninstalled", "needs_reauth", "decommissioned"]


class InstallStore:
    def __init__(self, table: TableClient, source: str = "workplace") -> None:
        self._table, self._source = table, source

    def save(self, install: Install) -> None:
        self._table.upsert_entity(
            {
                "PartitionKey": self._source,
                "RowKey": install.community_id,
                "CommunityName": install.community_name,
                "InstallId": install.install_id,
                "Mode": install.mode,
                "Status": install.status,
                "InstalledAt": utc(install.installed_at),
                "Permissions": json.dumps(list(install.permissions)),
                "InstallType": install.install_type,
                "StatusReason": install.status_reason,
                "StatusChangedAt": utc(install.status_changed_at or install.installed_at),
            }
        )

    def set_status(
        self, community_id: str, status: InstallStatus, reason: str, at: datetime
    ) -> None:
        """Change only the lifecycle status (a merge: the rest of the install is kept)."""
        self._table.upsert_entity(
            {
                "PartitionKey": self._source,
                "RowKey": community_id,
                "Status": status,
                "StatusReason": reason[:1000],
                "StatusChangedAt": utc(at),
            },
            mode=UpdateMode.MERGE,
        )

    def get(self, community_id: str) -> Install | None:
        try:
            return _from_entity(self._table.get_entity(self._source, community_id))
        except ResourceNotFoundError:
            return None

    def all(self) -> list[Install]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": self._source})
        return [_from_entity(e) for e in rows]


def _from_entity(e: dict[str, Any]) -> Install:
    return Install(
        community_id=e["RowKey"],
        community_name=e.get("CommunityName", ""),
        install_id=e.get("InstallId", ""),
        mode=e.get("Mode", "install"),
        status=e.get("Status", "active"),
        installed_at=utc(e["InstalledAt"]),
        permissions=tuple(json.loads(e.get("Permissions", "[]"))),
        install_type=e.get("InstallType", ""),
        status_reason=e.get("StatusReason", ""),
        status_changed_at=utc(e["StatusChangedAt"]) if e.get("StatusChangedAt") else None,
    )


def _state_key(state: str) -> str:
    """A state's row key: its SHA-256, so the nonce itself is in no table, storage URL or the
    SDK's request log (which records entity URLs)."""
    return hashlib.sha256(state.encode()).hexdigest()


class InstallStates:
    """Single-use, expiring nonces that tie an install callback to an admin who started it.

    A state is `<expiry day YYYYMMDD>.<random>`; its row (keyed by the state's hash) lives in
    partition `state_<expiry day>`, so retention drops whole expired days without reading the
    live ones. A state without a day is looked up in partition `state`, where states were kept
    before they carried one (retention deletes those once expired).
    """

    LEGACY_PARTITION = "state"
    PREFIX = "state_"

    def __init__(self, table: TableClient) -> None:
        self._table = table

    @classmethod
    def partition(cls, state: str) -> str:
        day, dot, _ = state.partition(".")
        if dot and len(day) == 8 and day.isascii() and day.isdigit():
            return cls.PREFIX + day
        return cls.LEGACY_PARTITION

    def issue(self, now: datetime, ttl: timedelta) -> str:
        expires = utc(now + ttl)
        state = f"{expires:%Y%m%d}.{secrets.token_urlsafe(24)}"
        self._table.create_entity(
            {
                "PartitionKey": self.partition(state),
                "RowKey": _state_key(state),
                "ExpiresAt": expires,
            }
        )
        return state

    def consume(self, state: str, now: datetime) -> bool:
        """True once for a state that was issued and has not expired; it is gone afterwards."""
        if not state or any(c in state for c in "/\\#?") or len(state) > 200:
            return False
        try:
            entity = self._table.get_entity(self.partition(state), _state_key(state))
            # Deleting with the ETag makes two racing callbacks consume it at most once.
            self._table.delete_entity(
                entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except (ResourceNotFoundError, ResourceModifiedError):
            return False
        return bool(utc(entity["ExpiresAt"]) > now)
