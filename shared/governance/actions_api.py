"""The governance log over HTTP: list action records, and approve, retry or revert one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any, get_args

from shared import query_params as q
from shared.access import Principal
from shared.config import SOURCES
from shared.governance.actions import ACTIONS
from shared.governance.commands import Refused, approve, retry, revert
from shared.governance.dependencies import Governance
from shared.governance.records import ActionFilter
from shared.models import ActionStatus, GovernanceAction
from shared.paging import TokenSigner
from shared.web import Reply, refuses_bad_input

COMMANDS = {"approve": approve, "retry": retry, "revert": revert}
FILTERS = ("tenant", "source", "status", "action", "user", "alert", "limit", "next")
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


@refuses_bad_input
def list_actions(gov: Governance, params: Mapping[str, str], signer: TokenSigner) -> Reply:
    """`GET /api/governance/actions?status=&action=&user=&alert=&tenant=&source=&limit=&next=`:
    newest first (by creation), `limit` at a time, with `next` the signed token of the
    following page."""
    q.known(params, FILTERS)
    where = ActionFilter(
        tenant_id=q.text(params, "tenant", key=True),
        status=q.choice(params, "status", get_args(ActionStatus)),
        action=q.choice(params, "action", ACTIONS),
        user=q.text(params, "user"),
        alert_id=q.text(params, "alert"),
        source=q.choice(params, "source", SOURCES),
    )
    page = gov.actions.page(
        where,
        limit=q.integer(params, "limit", 100, 1, MAX_LIMIT),
        after=signer.after(params, "governance"),
    )
    return Reply.json(
        200,
        {
            "actions": [record_json(r) for r in page.actions],
            "count": len(page.actions),
            "next": signer.next_token(params, "governance", page.last_row_key),
        },
    )


@refuses_bad_input
def run_command(
    gov: Governance, action_id: str, command: str, by: Principal, now: datetime
) -> Reply:
    """`POST /api/governance/actions/{id}/approve|retry|revert`, in the name of the caller: the
    signed-in analyst, or the automation key (never a name in the body)."""
    handler = COMMANDS.get(command)
    if handler is None:
        return Reply.error(404, f"unknown command {command!r}; use {', '.join(COMMANDS)}")
    q.checked("id", action_id, key=True)
    name = by.name if by.kind == "user" else "automation key"
    try:
        record = handler(gov, action_id, name[:200], now)
    except Refused as refused:
        return Reply.error(refused.status, str(refused))
    return Reply.json(200, record_json(record))
