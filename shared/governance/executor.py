"""Runs one governance action for one alert exactly once, and records what happened.

A queue message (message.py) names an alert and an action; the record (keyed by alert + action +
target) is read first, so a redelivered message never acts twice, and it is written with ETags,
so two deliveries in flight at once cannot both act. Before an irreversible request the record
says what is about to be sent; a later attempt that finds that intent unanswered first checks
whether the request took effect (dispatch.py, first_call.py). Transient failures return the work
to the queue with a delay (`RetryLater`); nothing sleeps here. The record's status changes only
through its own transition methods (`GovernanceAction.succeed`, `.fail`...). The queue consumer
is queue_runner.py; analyst commands are in commands.py.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import datetime
from math import ceil

import requests

from shared.governance import actions as act
from shared.governance import first_call
from shared.governance.attempt import LEASE, Decided, RetryLater, close, save
from shared.governance.dependencies import Governance
from shared.governance.dispatch import declare, describe, perform, resolve, settle, take_risk_slot
from shared.governance.graph_results import GraphError
from shared.governance.guardrails import hold_back, retry_delay
from shared.governance.message import ActionRequest
from shared.governance.records import TERMINAL
from shared.logsafe import quoted
from shared.models import Alert, GovernanceAction
from shared.workplace.client import RETRYABLE as WORKPLACE_RETRYABLE
from shared.workplace.client import WorkplaceError

log = logging.getLogger(__name__)


def target_of(alert: Alert, action: str) -> str:
    """Who the action is taken on: a Workplace account id, or an Entra user."""
    if action in act.WORKPLACE_ACTIONS:
        return alert.user_id  # the Workplace account id
    if alert.source == "entra" and alert.user_id:
        return alert.user_id  # already the Entra object id: no identity to match
    return alert.user_email or alert.user_id


def _new_record(request: ActionRequest, alert: Alert, now: datetime, mode: str) -> GovernanceAction:
    target = target_of(alert, request.action)
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
        source=alert.source or "workplace",
    )


def _load(request: ActionRequest, gov: Governance) -> Alert:
    if request.action not in act.ACTIONS:
        raise ValueError(
            f"unknown governance action {request.action!r} (known: {', '.join(act.ACTIONS)})"
        )
    alert = gov.alerts.get(request.tenant_id, request.alert_key)
    if alert is None:
        raise ValueError(f"alert {request.alert_key} of tenant {request.tenant_id} does not exist")
    if not target_of(alert, request.action):
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
    detail = describe(record.action, record.target, gov.policy.mail_sender)
    if mode != "enforce":
        note = (
            "GOVERNANCE_MODE is off: nothing was sent"
            if mode == "off"
            else f"dry-run: would {detail}"
        )
        done = replace(record, mode=mode, detail=detail, error_message=note).skip(now)
        return close(gov, done, etag)
    if record.approval_required and record.status == "pending":
        if etag is None:
            save(gov, replace(record, detail=detail), None)
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
    etag = save(gov, record, etag)  # the attempt is counted and claimed before any call
    try:
        return _attempt(record, etag, alert, gov, now)
    except RetryLater:
        raise
    except Exception:  # a bug or an outage: the host retries; the next delivery need not wait
        with contextlib.suppress(Exception):
            found = gov.actions.read(record.tenant_id, record.id)
            if found is not None and found[0].status not in TERMINAL:
                save(gov, found[0], found[1], release=True)
        raise


def _attempt(
    record: GovernanceAction, etag: str, alert: Alert, gov: Governance, now: datetime
) -> GovernanceAction:
    calling = False  # True once the request is (maybe) sent
    try:
        record, user = resolve(record, gov, now)
        if record.action == act.CONFIRM_COMPROMISED:
            # Saved first, so that a concurrent batch for the tenant can include this user.
            etag = save(gov, record, etag)
        # What an earlier attempt may have done comes first: the guardrails hold back requests
        # not yet made, never the record of one that was (a disabled account gets its revoke).
        record, settled = settle(record, etag, user, gov, now)
        if settled is None:
            if record.progress != "disabled":
                hold_back(record, alert, user, gov)
            if record.action == act.CONFIRM_COMPROMISED:
                take_risk_slot(record, etag, gov, now)
            record, etag = declare(record, etag, gov, now)
            calling = True
            record, etag, result = perform(record, etag, alert, user, gov, now)
            record = first_call.answered(record, "succeeded", now, result.request_id)
        else:
            result = settled
    except Decided as decided:
        answered = replace(
            first_call.answered(record, decided.code, now, note=decided.message),
            error_code=decided.code,
            error_message=decided.message,
        )
        done = answered.fail(now) if decided.status == "failed" else answered.skip(now)
        done = close(gov, done, etag)
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
    done = replace(record, error_code="", error_message="").succeed(now, result.request_id)
    done = close(gov, done, etag)
    log.warning(
        "governance: %s for %s succeeded",
        done.action,
        quoted(done.target),
        extra={"action_id": done.id, "request_id": result.request_id},
    )
    return done


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
        save(gov, failed, etag, release=True)
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
    done = failed.fail(now)
    done = close(gov, done, etag)
    log.warning(
        "governance: %s for %s failed: %s",
        done.action,
        quoted(done.target),
        quoted(code),
        extra={"action_id": done.id, "request_id": request_id},
    )
    return done
