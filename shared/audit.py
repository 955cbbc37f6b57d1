"""The audit log: every triage and governance command, who gave it, when, and what came of it.

One partition, newest first (row key: inverted ticks + a unique suffix); commands are written
by people, so the volume stays far below a partition's limits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient

from shared.access import Principal
from shared.models import utc
from shared.storage import inverted_ticks

PARTITION = "audit"


@dataclass(frozen=True)
class AuditEntry:
    time: datetime
    actor: Principal
    command: str  # e.g. "alert.update", "governance.approve", "suppression.delete"
    target: str  # the alert, governance action or suppression id
    status: int  # the HTTP status the command was answered with
    detail: dict[str, Any] = field(default_factory=dict)
    tenant_id: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "time": utc(self.time).isoformat(),
            "actor": self.actor.as_json(),
            "command": self.command,
            "target": self.target,
            "status": self.status,
            "tenantId": self.tenant_id,
            "detail": self.detail,
        }


class AuditLog:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def write(self, entry: AuditEntry) -> None:
        self._table.create_entity(
            {
                "PartitionKey": PARTITION,
                "RowKey": f"{inverted_ticks(utc(entry.time))}_{uuid.uuid4().hex[:12]}",
                "Time": utc(entry.time),
                "ActorKind": entry.actor.kind,
                "ActorName": entry.actor.name,
                "ActorId": entry.actor.id,
                "Command": entry.command,
                "Target": entry.target,
                "Status": entry.status,
                "TenantId": entry.tenant_id,
                "Detail": json.dumps(entry.detail, default=str)[:30_000],
            }
        )

    def page(
        self, where: Mapping[str, str], *, after: str | None, since: datetime | None, limit: int
    ) -> tuple[list[AuditEntry], str | None]:
        """Entries newest first matching `where` (column -> value), and the last row key read
        when more remain."""
        clauses, params = ["PartitionKey eq @pk"], {"pk": PARTITION}
        if after:
            clauses.append("RowKey gt @after")
            params["after"] = after
        if since is not None:
            clauses.append("RowKey lt @since")
            params["since"] = inverted_ticks(utc(since)) + "~"
        for i, (column, value) in enumerate(sorted(where.items())):
            clauses.append(f"{column} eq @w{i}")
            params[f"w{i}"] = value
        rows = self._table.query_entities(
            " and ".join(clauses), parameters=params, results_per_page=limit + 1
        )
        found: list[dict[str, Any]] = []
        for row in rows:
            found.append(row)
            if len(found) > limit:
                break
        more = len(found) > limit
        page = found[:limit]
        return [_entry(e) for e in page], (str(page[-1]["RowKey"]) if more else None)


def _entry(e: Mapping[str, Any]) -> AuditEntry:
    actor = Principal(
        e.get("ActorKind", "user"), e.get("ActorName", ""), e.get("ActorId", ""), frozenset()
    )
    return AuditEntry(
        time=utc(e["Time"]),
        actor=actor,
        command=e.get("Command", ""),
        target=e.get("Target", ""),
        status=int(e.get("Status", 0)),
        detail=json.loads(e.get("Detail") or "{}"),
        tenant_id=e.get("TenantId", ""),
    )
