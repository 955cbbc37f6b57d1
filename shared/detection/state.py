"""Per-user and per-tenant detection profiles in Table Storage, with ETag optimistic concurrency.

One partition per tenant: the tenant's profile (`RowKey = tenant`), one row per user
(`RowKey = user_<id>`), and the daily alert limits' rows (`daily|<policy>|<day>`,
`daily_limit.py`). The JSON is split across properties to stay within the 64 KiB limit.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.detection.codec import dump, load_as
from shared.detection.daily_limit import DailyLimits
from shared.detection.profiles import TenantProfile, UserProfile
from shared.storage import (
    MAX_TEXT,
    get_many,
    join_text,
    split_text,
    transaction_batches,
    write_if_unchanged,
)

MAX_PARTS = 15  # 15 x 30,000 UTF-16 characters: within the 1 MiB entity limit

P = TypeVar("P", UserProfile, TenantProfile)


class StateConflict(RuntimeError):
    """Another worker changed the state since it was read; read again and redo."""


class ProfileStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.daily_limits = DailyLimits(table)

    def _get(self, cls: type[P], pk: str, rk: str) -> tuple[P, str | None]:
        try:
            e = self._table.get_entity(pk, rk)
        except ResourceNotFoundError:
            return cls(), None
        return load_as(cls, json.loads(join_text("State", e))), e.metadata["etag"]

    def _entity(self, pk: str, rk: str, profile: Any) -> dict[str, Any]:
        body = json.dumps(dump(profile), separators=(",", ":"))
        if len(body) > MAX_PARTS * MAX_TEXT:  # the profiles' own bounds keep far below this
            raise ValueError(f"detection profile {pk}/{rk} is {len(body)} characters: too large")
        return {"PartitionKey": pk, "RowKey": rk, **split_text("State", body, max_parts=MAX_PARTS)}

    def _save(self, pk: str, rk: str, profile: Any, etag: str | None) -> None:
        if not write_if_unchanged(self._table, self._entity(pk, rk, profile), etag):
            raise StateConflict(f"detection profile {pk}/{rk} changed concurrently")

    def get_users(
        self, tenant_id: str, user_ids: list[str]
    ) -> dict[str, tuple[UserProfile, str | None]]:
        """Several users' profiles in a few queries (14 per query) instead of a read each."""
        rows = get_many(self._table, tenant_id, [f"user_{u}" for u in user_ids])
        out: dict[str, tuple[UserProfile, str | None]] = {}
        for u in user_ids:
            e = rows.get(f"user_{u}")
            out[u] = (
                (load_as(UserProfile, json.loads(join_text("State", e))), e.metadata["etag"])
                if e is not None
                else (UserProfile(), None)
            )
        return out

    def save_users(
        self, tenant_id: str, changed: list[tuple[str, UserProfile, str | None]]
    ) -> None:
        """Save several users' profiles in transactions of the tenant's partition, each op
        guarded by its ETag (or created); any conflict fails its transaction: re-read and redo.
        """
        entities = [self._entity(tenant_id, f"user_{u}", p) for u, p, _ in changed]
        etags = {f"user_{u}": etag for u, _, etag in changed}
        for batch in transaction_batches(entities):
            ops: list[Any] = [
                ("create", e)
                if etags[e["RowKey"]] is None
                else (
                    "update",
                    e,
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": etags[e["RowKey"]],
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
                for e in batch
            ]
            try:
                self._table.submit_transaction(ops)
            except TableTransactionError as exc:
                raise StateConflict(
                    f"detection profiles of {tenant_id} changed concurrently"
                ) from exc

    def get(self, tenant_id: str, user_id: str) -> tuple[UserProfile, str | None]:
        return self._get(UserProfile, tenant_id, f"user_{user_id}")

    def save(self, tenant_id: str, user_id: str, profile: UserProfile, etag: str | None) -> None:
        self._save(tenant_id, f"user_{user_id}", profile, etag)

    def get_tenant(self, tenant_id: str) -> tuple[TenantProfile, str | None]:
        return self._get(TenantProfile, tenant_id, "tenant")

    def save_tenant(self, tenant_id: str, profile: TenantProfile, etag: str | None) -> None:
        self._save(tenant_id, "tenant", profile, etag)
