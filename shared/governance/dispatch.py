"""The per-action dispatch: what each action sends, and how an attempt that finds an earlier
one's request unanswered learns whether it took effect (first_call.py) before sending anything.

The executor calls these in order for one attempt: `resolve` the Entra user, `settle` what an
earlier attempt may have done, then (past the guardrails) `declare` the request and `perform` it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import datetime
from math import ceil

from shared.governance import actions as act
from shared.governance import first_call
from shared.governance.attempt import LEASE, Decided, RetryLater, save
from shared.governance.dependencies import Governance
from shared.governance.graph_results import EntraUser, GraphResult
from shared.governance.notification import user_notification
from shared.governance.records import TERMINAL, ActionFilter, RecordConflict
from shared.logsafe import quoted
from shared.models import Alert, GovernanceAction

log = logging.getLogger(__name__)

MAX_RISK_BATCH = 20


def describe(action: str, target: str, sender: str | None) -> str:
    """The request an action sends, in words (dry-run records it instead of sending it)."""
    return {
        act.NOTIFY_USER: f"POST /users/{sender or '<GOVERNANCE_MAIL_SENDER>'}/sendMail "
        f"to {target}",
        act.REVOKE_SESSIONS: f"POST /users/{target}/revokeSignInSessions",
        act.SUSPEND_USER: f"POST /$batch [PATCH /users/{target} {{accountEnabled: false}}, then "
        f"POST /users/{target}/revokeSignInSessions (dependsOn)]",
        act.CONFIRM_COMPROMISED: "POST /identityProtection/riskyUsers/confirmCompromised "
        f"{{userIds: [<object id of {target}>]}}",
        act.WORKPLACE_LOGOUT: f"POST https://graph.workplace.com/{target}/logout",
        act.WORKPLACE_DEACTIVATE: f"POST https://graph.workplace.com/{target}?active=false",
    }[action]


def resolve(
    record: GovernanceAction, gov: Governance, now: datetime
) -> tuple[GovernanceAction, EntraUser | None]:
    """The Entra user an Entra action targets (None for Workplace actions)."""
    if record.action in act.WORKPLACE_ACTIONS:
        return record, None
    user = gov.identities.resolve(record.target, gov.graph, now)
    if user is None:
        raise Decided(
            "failed",
            "entra_user_not_found",
            f"no Entra ID user has the e-mail or UPN {record.target}; "
            "nothing was done (match the Workplace e-mail to a UPN or mail)",
        )
    return replace(record, target_object_id=user.id), user


def _graph_user(user: EntraUser | None) -> str:
    return user.user_principal_name or user.id if user else ""


def settle(
    record: GovernanceAction, etag: str, user: EntraUser | None, gov: Governance, now: datetime
) -> tuple[GovernanceAction, GraphResult | None]:
    """When an earlier attempt declared its request and its answer was never saved, find out
    whether that request took effect. Returns the record and, when it did, the result."""
    intent_at = record.intent_at
    if intent_at is None:
        return record, None
    record = first_call.unanswered(record)
    finding = first_call.settle(
        record,
        gov.graph,
        sender=gov.policy.mail_sender or "",
        graph_user=_graph_user(user),
        workplace_active=lambda: gov.workplace().account_active(
            gov.workplace_token(record.tenant_id) or "", record.target
        ),
    )
    if finding.done is None:
        raise Decided(
            "failed",
            "unconfirmed_send",
            f"an earlier attempt sent this at {intent_at.isoformat()} and its answer "
            f"was lost; {finding.note}. Not sent again: check the mailbox, then retry the "
            "action to send it",
        )
    settles = intent_at + first_call.MAIL_SETTLE
    if not finding.done and record.check == first_call.SENT_ITEMS and now < settles:
        # Sent Items may not list a mail sent a moment ago yet: look again once it would.
        save(gov, replace(record, attempts=record.attempts - 1), etag, release=True)
        raise RetryLater(
            f"action {record.id}: its mail of {intent_at.isoformat()} is not in Sent Items yet",
            ceil((settles - now).total_seconds()),
        )
    if not finding.done:
        noted = first_call.note_attempt(record, "checked", now, finding.request_id, finding.note)
        return replace(noted, intent_at=None), None
    if record.action == act.SUSPEND_USER:  # disabled; the revoke after it is harmless to repeat
        noted = first_call.note_attempt(record, "checked", now, finding.request_id, finding.note)
        return replace(noted, intent_at=None, progress="disabled"), None
    done = first_call.answered(record, "already_done", now, finding.request_id, finding.note)
    log.warning(
        "governance: %s for %s had taken effect before (%s): not sent again",
        record.action,
        quoted(record.target),
        quoted(finding.note),
        extra={"action_id": record.id},
    )
    return done, GraphResult(200, finding.request_id)


def declare(
    record: GovernanceAction, etag: str, gov: Governance, now: datetime
) -> tuple[GovernanceAction, str]:
    """Save what is about to be sent, and when, before sending it."""
    intent = record.detail
    if record.action == act.NOTIFY_USER:
        sender = gov.policy.mail_sender or ""
        intent = f"{intent}, internetMessageId {first_call.message_id(record.id, sender)}"
    elif record.action == act.SUSPEND_USER and record.progress == "disabled":
        intent = f"POST /users/{record.target}/revokeSignInSessions (the account is disabled)"
    record = first_call.declare(record, intent, now)
    return record, save(gov, record, etag)


def perform(
    record: GovernanceAction,
    etag: str,
    alert: Alert,
    user: EntraUser | None,
    gov: Governance,
    now: datetime,
) -> tuple[GovernanceAction, str, GraphResult]:
    """The call. Returns the (possibly updated) record, its ETag, the result."""
    policy = gov.policy
    graph_user = _graph_user(user)
    match record.action:
        case act.NOTIFY_USER:
            assert user is not None and policy.mail_sender
            note = user_notification(alert)
            result = gov.graph().send_mail(
                policy.mail_sender,
                user.mail or graph_user,
                note.subject,
                note.html,
                first_call.message_id(record.id, policy.mail_sender),
            )
        case act.REVOKE_SESSIONS:
            result = gov.graph().revoke_sessions(graph_user)
        case act.SUSPEND_USER:
            if record.progress == "disabled":
                result = gov.graph().revoke_sessions(graph_user)
            else:
                result = gov.graph().suspend(graph_user)
        case act.CONFIRM_COMPROMISED:
            return _confirm_batch(record, etag, gov, now)
        case _:
            token = gov.workplace_token(record.tenant_id) or ""
            if record.action == act.WORKPLACE_LOGOUT:
                gov.workplace().logout_user(token, record.target)
            else:
                gov.workplace().set_active(token, record.target, False)
            result = GraphResult(200, "")
    return record, etag, result


def take_risk_slot(record: GovernanceAction, etag: str, gov: Governance, now: datetime) -> None:
    """The tenant's 1-request-per-second Identity Protection slot, or the work goes back to the
    queue (an attempt that sent nothing does not count)."""
    wait = gov.risk_slots.acquire(record.tenant_id, now)
    if wait > 0:
        save(gov, replace(record, attempts=record.attempts - 1), etag, release=True)
        raise RetryLater(
            f"confirmCompromised slot of tenant {record.tenant_id} taken", max(1, round(wait))
        )


def _confirm_batch(
    record: GovernanceAction, etag: str, gov: Governance, now: datetime
) -> tuple[GovernanceAction, str, GraphResult]:
    """confirmCompromised for this user and every other one ready in the tenant, in one call
    (the tenant's slot is ours). The others carry the intent too, so that their own deliveries
    check the risk state rather than send again."""
    others: list[GovernanceAction] = []
    for candidate in gov.actions.query(
        ActionFilter(record.tenant_id, action=act.CONFIRM_COMPROMISED)
    ):
        if len(others) >= MAX_RISK_BATCH - 1:
            break
        if candidate.id == record.id or not candidate.target_object_id:
            continue
        found = gov.actions.read(candidate.tenant_id, candidate.id)
        if found is None:
            continue
        other, other_etag = found
        ready = other.status == "approved" or (
            other.status == "pending" and not other.approval_required
        )
        if not ready or other.intent_at is not None:  # one in doubt checks for itself
            continue
        batched = replace(  # held, as its own attempt would be, until the batch is answered
            other,
            intent=f"batched with action {record.id}",
            intent_at=now,
            check=record.check,
            lease_until=now + LEASE,
        )
        with contextlib.suppress(RecordConflict):  # changed meanwhile: left to its own delivery
            gov.actions.save(batched, other_etag)
            others.append(batched)
    ids = list(dict.fromkeys([record.target_object_id, *(r.target_object_id for r in others)]))
    result = gov.graph().confirm_compromised(ids)
    for other in others:
        found = gov.actions.read(other.tenant_id, other.id)
        if found is None or found[0].status in TERMINAL:
            continue
        batched = first_call.answered(
            replace(found[0], detail=f"batched with action {record.id}", lease_until=None).succeed(
                now, result.request_id
            ),
            "succeeded",
            now,
            result.request_id,
            f"batched with action {record.id}",
        )
        with contextlib.suppress(RecordConflict):  # its own delivery then checks the state
            gov.actions.save(batched, found[1])
    return record, etag, result
