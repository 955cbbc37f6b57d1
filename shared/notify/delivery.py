"""Delivers one alert to each destination once, and records it (the notify queue's consumer).

Per destination a record (`records.py`) is read first: a finished one means a redelivered
message does nothing there. The first delivery decides what the alert sends (itself, the day's
single "cap reached" notice, or nothing) and keeps that decision. Before sending, the record
says so (intent, a lease, under its ETag), so two deliveries in flight never both send; when an
attempt died after sending, the next one checks the mailbox's Sent Items before mailing again,
and sends a webhook again with the same `X-Vigil-Delivery` id (a receiver may deduplicate on
it). A failure that may pass (a 5xx, 429, no answer) returns the work for that destination
alone to the queue with a delay (`Retry-After`, else backoff) until NOTIFY_MAX_ATTEMPTS, then the
record says failed. Nothing here waits or sleeps; detection only ever enqueues.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from math import ceil

import requests

from shared.alerts import AlertStore
from shared.config import NotifySettings
from shared.governance import first_call
from shared.governance.guardrails import retry_delay
from shared.models import Alert
from shared.notify import render
from shared.notify.channels import DeliveryError, Mailer, post_json
from shared.notify.records import TERMINAL, Kind, NotifyRecord, NotifyStore, RecordConflict
from shared.notify.requests import SIEM, NotifyRequest

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=10)  # host.json's functionTimeout: an attempt older than it is over


class RetryLater(RuntimeError):
    def __init__(self, message: str, delay: int) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class Notifier:
    """Everything delivery reads, writes and calls."""

    settings: NotifySettings
    alerts: AlertStore
    records: NotifyStore
    mailer: Mailer
    enqueue: Callable[[NotifyRequest, int], None]  # (request, visibility delay in seconds)
    siem: Callable[[Alert], object] | None = None  # the SIEM outbox, when enabled
    session: requests.Session = field(default_factory=requests.Session)
    rng: random.Random = field(default_factory=random.Random)

    def destinations(self) -> tuple[str, ...]:
        return self.settings.destinations + ((SIEM,) if self.siem else ())


def process_message(n: Notifier, body: bytes, now: datetime) -> dict[str, str]:
    """One delivery of a notify message: each destination's outcome (for tests and logs)."""
    request = NotifyRequest.from_message(body)
    alert = n.alerts.get(request.tenant_id, request.alert_key)
    if alert is None:
        raise ValueError(f"alert {request.alert_key} of tenant {request.tenant_id} does not exist")
    wanted = (request.destination,) if request.destination else n.destinations()
    outcomes: dict[str, str] = {}
    for destination in wanted:
        if destination == SIEM:
            if n.siem is not None:
                n.siem(alert)
                outcomes[destination] = "queued"
            continue
        if destination not in n.settings.destinations:
            outcomes[destination] = "not_configured"  # a retry after the setting was removed
            continue
        if not render.wanted(alert, n.settings.notify_min_severity):
            outcomes[destination] = "below_threshold"
            continue
        try:
            outcomes[destination] = deliver(n, alert, destination, now)
        except RetryLater as later:
            n.enqueue(NotifyRequest(request.tenant_id, request.alert_key, destination), later.delay)
            outcomes[destination] = "retrying"
    return outcomes


def _decide(n: Notifier, alert: Alert, destination: str, now: datetime) -> NotifyRecord:
    """The first delivery's decision: the alert, the day's cap notice, or nothing (over the cap).
    Guardrail alerts are never counted nor held back by the cap."""
    day = now.date()
    kind: Kind = "alert"
    if not render.is_guardrail(alert) and not n.records.within_cap(
        destination, day, alert.id, n.settings.notify_daily_cap
    ):
        kind = "cap_notice" if n.records.first_over_cap(destination, day, alert.id) else "none"
    return NotifyRecord(alert.tenant_id, alert.id, destination, kind, day, updated_at=now)


def deliver(n: Notifier, alert: Alert, destination: str, now: datetime) -> str:
    """Send the alert to one destination unless its record says it was; returns the status."""
    found = n.records.read(alert.tenant_id, alert.id, destination)
    etag: str | None = None
    if found is None:
        record = _decide(n, alert, destination, now)
    else:
        record, etag = found
    if record.status in TERMINAL:
        return record.status
    if record.kind == "none":
        _save(n, record.evolve(status="over_cap", updated_at=now), etag)
        log.info("notification over the daily cap of %s: not sent", destination)
        return "over_cap"
    if record.lease_until is not None and record.lease_until > now:
        wait = ceil((record.lease_until - now).total_seconds())
        raise RetryLater(f"notification {record.row_key} is in flight", wait)
    if record.intent_at is not None and _already_sent(n, record, alert, now):
        _save(n, _done(record, now), etag)
        return "sent"
    record = record.evolve(
        status="sending",
        attempts=record.attempts + 1,
        intent_at=now,
        lease_until=now + LEASE,
        updated_at=now,
    )
    etag = _save(n, record, etag)  # the intent, before anything is sent
    try:
        _send(n, alert, record)
    except DeliveryError as exc:
        return _failed(n, record, etag, exc, now)
    except Exception:  # a bug or an outage: the host retries; the next delivery need not wait
        with contextlib.suppress(Exception):
            n.records.save(record.evolve(lease_until=None), etag)  # the intent stays
        raise
    _save(n, _done(record, now), etag)
    log.warning(
        "notification sent: %s of alert %s (%s)",
        destination,
        alert.id,
        record.kind,
        extra={"alert_id": alert.id, "destination": destination},
    )
    return "sent"


