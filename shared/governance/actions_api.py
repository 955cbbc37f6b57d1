"""The governance log over HTTP: list action records, and approve, retry or revert one."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, get_args

from shared.governance.actions import ACTIONS
from shared.governance.commands import Refused, approve, retry, revert
from shared.governance.executor import Governance
from shared.governance.records import ActionFilter
from shared.models import ActionStatus, GovernanceAction
from shared.web import Reply

COMMANDS = {"approve": approve, "retry": retry, "revert": revert}
FILTERS = ("tenant", "status", "action", "user", "alert", "limit", "next")
MAX_LIMIT = 1000


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def record_json(record: GovernanceAction) -> dict[str, Any]:
    out: dict[str, Any] = _plain(asdict(record))
    return out


def list_actions(gov: Governance, params: dict[str, str]) -> Reply:
    """`GET /api/governance/actions?status=&action=&user=&alert=&tenant=&limit=&next=`: newest
    first (by creation), `limit` at a time, with `next` the token of the following page."""
    unknown = sorted(set(params) - set(FILTERS) - {"code"})
    if unknown:
        return Reply.error(400, f"unknown filter {unknown[0]!r}; use {', '.join(FILTERS)}")
    status, action = params.get("status", ""), params.get("action", "")
    if status and status not in get_args(ActionStatus):
        return Reply.error(400, f"status must be one of {', '.join(get_args(ActionStatus))}")
    if action and action not in ACTIONS:
        return Reply.error(400, f"action must be one of {', '.join(ACTIONS)}")
    raw_limit = params.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return Reply.error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    where = ActionFilter(
        tenant_id=params.get("tenant", ""),
        status=status,
        action=action,
        user=params.get("user", ""),
        alert_id=params.get("alert", ""),
    )
    try:
        page = gov.actions.page(where, limit=int(raw_limit), next_token=params.get("next") or None)
    except ValueError as exc:
        return Reply.error(400, str(exc))
    return Reply.json(
        200,
        {
            "actions": [record_json(r) for r in page.actions],
            "count": len(page.actions),
            "next": page.next,
        },
    )


def run_command(
    gov: Governance,
    action_id: str,
    command: str,
    body: bytes,
    headers: dict[str, str],
    now: datetime,
) -> Reply:
    """`POST /api/governance/actions/{id}/approve|retry|revert` with `{"by": "<analyst>"}` (or
    the App Service authentication header naming the signed-in analyst)."""
    handler = COMMANDS.get(command)
    if handler is None:
        return Reply.error(404, f"unknown command {command!r}; use {', '.join(COMMANDS)}")
    try:
        payload = json.loads(body) if body.strip() else {}
    except ValueError:
        return Reply.error(400, 'the body must be JSON, e.g. {"by": "analyst@contoso.com"}')
    by = payload.get("by") if isinstance(payload, dict) else None
    by = by or headers.get("x-ms-client-principal-name", "")
    if not isinstance(by, str) or not by.strip():
        return Reply.error(400, 'say who you are: {"by": "analyst@contoso.com"} in the body')
    try:
        record = handler(gov, action_id, by.strip()[:200], now)
    except Refused as refused:
        return Reply.error(refused.status, str(refused))
    return Reply.json(200, record_json(record))
