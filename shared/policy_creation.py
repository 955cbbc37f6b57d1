"""When each activity policy was created: it alerts only on activities after that (MDCA).

A policy's YAML may say (`created:`); otherwise the creation time is when this deployment first
loaded the policy enabled, kept in Table Storage (one row per policy id, written once with
insert-if-absent so workers loading it together agree, and read back on every later load so a
restart keeps it). The engine compares it with each activity's own event time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient

from shared.models import utc
from shared.policies import ActivityPolicy
from shared.storage import get_many

PARTITION = "activity"


def undated(policies: tuple[ActivityPolicy, ...]) -> list[str]:
    """The enabled policies whose creation time is for the deployment to record."""
    return [p.id for p in policies if p.created is None and p.config.enabled]


def dated(
    policies: tuple[ActivityPolicy, ...], created: dict[str, datetime]
) -> tuple[ActivityPolicy, ...]:
    """The policies with the recorded creation times filled in where their YAML has none."""
    return tuple(
        replace(p, created=created[p.id]) if p.created is None and p.id in created else p
        for p in policies
    )


class PolicyCreationStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get_many(self, policy_ids: list[str]) -> dict[str, datetime]:
        rows = get_many(self._table, PARTITION, policy_ids)
        return {k: utc(e["Created"]) for k, e in rows.items()}

    def record(self, policy_id: str, at: datetime) -> datetime:
        """`at` unless a creation time is already recorded; returns the one that holds."""
        entity = {"PartitionKey": PARTITION, "RowKey": policy_id, "Created": utc(at)}
        try:
            self._table.create_entity(entity)
            return utc(at)
        except ResourceExistsError:  # another worker loaded it first: theirs holds
            return utc(self._table.get_entity(PARTITION, policy_id)["Created"])

    def resolve(
        self, policies: tuple[ActivityPolicy, ...], now: datetime
    ) -> tuple[ActivityPolicy, ...]:
        """The policies with their creation times: the YAML's, the recorded, or `now` recorded."""
        pending = undated(policies)
        if not pending:
            return policies
        known = self.get_many(pending)
        # Whole seconds: every worker then holds exactly what the table gives back.
        first_load = utc(now).replace(microsecond=0)
        for pid in pending:
            if pid not in known:
                known[pid] = self.record(pid, first_load)
        return dated(policies, known)
