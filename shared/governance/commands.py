"""Analyst commands on governance actions (the governance log's POST routes): approve a pending
action, retry a failed or skipped one, revert a reversible one."""

from __future__ import annotations

import logging
from datetime import datetime

import requests

from shared.governance import actions as act
from shared.governance import first_call
from shared.governance.dependencies import Governance
from shared.governance.graph_results import GraphError
from shared.governance.message import ActionRequest
from shared.governance.records import RecordConflict
from shared.logsafe import quoted
from shared.models import GovernanceAction
from shared.workplace.client import WorkplaceError

log = logging.getLogger(__name__)


class Refused(RuntimeError):
    """An analyst command that cannot be carried out; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _find(gov: Governance, action_id: str) -> tuple[GovernanceAction, str]:
    found = gov.actions.find(action_id)
    if found is None:
        raise Refused(404, f"no governance action {action_id}")
    return found


def _request_of(record: GovernanceAction) -> ActionRequest:
    return ActionRequest(
        record.tenant_id,
        record.alert_key,
        record.action,
        record.policy_id,
        record.approval_required,
    )


def approve(gov: Governance, action_id: str, by: str, now: datetime) -> GovernanceAction:
    """Approve a pending action that needs approval; it is queued to run at once."""
    record, etag = _find(gov, action_id)
    if not (record.status == "pending" and record.approval_required):
        raise Refused(
            409,
            f"action {action_id} is {record.status}"
            f"{'' if record.approval_required else ' and needs no approval'}",
        )
    done = record.approve(by, now)
    _store_command(gov, done, etag)
    gov.enqueue(_request_of(done), 0)
    return done


def retry(gov: Governance, action_id: str, by: str, now: datetime) -> GovernanceAction:
    """Run a failed or skipped action again (with a fresh attempt budget)."""
    record, etag = _find(gov, action_id)
    if record.status not in ("failed", "skipped"):
        raise Refused(
            409,
            f"action {action_id} is {record.status}: only failed or skipped " "actions are retried",
        )
    again = first_call.note_attempt(record.retry(by, now), "retry", now, note=f"retry by {by}")
    _store_command(gov, again, etag)
    gov.enqueue(_request_of(again), 0)
    return again


def revert(gov: Governance, action_id: str, by: str, now: datetime) -> GovernanceAction:
    """Undo a succeeded suspend, deactivate or confirm-compromised by sending its inverse."""
    record, etag = _find(gov, action_id)
    if record.action not in act.REVERSIBLE:
        raise Refused(
            409,
            f"{record.action} cannot be undone (only " f"{', '.join(sorted(act.REVERSIBLE))} can)",
        )
    if record.status != "succeeded" or record.mode != "enforce":
        raise Refused(
            409,
            f"action {action_id} is {record.status} ({record.mode}): only a "
            "succeeded, enforced action is reverted",
        )
    if gov.policy.mode != "enforce":
        raise Refused(
            409,
            f"GOVERNANCE_MODE is {gov.policy.mode}: reverting sends a request, "
            "which needs enforce",
        )
    user = record.target_object_id or record.target
    try:
        if record.action == act.SUSPEND_USER:
            request_id = gov.graph().set_account_enabled(user, True).request_id
        elif record.action == act.CONFIRM_COMPROMISED:
            wait = gov.risk_slots.acquire(record.tenant_id, now)
            if wait > 0:
                raise Refused(429, f"Identity Protection allows 1 request/s; retry in {wait:.0f} s")
            request_id = gov.graph().dismiss_risk([user]).request_id
        else:
            token = gov.workplace_token(record.tenant_id)
            if not token:
                raise Refused(409, f"no Workplace token for community {record.tenant_id}")
            gov.workplace().set_active(token, record.target, True)
            request_id = ""
    except (GraphError, WorkplaceError, requests.RequestException) as exc:
        code = getattr(exc, "code", "") or type(exc).__name__
        raise Refused(502, f"revert of {action_id} failed: {code}: {exc}"[:500]) from None
    done = record.revert(by, now, request_id)
    _store_command(gov, done, etag)
    log.warning(
        "governance: %s for %s reverted by %s",
        record.action,
        quoted(record.target),
        quoted(by),
        extra={"action_id": record.id},
    )
    return done


def _store_command(gov: Governance, record: GovernanceAction, etag: str) -> None:
    try:
        gov.actions.save(record, etag)
    except RecordConflict:
        raise Refused(409, f"action {record.id} changed meanwhile; read it again") from None
