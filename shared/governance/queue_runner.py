"""The govern queue's consumer: one delivery runs its action (executor.py); throttling puts the
work back on the queue with a visibility delay; the last delivery before the poison queue first
says so on the action's record."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import datetime

from shared.governance.attempt import RetryLater
from shared.governance.dependencies import Governance
from shared.governance.executor import execute, target_of
from shared.governance.message import ActionRequest
from shared.governance.records import TERMINAL
from shared.models import GovernanceAction


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
            # The record is best effort; the poison copy is not.
            with contextlib.suppress(Exception):
                _mark_poisoned(request, gov, exc, f"{queue_name}-poison", dequeue_count, now)
        raise


def _mark_poisoned(
    request: ActionRequest, gov: Governance, exc: Exception, poison: str, count: int, now: datetime
) -> None:
    alert = gov.alerts.get(request.tenant_id, request.alert_key)
    if alert is None:
        return
    target = target_of(alert, request.action)
    found = gov.actions.read(
        request.tenant_id, GovernanceAction.make_id(alert.id, request.action, target)
    )
    if found is None or found[0].status in TERMINAL:
        return
    record, etag = found
    gov.actions.save(
        replace(
            record,
            error_code="poisoned",
            error_message=f"moved to {poison} after {count} deliveries: "
            f"{type(exc).__name__}: {exc}"[:500],
        ).fail(now),
        etag,
    )
