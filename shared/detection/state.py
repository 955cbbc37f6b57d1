"""Per-user and per-tenant detection profiles in Table Storage, with ETag optimistic concurrency.

One partition per tenant: the tenant's profile (`RowKey = tenant`), one row per user
(`RowKey = user_<id>`), and the daily alert limits' rows (`daily|<policy>|<day>`,
`daily_limit.py`). The JSON is split across properties to stay within the 64 KiB limit.

Users' profiles are kept in a bounded per-process cache with their ETags, so a worker that saw a
user recently does not read the row again: the ETag-guarded save is what keeps it right. Another
worker's save in between fails ours (`StateConflict`), which drops those users from the cache so
the redo reads them fresh.
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
from shared.lru import Lru
from shared.storage import (
    MAX_TEXT,
    get_many,
    join_text,
    split_text,
    transaction_batches,
    write_if_unchanged,
)
from shared.table_tx import submit

MAX_PARTS = 15  # 15 x 30,000 UTF-16 characters: within the 1 MiB entity limit
# Users' profiles cached per process (least recently used out first): about 3 KB each.
CACHED_PROFILES = 20_000

P = TypeVar("P", UserProfile, TenantProfile)


class StateConflict(RuntimeError):
    """Another worker changed the state since it was read; read again and redo."""


class ProfileStore:
    def __init__(self, table: TableClient, cached_profiles: int = CACHED_PROFILES) -> None:
        self._table = table
        self.daily_limits = DailyLimits(table)
        self._cached: Lru[tuple[str, str], tuple[UserProfile, str]] = Lru(cached_profiles)

    def _remember(self, tenant_id: str, user_id: str, profile: UserProfile, etag: str) -> None:
        self._cached.put((tenant_id, user_id), (profile, etag))

    def _forget(self, tenant_id: str, user_ids: list[str]) -> None:
        for u in user_ids:
            self._cached.pop((tenant_id, u))

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
        """Several users' profiles: those cached, and the rest in a few queries (14 each)."""
        out: dict[str, tuple[UserProfile, str | None]] = {}
        for u in user_ids:
            if (hit := self._cached.get((tenant_id, u))) is not None:
                out[u] = hit
        missing = [u for u in user_ids if u not in out]
        rows = get_many(self._table, tenant_id, [f"user_{u}" for u in missing]) if missing else {}
        for u in missing:
            e = rows.get(f"user_{u}")
            if e is None:
                out[u] = (UserProfile(), None)
                continue
            profile = load_as(UserProfile, json.loads(join_text("State", e)))
            out[u] = (profile, e.metadata["etag"])
            self._remember(tenant_id, u, profile, e.metadata["etag"])
        return out

    def save_users(
        self, tenant_id: str, changed: list[tuple[str, UserProfile, str | None]]
    ) -> None:
        """Save several users' profiles in transactions of the tenant's partition, each op
        guarded by its ETag (or created); any conflict fails its transaction: re-read and redo.
        """
        entities = [self._entity(tenant_id, f"user_{u}", p) for u, p, _ in changed]
        etags = {f"user_{u}": etag for u, _, etag in changed}
        profiles = {f"user_{u}": p for u, p, _ in changed}
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
                results = submit(self._table, ops)
            except TableTransactionError as exc:
                self._forget(tenant_id, [u for u, _, _ in changed])
                raise StateConflict(
                    f"detection profiles of {tenant_id} changed concurrently"
                ) from exc
            for e, meta in zip(batch, results, strict=True):
                rk = e["RowKey"]
                if etag := meta.etag:
                    self._remember(tenant_id, rk.removeprefix("user_"), profiles[rk], etag)
                else:  # no ETag in the answer: read it next time
                    self._forget(tenant_id, [rk.removeprefix("user_")])

    def get(self, tenant_id: str, user_id: str) -> tuple[UserProfile, str | None]:
        return self._get(UserProfile, tenant_id, f"user_{user_id}")

    def save(self, tenant_id: str, user_id: str, profile: UserProfile, etag: str | None) -> None:
        self._forget(tenant_id, [user_id])
        self._save(tenant_id, f"user_{user_id}", profile, etag)

    def get_tenant(self, tenant_id: str) -> tuple[TenantProfile, str | None]:
        return self._get(TenantProfile, tenant_id, "tenant")

    def save_tenant(self, tenant_id: str, profile: TenantProfile, etag: str | None) -> None:
        self._save(tenant_id, "tenant", profile, etag)
