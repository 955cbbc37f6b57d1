"""Governance action records in Table Storage: one partition per tenant, one row per action."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import GovernanceAction, utc

TERMINAL = frozenset({"succeeded", "failed", "skipped", "reverted"})

_TIMES = (
    "CreatedAt",
    "CompletedAt",
    "EventTime",
    "ApprovedAt",
    "RevertedAt",
    "UpdatedAt",
    "LeaseUntil",
)


class RecordConflict(RuntimeError):
    """Someone else changed the record since it was read (another delivery of the message)."""


def _to_entity(a: GovernanceAction) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": a.tenant_id,
        "RowKey": a.id,
        "AlertId": a.alert_id,
        "AlertKey": a.alert_key,
        "Action": a.action,
        "Target": a.target,
        "TargetLower": a.target.lower(),
        "TargetObjectId": a.target_object_id,
        "Mode": a.mode,
        "Status": a.status,
        "Attempts": a.attempts,
        "RequestId": a.request_id,
        "ErrorCode": a.error_code,
        "ErrorMessage": a.error_message,
        "ErrorDate": a.error_date,
        "PolicyId": a.policy_id,
        "ApprovalRequired": a.approval_required,
        "Detail": a.detail,
        "Progress": a.progress,
        "ApprovedBy": a.approved_by,
        "RevertedBy": a.reverted_by,
    }
    for name, value in zip(
        _TIMES,
        (
            a.created_at,
            a.completed_at,
            a.event_time,
            a.approved_at,
            a.reverted_at,
            a.updated_at,
            a.lease_until,
        ),
        strict=True,
    ):
        if value is not None:
            entity[name] = utc(value)
    return entity


def _from_entity(e: dict[str, Any]) -> GovernanceAction:
    def when(name: str) -> datetime | None:
        return utc(e[name]) if e.get(name) else None

    return GovernanceAction(
        id=e["RowKey"],
        alert_id=e["AlertId"],
        tenant_id=e["PartitionKey"],
        action=e["Action"],
        target=e["Target"],
        mode=e["Mode"],
        status=e["Status"],
        attempts=int(e.get("Attempts", 0)),
        request_id=e.get("RequestId", ""),
        error_code=e.get("ErrorCode", ""),
        error_message=e.get("ErrorMessage", ""),
        created_at=utc(e["CreatedAt"]),
        completed_at=when("CompletedAt"),
        alert_key=e.get("AlertKey", ""),
        policy_id=e.get("PolicyId", ""),
        approval_required=bool(e.get("ApprovalRequired", False)),
        target_object_id=e.get("TargetObjectId", ""),
        event_time=when("EventTime"),
        detail=e.get("Detail", ""),
        progress=e.get("Progress", ""),
        error_date=e.get("ErrorDate", ""),
        approved_by=e.get("ApprovedBy", ""),
        approved_at=when("ApprovedAt"),
        reverted_by=e.get("RevertedBy", ""),
        reverted_at=when("RevertedAt"),
        updated_at=when("UpdatedAt"),
        lease_until=when("LeaseUntil"),
    )


@dataclass(frozen=True)
class ActionFilter:
    tenant_id: str = ""
    status: str = ""
    action: str = ""
    user: str = ""  # target (UPN / e-mail / Workplace id) or Entra object id
    alert_id: str = ""
    event_after: datetime | None = None  # the alert's event time, exclusive...
    event_until: datetime | None = None  # ...to inclusive


class ActionStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, tenant_id: str, action_id: str) -> GovernanceAction | None:
        found = self.read(tenant_id, action_id)
        return found[0] if found else None

    def read(self, tenant_id: str, action_id: str) -> tuple[GovernanceAction, str] | None:
        """The record and its ETag, for a conditional `save`."""
        try:
            entity = self._table.get_entity(tenant_id, action_id)
        except ResourceNotFoundError:
            return None
        return _from_entity(entity), str(entity.metadata["etag"])

    def save(self, action: GovernanceAction, etag: str | None = None, *, new: bool = False) -> str:
        """Write the record; with `etag` (or `new`) only if nobody wrote it since it was read.

        Returns the new ETag; raises RecordConflict when the condition fails.
        """
        entity = _to_entity(action)
        try:
            if new:
                meta = self._table.create_entity(entity)
            elif etag:
                meta = self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            else:
                meta = self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            raise RecordConflict(f"governance action {action.id} changed concurrently") from None
        return str(meta.get("etag", ""))

    def find(self, action_id: str) -> GovernanceAction | None:
        """A record by id alone (ids are unique across tenants)."""
        rows = self._table.query_entities("RowKey eq @id", parameters={"id": action_id})
        for row in rows:
            return _from_entity(row)
        return None

    def for_tenant(self, tenant_id: str) -> list[GovernanceAction]:
        return self.query(ActionFilter(tenant_id=tenant_id))

    def query(self, where: ActionFilter, limit: int = 1000) -> list[GovernanceAction]:
        """Records matching every given field, newest first."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for column, value in (
            ("PartitionKey", where.tenant_id),
            ("Status", where.status),
            ("Action", where.action),
            ("AlertId", where.alert_id),
        ):
            if value:
                clauses.append(f"{column} eq @{column}")
                params[column] = value
        if where.event_after is not None:
            clauses.append("EventTime gt @after")
            params["after"] = utc(where.event_after)
        if where.event_until is not None:
            clauses.append("EventTime le @until")
            params["until"] = utc(where.event_until)
        if where.user:
            clauses.append("(TargetLower eq @user or TargetObjectId eq @user )")
            params["user"] = where.user.lower()
        query = " and ".join(clauses)
        if query:
            rows = self._table.query_entities(query, parameters=params)
        else:
            rows = self._table.list_entities()
        out: list[GovernanceAction] = []
        for row in rows:
            out.append(_from_entity(row))
            if len(out) >= limit:
                break
        return sorted(out, key=lambda a: a.created_at, reverse=True)
