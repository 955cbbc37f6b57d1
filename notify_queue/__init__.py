"""Queue: tell the configured destinations about one new alert, once each, and record it."""

import logging

import azure.functions as func

from shared.clock import now
from shared.notify.delivery import process_message
from shared.notify.requests import NotifyRequest
from shared.quarantine import read_message
from shared.services import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("notify_queue")
@bp.queue_trigger(arg_name="msg", queue_name="%NOTIFY_QUEUE%", connection="AzureWebJobsStorage")
def notify_queue(msg: func.QueueMessage) -> None:
    # A failing destination is re-enqueued alone with a delay (this message completes); other
    # errors raise, so the host retries and finally moves the message to `<queue>-poison`. A
    # malformed message is quarantined with its reason, not retried.
    svc, body = get_services(), msg.get_body()
    request = read_message(
        svc.quarantine_deps, "notify_queue", body, NotifyRequest.from_message, now()
    )
    if request is None:
        return  # kept in quarantine
    outcomes = process_message(svc.notifier, body, now())
    log.info("notifications: %s", ", ".join(f"{d} {o}" for d, o in outcomes.items()) or "none")
