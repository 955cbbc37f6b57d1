"""User records per tenant in Table Storage (the directory as last synced)."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.models import UserRecord, utc
from shared.storage import get_many, join_text, split_text, upsert_batches


def directory_id(value: Any) -> str:
    """A directory feed's id of a person or group, or "" when it cannot be one: it must fit a
    table key and an item of a comma-separated list (the groups a record lists)."""
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return "" if any(c in text for c in "/\\#?,") or not text.isprintable() else text


def _to_entity(u: UserRecord) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": u.tenant_id,
        "RowKey": u.user_id,
        "Email": u.email,
        "Status": u.status,
        "IsAdmin": u.is_admin,
        "AuthMethod": u.auth_method,
    }
    if u.listed_in_round:
        entity["ListedInRound"] = u.listed_in_round
    if u.groups:  # ids are digits: commas separate them; a long list spans several properties
        entity.update(split_text("Groups", ",".join(u.groups)))
    for name, value in (
        ("FirstSeen", u.first_seen),
        ("LastSeen", u.last_seen),
        ("DeactivatedAt", u.deactivated_at),
    ):
        if value is not None:
            entity[name] = utc(value)
    return entity


def _from_entity(e: dict[str, Any]) -> UserRecord:
    def when(name: str) -> Any:
        return utc(e[name]) if e.get(name) else None

    return UserRecord(
        tenant_id=e["PartitionKey"],
        user_id=e["RowKey"],
        email=e.get("Email", ""),
        status=e.get("Status", "active"),
        is_admin=bool(e.get("IsAdmin", False)),
        auth_method=e.get("AuthMethod", ""),
        first_seen=when("FirstSeen"),
        last_seen=when("LastSeen"),
        deactivated_at=when("DeactivatedAt"),
        groups=tuple(g for g in join_text("Groups", e).split(",") if g),
        listed_in_round=int(e.get("ListedInRound", 0)),
    )


class UserStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, tenant_id: str, user_id: str) -> UserRecord | None:
        try:
            return _from_entity(self._table.get_entity(tenant_id, user_id))
        except ResourceNotFoundError:
            return None

    def get_many(self, tenant_id: str, user_ids: list[str]) -> dict[str, UserRecord]:
        """Several users' records in a few queries (14 per query)."""
        return {rk: _from_entity(e) for rk, e in get_many(self._table, tenant_id, user_ids).items()}

    def save(self, user: UserRecord) -> None:
        self._table.upsert_entity(_to_entity(user))

    def save_many(self, users: list[UserRecord]) -> None:
        """Upsert many records in transactions (one partition per tenant, 100 per batch)."""
        upsert_batches(self._table, [_to_entity(u) for u in users])

    def listed_before(self, tenant_id: str, round_: int) -> list[UserRecord]:
        """The tenant's records, not deleted, that a users delta round before `round_` listed
        last (records no round listed, such as Workplace's, are never among them)."""
        rows = self._table.query_entities(
            "PartitionKey eq @pk and ListedInRound gt 0 and ListedInRound lt @r "
            "and Status ne 'deleted'",
            parameters={"pk": tenant_id, "r": round_},
        )
        return [_from_entity(e) for e in rows]

    def for_tenant(self, tenant_id: str) -> list[UserRecord]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [_from_entity(e) for e in rows]
