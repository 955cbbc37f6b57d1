"""Runs one governance action for one alert exactly once, and records what happened.

A queue message names an alert and an action; the record (keyed by alert + action + target) is
read first, so a redelivered message never acts twice, and it is written with ETags, so two
deliveries in flight at once cannot both act. Before an irreversible request the record says
what is about to be sent; a later attempt that finds that intent unanswered first checks whether
the request took effect (first_call.py). Transient failures return the work to the queue with a
delay (`RetryLater`); nothing sleeps here. Analyst commands are in commands.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from math import ceil
from typing import Literal, Protocol

import requests

from shared import telemetry
from shared.alerts import AlertStore
from shared.config import GovernanceMode, Settings
from shared.governance import actions as act
from shared.governance import first_call
from shared.governance.graph import EntraUser, GraphError, GraphResult
from shared.governance.guardrails import (
    BREAKER_WINDOW,
    breaker_tripped,
    is_protected,
    retry_delay,
)
from shared.governance.identity import EntraUserCache
from shared.governance.notification import user_notification
from shared.governance.records import TERMINAL, ActionFilter, ActionStore, RecordConflict
from shared.governance.throttle import TenantRateLimit
from shared.logsafe import quoted
from shared.models import Alert, Evidence, GovernanceAction, short_hash
from shared.workplace.client import RETRYABLE as WORKPLACE_RETRYABLE
from shared.workplace.client import WorkplaceError

__all__ = ["TERMINAL", "ActionRequest", "ActionStore", "Governance", "RetryLater", "execute"]

log = logging.getLogger(__name__)

MAX_RISK_BATCH = 20
# How long an attempt holds its record: host.json's functionTimeout, so that once it has passed
# the attempt is certainly over (the host ends an invocation then). The queue shows a message
# again at most 10 minutes after a host dies; a redelivery that comes before the lease is over
# is put back on the queue until then, and first checks whether the dead attempt's call happened.
LEASE = timedelta(minutes=10)


class RetryLater(RuntimeError):
    """A transient failure: the message goes back to the queue, visible after `delay` seconds."""

    def __init__(self, message: str, delay: int = 1) -> None:
        super().__init__(message)
        self.delay = delay


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


class Governor(Protocol):
    """The Microsoft Graph calls governance makes (GraphClient)."""

    def find_user(self, email: str) -> EntraUser | None: ...
    def revoke_sessions(self, user: str) -> GraphResult: ...
    def suspend(self, user: str) -> GraphResult: ...
    def set_account_enabled(self, user: str, enabled: bool) -> GraphResult: ...
    def send_mail(
        self, sender: str, to: str, subject: str, html: str, message_id: str
    ) -> GraphResult: ...
    def confirm_compromised(self, object_ids: list[str]) -> GraphResult: ...
    def dismiss_risk(self, object_ids: list[str]) -> GraphResult: ...
    def sent_message(self, sender: str, internet_message_id: str) -> tuple[str | None, str]: ...
    def account_enabled(self, user: str) -> tuple[bool | None, str]: ...
    def risk_state(self, object_id: str) -> tuple[str, str]: ...


class WorkplaceAccounts(Protocol):
    """The Workplace account calls governance makes (WorkplaceClient)."""

    def logout_user(self, token: str, user_id: str) -> None: ...
    def set_active(self, token: str, user_id: str, active: bool) -> None: ...
    def account_active(self, token: str, user_id: str) -> bool: ...


@dataclass(frozen=True)
class GovernancePolicy:
    mode: GovernanceMode
    protected: frozenset[str] = frozenset()
    max_suspensions_per_hour: int = 20
    max_attempts: int = 8
    mail_sender: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> GovernancePolicy:
        return cls(
            s.governance_mode,
            s.governance_protected_accounts,
            s.governance_max_suspensions_per_hour,
            s.governance_max_attempts,
            s.governance_mail_sender,
        )


@dataclass(frozen=True)
class Governance:
    """Everything governance reads, writes and calls; clients are built only when first needed."""

    alerts: AlertStore
    actions: ActionStore
    identities: EntraUserCache
    risk_slots: TenantRateLimit
    policy: GovernancePolicy
    graph: Callable[[], Governor]
    workplace: Callable[[], WorkplaceAccounts]
    workplace_token: Callable[[str], str | None]
    enqueue: Callable[[ActionRequest, int], None]  # (request, visibility delay in seconds)
    rng: random.Random = field(default_factory=random.Random)
    notify: Callable[[Alert], None] | None = None  # queues a guardrail alert's notification


class _Failure(Exception):
    """A decided outcome of this attempt other than success: "failed" or "skipped"."""

    def __init__(self, status: Literal["failed", "skipped"], code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _describe(action: str, target: str, sender: str | None) -> str:
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


def _target(alert: Alert, action: str) -> str:
    if action in act.WORKPLACE_ACTIONS:
        return alert.user_id  # the Workplace account id
    if alert.source == "entra" and alert.user_id:
        return alert.user_id  # already the Entra object id: no identity to match
    return alert.user_email or alert.user_id


def _new_record(request: ActionRequest, alert: Alert, now: datetime, mode: str) -> GovernanceAction:
    target = _target(alert, request.action)
    return GovernanceAction(
        GovernanceAction.make_id(alert.id, request.action, target),
        alert.id,
        request.tenant_id,
        request.action,
        target,
        mode,
        "pending",
        created_at=now,
        alert_key=request.alert_key,
        policy_id=request.policy_id,
        approval_required=request.approval_required,
        event_time=alert.last_activity_time,
        updated_at=now,
    )


def _load(request: ActionRequest, gov: Governance) -> Alert:
    if request.action not in act.ACTIONS:
        raise ValueError(
            f"unknown governance action {request.action!r} (known: {', '.join(act.ACTIONS)})"
        )
    alert = gov.alerts.get(request.tenant_id, request.alert_key)
    if alert is None:
        raise ValueError(f"alert {request.alert_key} of tenant {request.tenant_id} does not exist")
    if not _target(alert, request.action):
        raise ValueError(f"alert {alert.id} names no user to act on")
    return alert


def execute(request: ActionRequest, gov: Governance, now: datetime) -> GovernanceAction:
    """Run the action unless its record says it already ran; a redelivery never acts twice."""
    alert = _load(request, gov)
    mode = gov.policy.mode
    fresh = _new_record(request, alert, now, mode)
    found = gov.actions.read(request.tenant_id, fresh.id)
    record, etag = found if found else (fresh, None)
    if record.status in TERMINAL:
        return record
    detail = _describe(record.action, record.target, gov.policy.mail_sender)
    if mode != "enforce":
        note = (
            "GOVERNANCE_MODE is off: nothing was sent"
            if mode == "off"
            else f"dry-run: would {detail}"
        )
        done = replace(
            record,
            mode=mode,
            status="skipped",
            detail=detail,
            error_message=note,
            completed_at=now,
            updated_at=now,
        )
        done = _close(gov, done, etag)
        return done
    if record.approval_required and record.status == "pending":
        if etag is None:
            _save(gov, replace(record, detail=detail), None)
            log.warning(
                "governance: %s for %s awaits approval",
                record.action,
                quoted(record.target),
                extra={"action_id": record.id},
            )
        return gov.actions.get(record.tenant_id, record.id) or record
    if record.lease_until is not None and record.lease_until > now:
        wait = (record.lease_until - now).total_seconds()
        raise RetryLater(f"action {record.id} is in flight in another delivery", ceil(wait))
    record = replace(
        record,
        mode=mode,
        attempts=record.attempts + 1,
        detail=detail,
        updated_at=now,
        lease_until=now + LEASE,
    )
    etag = _save(gov, record, etag)  # the attempt is counted and claimed before any call
    try:
        return _attempt(record, etag, alert, gov, now)
    except RetryLater:
        raise
    except Exception:  # a bug or an outage: the host retries; the next delivery need not wait
        with contextlib.suppress(Exception):
            found = gov.actions.read(record.tenant_id, record.id)
            if found is not None and found[0].status not in TERMINAL:
                _save(gov, found[0], found[1], release=True)
        raise


def _attempt(
    record: GovernanceAction, etag: str, alert: Alert, gov: Governance, now: datetime
) -> GovernanceAction:
    calling = False  # True once the request is (maybe) sent
    try:
        record, user = _resolve(record, gov, now)
        if record.action == act.CONFIRM_COMPROMISED:
            # Saved first, so that a concurrent batch for the tenant can include this user.
            etag = _save(gov, record, etag)
        # What an earlier attempt may have done comes first: the guardrails hold back requests
        # not yet made, never the record of one that was (a disabled account gets its revoke).
        record, settled = _settle(record, etag, user, gov, now)
        if settled is None:
            if record.progress != "disabled":
                _guard(record, alert, user, gov)
            if record.action == act.CONFIRM_COMPROMISED:
                _take_risk_slot(record, etag, gov, now)
            record, etag = _declare(record, etag, gov, now)
            calling = True
            record, etag, result = _perform(record, etag, alert, user, gov, now)
            record = first_call.answered(record, "succeeded", now, result.request_id)
        else:
            result = settled
    except _Failure as decided:
        done = replace(
            first_call.answered(record, decided.code, now, note=decided.message),
            status=decided.status,
            error_code=decided.code,
            error_message=decided.message,
            completed_at=now,
            updated_at=now,
        )
        done = _close(gov, done, etag)
        log.warning(
            "governance: %s for %s %s: %s",
            done.action,
            quoted(done.target),
            done.status,
            quoted(decided.code),
            extra={"action_id": done.id},
        )
        return done
    except (GraphError, WorkplaceError, requests.RequestException) as exc:
        return _failed_call(record, etag, exc, gov, now, called=calling)
    done = replace(
        record,
        status="succeeded",
        request_id=result.request_id,
        error_code="",
        error_message="",
        completed_at=now,
        updated_at=now,
    )
    done = _close(gov, done, etag)
    log.warning(
        "governance: %s for %s succeeded",
        done.action,
        quoted(done.target),
        extra={"action_id": done.id, "request_id": result.request_id},
    )
    return done


def _close(gov: Governance, record: GovernanceAction, etag: str | None) -> GovernanceAction:
    """Store a finished record (its lease given up) and return it as stored."""
    record = replace(record, lease_until=None)
    _save(gov, record, etag)
    telemetry.action_taken(record.action, record.status, record.mode)
    return record


def _save(
    gov: Governance, record: GovernanceAction, etag: str | None, *, release: bool = False
) -> str:
    """Write the record if nobody else did since we read it; finished records (or `release`)
    give up the in-flight lease."""
    if release or record.status in TERMINAL:
        record = replace(record, lease_until=None)
    try:
        return gov.actions.save(record, etag, new=etag is None)
    except RecordConflict:
        raise RetryLater(f"governance action {record.id} is being worked on; retrying", 2) from None


def _failed_call(
    record: GovernanceAction,
    etag: str,
    exc: GraphError | WorkplaceError | requests.RequestException,
    gov: Governance,
    now: datetime,
    *,
    called: bool,
) -> GovernanceAction:
    retry_after: float | None = None
    request_id = date = ""
    maybe_done = not isinstance(exc, GraphError | WorkplaceError)  # no answer at all
    if isinstance(exc, GraphError):
        # A server error or no answer may come after the request took effect.
        maybe_done = exc.status in (500, 502, 503, 504)
        retryable, code = exc.retryable, exc.code or str(exc.status)
        message = f"Graph answered {exc.status}: {exc.message}"
        retry_after, request_id, date = exc.retry_after, exc.request_id, exc.date
        if code.startswith("revoke:"):  # the $batch disabled the account; only the revoke is left
            record = replace(record, progress="disabled")
    elif isinstance(exc, WorkplaceError):
        maybe_done = exc.status == 0 or exc.status >= 500
        retryable, retry_after = exc.kind in WORKPLACE_RETRYABLE, exc.retry_after
        code = f"workplace_{exc.code if exc.code is not None else exc.status}"
        message = f"{exc} ({exc.kind})"
    else:
        retryable, code, message = (
            True,
            "unreachable",
            f"Workplace unreachable ({type(exc).__name__})",
        )
    if called:  # the intent stays when the request may have taken effect: the next attempt checks
        record = first_call.note_attempt(
            record if maybe_done else replace(record, intent_at=None),
            code if not maybe_done else f"{code} (may have taken effect)",
            now,
            request_id,
            message,
        )
    else:  # the check before the request failed: the earlier intent stands
        record = first_call.note_attempt(record, code, now, request_id, message)
    failed = replace(
        record,
        request_id=request_id,
        error_code=code,
        error_message=message[:500],
        error_date=date,
        updated_at=now,
    )
    if retryable and record.attempts < gov.policy.max_attempts:
        delay = retry_delay(retry_after, record.attempts, gov.rng)
        _save(gov, failed, etag, release=True)
        log.warning(
            "governance: %s for %s: %s, retrying in %d s",
            record.action,
            quoted(record.target),
            quoted(code),
            delay,
            extra={"action_id": record.id, "request_id": request_id},
        )
        raise RetryLater(f"{code} for action {record.id}; retrying in {delay} s", delay)
    if retryable:
        failed = replace(
            failed,
            error_message=f"gave up after {record.attempts} attempts "
            f"(GOVERNANCE_MAX_ATTEMPTS): {message}"[:500],
        )
    done = replace(failed, status="failed", completed_at=now)
    done = _close(gov, done, etag)
    log.warning(
        "governance: %s for %s failed: %s",
        done.action,
        quoted(done.target),
        quoted(code),
        extra={"action_id": done.id, "request_id": request_id},
    )
    return done


def _resolve(
    record: GovernanceAction, gov: Governance, now: datetime
) -> tuple[GovernanceAction, EntraUser | None]:
    """The Entra user an Entra action targets (None for Workplace actions)."""
    if record.action in act.WORKPLACE_ACTIONS:
        return record, None
    user = gov.identities.resolve(record.target, gov.graph, now)
    if user is None:
        raise _Failure(
            "failed",
            "entra_user_not_found",
            f"no Entra ID user has the e-mail or UPN {record.target}; "
            "nothing was done (match the Workplace e-mail to a UPN or mail)",
        )
    return replace(record, target_object_id=user.id), user


def _guard(record: GovernanceAction, alert: Alert, user: EntraUser | None, gov: Governance) -> None:
    """The guardrails: raise a decided `_Failure` when the action must not run."""
    policy = gov.policy
    identities: tuple[str, ...] = (alert.user_email, alert.user_id)
    if user is not None:
        identities += (user.id, user.user_principal_name, user.mail)
    if record.action != act.NOTIFY_USER and is_protected(policy.protected, *identities):
        _guardrail_alert(
            gov,
            alert,
            record,
            "protected_account",
            f"Vigil did not {record.action} {record.target}: the account is protected "
            "(GOVERNANCE_PROTECTED_ACCOUNTS).",
        )
        raise _Failure(
            "skipped",
            "protected_account",
            "protected account (GOVERNANCE_PROTECTED_ACCOUNTS): never acted on",
        )
    if record.action in act.SUSPENSIONS and not record.approval_required:
        _check_breaker(record, alert, gov)
    if record.action == act.SUSPEND_USER and user is not None and user.on_premises_sync_enabled:
        raise _Failure(
            "failed",
            "unsupported_on_premises_synced",
            "the user is synced from on-premises AD, which would re-enable the account: "
            "suspend it in AD",
        )
    if record.action == act.NOTIFY_USER and not policy.mail_sender:
        raise _Failure(
            "failed",
            "not_configured",
            "GOVERNANCE_MAIL_SENDER is not set: set it to the mailbox Vigil "
            "sends notifications from",
        )
    if record.action in act.WORKPLACE_ACTIONS and not gov.workplace_token(record.tenant_id):
        raise _Failure(
            "failed",
            "no_workplace_token",
            f"Vigil holds no Workplace token for community {record.tenant_id}: "
            "install (or reinstall) Vigil in that community",
        )


def _graph_user(user: EntraUser | None) -> str:
    return user.user_principal_name or user.id if user else ""


def _settle(
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
        raise _Failure(
            "failed",
            "unconfirmed_send",
            f"an earlier attempt sent this at {intent_at.isoformat()} and its answer "
            f"was lost; {finding.note}. Not sent again: check the mailbox, then retry the "
            "action to send it",
        )
    settles = intent_at + first_call.MAIL_SETTLE
    if not finding.done and record.check == first_call.SENT_ITEMS and now < settles:
        # Sent Items may not list a mail sent a moment ago yet: look again once it would.
        _save(gov, replace(record, attempts=record.attempts - 1), etag, release=True)
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


def _declare(
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
    return record, _save(gov, record, etag)


def _perform(
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


def _take_risk_slot(record: GovernanceAction, etag: str, gov: Governance, now: datetime) -> None:
    """The tenant's 1-request-per-second Identity Protection slot, or the work goes back to the
    queue (an attempt that sent nothing does not count)."""
    wait = gov.risk_slots.acquire(record.tenant_id, now)
    if wait > 0:
        _save(gov, replace(record, attempts=record.attempts - 1), etag, release=True)
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
            replace(
                found[0],
                status="succeeded",
                request_id=result.request_id,
                detail=f"batched with action {record.id}",
                completed_at=now,
                updated_at=now,
                lease_until=None,
            ),
            "succeeded",
            now,
            result.request_id,
            f"batched with action {record.id}",
        )
        with contextlib.suppress(RecordConflict):  # its own delivery then checks the state
            gov.actions.save(batched, found[1])
    return record, etag, result


def _check_breaker(record: GovernanceAction, alert: Alert, gov: Governance) -> None:
    at = record.event_time or alert.last_activity_time
    limit = gov.policy.max_suspensions_per_hour
    times = [
        r.event_time
        for action in sorted(act.SUSPENSIONS)
        for r in gov.actions.query(
            ActionFilter(
                record.tenant_id,
                action=action,
                event_after=at - BREAKER_WINDOW,
                event_until=at,
            )
        )
        if r.id != record.id
        and r.event_time is not None
        and not r.approval_required
        and (r.status == "succeeded" or (r.status == "pending" and r.attempts > 0))
    ]
    if breaker_tripped(times, at, limit):
        _guardrail_alert(
            gov,
            alert,
            record,
            "circuit_breaker",
            f"Vigil did not {record.action} {record.target}: {limit} automatic "
            "suspensions already ran in this tenant within the hour "
            "(GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR). Review them, then approve or "
            "retry this action over HTTP.",
        )
        raise _Failure(
            "skipped",
            "circuit_breaker",
            f"circuit breaker: {limit} automatic suspensions within an hour of "
            f"{at.isoformat()} (GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR)",
        )


def _guardrail_alert(
    gov: Governance, alert: Alert, record: GovernanceAction, kind: str, text: str
) -> None:
    gov.alerts.save(
        guardrail := Alert(
            id=short_hash("governance", kind, record.id),
            tenant_id=alert.tenant_id,
            source="vigil",
            detector_id=f"vigil.governance.{kind}",
            title=f"Governance held back: {kind.replace('_', ' ')}",
            description=text,
            severity="high",
            category="Governance",
            mitre_techniques=(),
            user_id=alert.user_id,
            user_email=alert.user_email,
            first_activity_time=alert.first_activity_time,
            last_activity_time=alert.last_activity_time,
            created_time=alert.created_time,
            evidence=Evidence(
                {
                    "action_id": record.id,
                    "action": record.action,
                    "target": record.target,
                    "alert_id": alert.id,
                    "guardrail": kind,
                },
                alert.evidence.activity_ids,
            ),
            dedup_key=f"governance:{kind}:{record.id}",
        )
    )
    if gov.notify is not None:  # guardrail alerts are always notified
        gov.notify(guardrail)


# ---------------------------------------------------------------- the queue consumer


def process_message(
    gov: Governance,
    body: bytes,
    *,
    dequeue_count: int,
    max_dequeue_count: int,
    queue_name: str,
    now: datetime,
) -> GovernanceAction | None:
    """One govern-queue delivery. Transient failures re-enqueue the work with a visibility delay
    (and this delivery completes); anything else raises, and on the last delivery the record
    first says the message is going to the poison queue."""
    request = ActionRequest.from_message(body)
    try:
        return execute(request, gov, now)
    except RetryLater as later:
        gov.enqueue(request, later.delay)
        return None
    except Exception as exc:
        if dequeue_count >= max_dequeue_count:
            with contextlib.suppress(
                Exception
            ):  # the record is best effort; the poison copy is not
                _mark_poisoned(request, gov, exc, f"{queue_name}-poison", dequeue_count, now)
        raise


def _mark_poisoned(
    request: ActionRequest, gov: Governance, exc: Exception, poison: str, count: int, now: datetime
) -> None:
    alert = gov.alerts.get(request.tenant_id, request.alert_key)
    if alert is None:
        return
    target = _target(alert, request.action)
    found = gov.actions.read(
        request.tenant_id, GovernanceAction.make_id(alert.id, request.action, target)
    )
    if found is None or found[0].status in TERMINAL:
        return
    record, etag = found
    gov.actions.save(
        replace(
            record,
            status="failed",
            error_code="poisoned",
            completed_at=now,
            updated_at=now,
            error_message=f"moved to {poison} after {count} deliveries: "
            f"{type(exc).__name__}: {exc}"[:500],
        ),
        etag,
    )
