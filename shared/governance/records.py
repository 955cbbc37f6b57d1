"""Governance action records in Table Storage: one partition per tenant.

Each action has two rows, written together in one transaction: its record under its id (read
and written with ETags by the executor) and a copy under a log key that sorts newest first
(`log-<inverted created time>-<id>`), which the governance log and every query read in order.
A record is found by its id alone through its row in the id index (`shared/id_index.py`),
written before the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import table_tx
from shared.id_index import IdIndex, Location, usable_id
from shared.models import ActionAttempt, GovernanceAction, utc
from shared.storage import inverted_ticks

TERMINAL = frozenset({"succeeded", "failed", "skipped", "reverted"})

_TIMES = (
    "CreatedAt",
    "CompletedAt",
    "EventTime",
    "ApprovedAt",
    "RevertedAt",
    "UpdatedAt",
    "LeaseUntil",
    "IntentAt",
)
LOG_PREFIX = "log-"
_LOG_END = "log."  # the first key after every log key


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
        "Intent": a.intent,
        "Check": a.check,
        "Source": a.source,
        "AttemptLog": json.dumps(
            [{**asdict(t), "at": utc(t.at).isoformat()} for t in a.attempt_log],
            separators=(",", ":"),
        ),
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
            a.intent_at,
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
        intent=e.get("Intent", ""),
        source=e.get("Source", "workplace"),  # records from before sources were recorded
        intent_at=when("IntentAt"),
        check=e.get("Check", ""),
        attempt_log=tuple(
            ActionAttempt(
                int(t["number"]),
                utc(datetime.fromisoformat(t["at"])),
                str(t["outcome"]),
                str(t.get("request_id", "")),
                str(t.get("note", "")),
            )
            for t in json.loads(e.get("AttemptLog") or "[]")
        ),
    )


def log_key(a: GovernanceAction) -> str:
    """The row key of the record's copy in the log: newest first, then by id."""
    return f"{LOG_PREFIX}{inverted_ticks(utc(a.created_at))}-{a.id}"


@dataclass(frozen=True)
class ActionPage:
    actions: list[GovernanceAction]
    last_row_key: str | None  # where the next page starts (signed into `next`); None: no more


@dataclass(frozen=True)
class ActionFilter:
    tenant_id: str = ""
    status: str = ""
    action: str = ""
    user: str = ""  # target (UPN / e-mail / Workplace id) or Entra object id
    alert_id: str = ""
    event_after: datetime | None = None  # the alert's event time, exclusive...
    event_until: datetime | None = None  # ...to inclusive
    source: str = ""  # workplace | entra (the alert's source)


class ActionStore:
    def __init__(self, table: TableClient, index: IdIndex) -> None:
        self._table, self.index = table, index

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
        copy = {**entity, "RowKey": log_key(action)}
        replace_mode = {"mode": UpdateMode.REPLACE}
        record: table_tx.Operation
        if new:
            record = ("create", entity)
        elif etag:
            record = (
                "update",
                entity,
                {**replace_mode, "etag": etag, "match_condition": MatchConditions.IfNotModified},
            )
        else:
            record = ("upsert", entity, replace_mode)
        if new or not etag:  # a record that may not exist yet: indexed first
            self.index.record(action.id, action.tenant_id, action.id)
        try:
            results = table_tx.submit(self._table, [record, ("upsert", copy, replace_mode)])
        except (
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
            TableTransactionError,
        ) as exc:
            if isinstance(exc, TableTransactionError) and exc.status_code not in (404, 409, 412):
                raise
            raise RecordConflict(f"governance action {action.id} changed concurrently") from None
        return str(results[0].etag or "")

    def find(self, action_id: str) -> tuple[GovernanceAction, str] | None:
        """A record and its ETag by id alone (ids are unique across tenants): two point reads
        through the id index. Until the index is complete (records stored before it existed),
        an id it misses is looked for by a scan, and its index row written."""
        if not usable_id(action_id):
            return None
        at = self.index.locate(action_id)
        if at is not None:
            return self.read(at.tenant_id, at.row_key)
        if self.index.complete():
            return None
        rows = self._table.query_entities("RowKey eq @id", parameters={"id": action_id})
        for row in rows:
            self.index.record(action_id, row["PartitionKey"], action_id)
            return _from_entity(row), str(row.metadata["etag"])
        return None

    def stored_ids(self) -> Iterator[tuple[str, Location]]:
        """Every record's id and where it is (a scan of the records, not their log copies: the
        index's backfill)."""
        rows = self._table.query_entities(
            "RowKey lt @log or RowKey ge @end",
            parameters={"log": LOG_PREFIX, "end": _LOG_END},
            select=["PartitionKey", "RowKey"],
        )
        for row in rows:
            yield str(row["RowKey"]), Location(str(row["PartitionKey"]), str(row["RowKey"]))

    def for_tenant(self, tenant_id: str) -> list[GovernanceAction]:
        return self.query(ActionFilter(tenant_id=tenant_id))

    def query(self, where: ActionFilter, limit: int = 1000) -> list[GovernanceAction]:
        """Records matching every given field, newest first (the first `limit`)."""
        return self.page(where, limit=limit).actions

    def page(
        self, where: ActionFilter, *, limit: int = 100, after: str | None = None
    ) -> ActionPage:
        """Records matching every given field, newest first (by creation), `limit` at a time.

        Log keys sort newest first within a tenant, so one tenant's page reads `limit` + 1 rows;
        across tenants the matching rows after the log key `after` (the last of the previous
        page) are merged.
        """
        clauses = ["RowKey gt @after", "RowKey lt @end"]
        params: dict[str, Any] = {"end": _LOG_END}
        params["after"] = after or LOG_PREFIX
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
            clauses.append("EventTime gt @after_time")
            params["after_time"] = utc(where.event_after)
        if where.event_until is not None:
            clauses.append("EventTime le @until")
            params["until"] = utc(where.event_until)
        if where.user:
            # The SDK finds parameters by splitting on spaces: `@user)` would not be one.
            clauses.append("(TargetLower eq @user or TargetObjectId eq @user )")
            params["user"] = where.user.lower()
        rows = self._table.query_entities(" and ".join(clauses), parameters=params)
        found: list[dict[str, Any]] = []
        for row in rows:
            if where.source and row.get("Source", "workplace") != where.source:
                continue  # checked here: records older than the property have none
            found.append(row)
            if where.tenant_id and len(found) > limit:
                break  # one partition comes back in key order: nothing later is newer
        found.sort(key=lambda e: (e["RowKey"], e["PartitionKey"]))
        page = found[:limit]
        more = len(found) > limit
        actions = [_from_entity({**e, "RowKey": e["RowKey"].rsplit("-", 1)[1]}) for e in page]
        return ActionPage(actions, page[-1]["RowKey"] if more else None)