def _done(record: NotifyRecord, now: datetime) -> NotifyRecord:
    return record.evolve(status="sent", intent_at=None, lease_until=None, error="", updated_at=now)


def _save(n: Notifier, record: NotifyRecord, etag: str | None) -> str:
    try:
        return n.records.save(record, etag)
    except RecordConflict:
        raise RetryLater(f"notification {record.row_key} is being worked on", 2) from None


def message_id(record: NotifyRecord, sender: str) -> str:
    """The notification mail's internet message id: one per alert and kind."""
    return first_call.message_id(f"notify.{record.kind}.{record.alert_id}", sender)


def _already_sent(n: Notifier, record: NotifyRecord, alert: Alert, now: datetime) -> bool:
    """An earlier attempt began sending and its answer was never saved: did it go?"""
    if record.destination != "email":
        return False  # a webhook cannot be asked: sent again, with the same delivery id
    try:
        found = n.mailer.already_sent(message_id(record, n.mailer.sender or ""))
    except DeliveryError as exc:
        raise RetryLater(
            exc.message, retry_delay(exc.retry_after, record.attempts, n.rng)
        ) from None
    settles = (record.intent_at or now) + first_call.MAIL_SETTLE
    if not found and now < settles:  # Sent Items may not list it yet
        raise RetryLater(
            "notification mail not in Sent Items yet", ceil((settles - now).total_seconds())
        )
    return bool(found)


def _send(n: Notifier, alert: Alert, record: NotifyRecord) -> None:
    s = n.settings
    notice = (
        render.CapNotice(record.destination, record.day, s.notify_daily_cap, alert)
        if record.kind == "cap_notice"
        else None
    )
    delivery = f"{record.alert_id}.{record.destination}.{record.kind}"
    match record.destination:
        case "email":
            mail = render.mail(alert, s.console_url, notice)
            n.mailer.send(
                s.notify_email_to or "",
                mail.subject,
                mail.html,
                message_id(record, n.mailer.sender or ""),
            )
        case "teams":
            body = render.teams_card(alert, s.console_url, notice)
            post_json(n.session, s.notify_teams_url or "", body, {}, "the Teams webhook")
        case "webhook":
            if not s.notify_webhook_secret:
                raise DeliveryError(
                    "not_configured",
                    "NOTIFY_WEBHOOK_SECRET is not set (or its Key Vault reference did not "
                    "resolve): the webhook's body cannot be signed",
                    retryable=False,
                    retry_after=None,
                )
            body = render.webhook_body(alert, s.console_url, notice)
            headers = {
                render.SIGNATURE_HEADER: render.signature(body, s.notify_webhook_secret or ""),
                render.DELIVERY_HEADER: delivery,
            }
            post_json(
                n.session, s.notify_webhook_url or "", body, headers, "the notification webhook"
            )
        case other:
            raise ValueError(f"unknown notification destination {other!r}")


def _failed(n: Notifier, record: NotifyRecord, etag: str, exc: DeliveryError, now: datetime) -> str:
    failed = record.evolve(
        status="pending",
        intent_at=None,
        lease_until=None,
        error=f"{exc.code}: {exc.message}",
        updated_at=now,
    )
    if exc.retryable and record.attempts < n.settings.notify_max_attempts:
        delay = retry_delay(exc.retry_after, record.attempts, n.rng)
        _save(n, failed, etag)
        log.warning(
            "notification to %s of alert %s failed (%s); retrying in %d s",
            record.destination,
            record.alert_id,
            exc.code,
            delay,
            extra={"alert_id": record.alert_id, "destination": record.destination},
        )
        raise RetryLater(exc.message, delay)
    if exc.retryable:
        failed = failed.evolve(
            error=f"gave up after {record.attempts} attempts (NOTIFY_MAX_ATTEMPTS): "
            f"{failed.error}"
        )
    _save(n, failed.evolve(status="failed"), etag)
    log.error(
        "notification to %s of alert %s failed: %s",
        record.destination,
        record.alert_id,
        exc.code,
        extra={"alert_id": record.alert_id, "destination": record.destination},
    )
    return "failed"
