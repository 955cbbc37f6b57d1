"""Groups per tenant in Table Storage (id and name, as the directory sync last saw them).

Who is in which group lives on the user records (`UserRecord.groups`); this table only lets a
policy name a group by its name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.storage import transaction_batches, upsert_batches
from shared.table_tx import submit


@dataclass(frozen=True)
class GroupRecord:
    tenant_id: str
    group_id: str
    name: str


class GroupStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def for_tenant(self, tenant_id: str) -> list[GroupRecord]:
        rows = self._table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": tenant_id}, select=["RowKey", "Name"]
        )
        return [GroupRecord(tenant_id, e["RowKey"], str(e.get("Name", ""))) for e in rows]

    def names(self, tenant_id: str) -> dict[str, str]:
        """Group id -> name, for the tenant."""
        return {g.group_id: g.name for g in self.for_tenant(tenant_id)}

    def replace(self, tenant_id: str, groups: dict[str, str]) -> None:
        """Make the tenant's groups exactly these (id -> name); doing it twice changes nothing."""
        stale = [g.group_id for g in self.for_tenant(tenant_id) if g.group_id not in groups]
        upsert_batches(
            self._table,
            [{"PartitionKey": tenant_id, "RowKey": k, "Name": v} for k, v in groups.items()],
        )
        deletes = [{"PartitionKey": tenant_id, "RowKey": k} for k in stale]
        for batch in transaction_batches(deletes):
            submit(self._table, [("delete", e) for e in batch])

    def save(self, tenant_id: str, group_id: str, name: str) -> None:
        """One group's name (a directory delta changes groups one at a time)."""
        self._table.upsert_entity({"PartitionKey": tenant_id, "RowKey": group_id, "Name": name})

    def delete(self, tenant_id: str, group_id: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._table.delete_entity(tenant_id, group_id)
