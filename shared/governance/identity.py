"""Which Entra ID user a Workplace person is: matched by e-mail or UPN, cached in Table Storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.governance.graph_results import EntraUser
from shared.models import short_hash, utc

PARTITION = "entra"


class UserDirectory(Protocol):
    def find_user(self, email: str) -> EntraUser | None: ...


class EntraUserCache:
    """E-mail -> Entra user, remembered for `ttl`; a miss is not cached (the user may appear)."""

    def __init__(self, table: TableClient, ttl: timedelta) -> None:
        self._table, self._ttl = table, ttl

    def resolve(
        self, email: str, directory: Callable[[], UserDirectory], now: datetime
    ) -> EntraUser | None:
        key = short_hash(email.strip().lower())
        try:
            row = self._table.get_entity(PARTITION, key)
            if utc(row["CachedAt"]) + self._ttl > now:
                return EntraUser(
                    id=row["ObjectId"],
                    user_principal_name=row.get("Upn", ""),
                    mail=row.get("Mail", ""),
                    account_enabled=bool(row.get("AccountEnabled", True)),
                    on_premises_sync_enabled=bool(row.get("OnPremisesSync", False)),
                )
        except ResourceNotFoundError:
            pass
        user = directory().find_user(email.strip())
        if user is not None:
            self._table.upsert_entity(
                {
                    "PartitionKey": PARTITION,
                    "RowKey": key,
                    "ObjectId": user.id,
                    "Upn": user.user_principal_name,
                    "Mail": user.mail,
                    "AccountEnabled": user.account_enabled,
                    "OnPremisesSync": user.on_premises_sync_enabled,
                    "CachedAt": utc(now),
                }
            )
        return user
