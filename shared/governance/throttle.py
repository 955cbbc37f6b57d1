"""A per-tenant request slot shared by every instance (Table Storage, ETags).

Identity Protection allows 1 request per second per tenant, shared by all apps, and its 429s carry
no Retry-After; so Vigil claims a slot before each confirmCompromised / dismiss call.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import utc


class TenantRateLimit:
    def __init__(self, table: TableClient, name: str, interval: timedelta) -> None:
        self._table, self._name, self._interval = table, name, interval

    def acquire(self, tenant_id: str, now: datetime) -> float:
        """0 when the caller may send now; otherwise the seconds to wait before asking again."""
        entity = {
            "PartitionKey": tenant_id,
            "RowKey": self._name,
            "NextAt": utc(now) + self._interval,
        }
        try:
            row = self._table.get_entity(tenant_id, self._name)
        except ResourceNotFoundError:
            try:
                self._table.create_entity(entity)
            except ResourceExistsError:
                return self._interval.total_seconds()
            return 0.0
        wait = (utc(row["NextAt"]) - utc(now)).total_seconds()
        if wait > 0:
            return wait
        try:
            self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return self._interval.total_seconds()  # another instance took this slot
        return 0.0
