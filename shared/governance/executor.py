"""Runs one governance action for one alert exactly once, and records what happened."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.alerts import AlertStore
from shared.config import GovernanceMode
from shared.governance.graph import GraphError, GraphResult
from shared.models import GovernanceAction, utc

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "skipped", "reverted"})


class Governor(Protocol):
    def revoke_sessions(self, user: str) -> GraphResult: ...


class RetryLater(RuntimeError):
    """A transient failure: the message goes back to the queue and is tried again."""


@dataclass(frozen=True)
class ActionRequest:
    """A governance work item: which action, for which stored alert, asked by which policy."""

    tenant_id: str
    alert_key: str  # the alert's row key
    action: str
    policy_id: str = ""
    approval_required: bool = False

    def to_message(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "tenant": self.tenant_id,
                "alert": self.alert_key,
                "action": self.action,
                "policy": self.policy_id,
                "approval": self.approval_required,
            }
        )

    @classmethod
    def from_message(cls, body: bytes) -> ActionRequest:
        try:
            d = json.loads(body)
            req = cls(
                str(d["tenant"]),
                str(d["alert"]),
                str(d["action"]),
                str(d.get("policy", "")),
                bool(d.get("approval", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError('governance message must be {"tenant", "alert", "action"}') from None
        return req


def _to_entity(a: GovernanceAction) -> dict[str, Any]:
    return {
        "PartitionKey": a.tenant_id,
        "RowKey": a.id,
        "AlertId": a.alert_id,
        "Action": a.action,
        "Target": a.target,
        "Mode": a.mode,
        "Status": a.status,
        "Attempts": a.attempts,
        "RequestId": a.request_id,
        "ErrorCode": a.error_code,
        "ErrorMessage": a.error_message,
        "CreatedAt": utc(a.created_at),
        "CompletedAt": utc(a.completed_at) if a.completed_at else None,
    }


def _from_entity(e: dict[str, Any]) -> GovernanceAction:
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
        completed_at=utc(e["CompletedAt"]) if e.get("CompletedAt") else None,
    )


class ActionStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, tenant_id: str, action_id: str) -> GovernanceAction | None:
        try:
            return _from_entity(self._table.get_entity(tenant_id, action_id))
        except ResourceNotFoundError:
            return None

    def save(self, action: GovernanceAction) -> None:
        self._table.upsert_entity({k: v for k, v in _to_entity(action).items() if v is not None})

    def for_tenant(self, tenant_id: str) -> list[GovernanceAction]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [_from_entity(e) for e in rows]


def execute(
    request: ActionRequest,
    *,
    alerts: AlertStore,
    actions: ActionStore,
    mode: GovernanceMode,
    governor: Callable[[], Governor],
    now: datetime,
) -> GovernanceAction:
    """Run the action unless its record says it already ran; a redelivery never acts twice."""
    alert = alerts.get(request.tenant_id, request.alert_key)
    if alert is None:
        raise ValueError(f"alert {request.alert_key} of tenant {request.tenant_id} does not exist")
    if request.action != "revoke_sessions":
        raise ValueError(f"unknown governance action {request.action!r}")
    target = alert.user_email or alert.user_id
    action_id = GovernanceAction.make_id(alert.id, request.action, target)
    record = actions.get(request.tenant_id, action_id)
    if record is not None and record.status in TERMINAL:
        return record
    record = replace(
        record
        or GovernanceAction(
            action_id,
            alert.id,
            request.tenant_id,
            request.action,
            target,
            mode,
            "pending",
            created_at=now,
        ),
        attempts=(record.attempts if record else 0) + 1,
        mode=mode,
    )
    if mode != "enforce":
        note = (
            "GOVERNANCE_MODE is off"
            if mode == "off"
            else (f"dry-run: would POST /users/{target}/revokeSignInSessions")
        )
        record = replace(record, status="skipped", error_message=note, completed_at=now)
        actions.save(record)
        return record
    actions.save(record)  # pending, with the attempt counted, before the call
    try:
        result = governor().revoke_sessions(target)
    except GraphError as exc:
        failed = replace(
            record,
            request_id=exc.request_id,
            error_code=exc.code or str(exc.status),
            error_message=exc.message,
        )
        if exc.retryable:
            actions.save(failed)
            raise RetryLater(f"Graph {exc.status} for action {action_id}; retrying") from None
        record = replace(failed, status="failed", completed_at=now)
        actions.save(record)
        log.warning(
            "governance action failed",
            extra={"action_id": action_id, "status": exc.status, "request_id": exc.request_id},
        )
        return record
    log.warning(
        "governance: %s for %s succeeded",
        request.action,
        target,
        extra={"action_id": action_id, "request_id": result.request_id},
    )
    record = replace(
        record,
        status="succeeded",
        request_id=result.request_id,
        error_code="",
        error_message="",
        completed_at=now,
    )
    actions.save(record)
    return record
