"""Queue: carry out one governance action for one alert, exactly once, and record it."""

import azure.functions as func

from shared.clock import now
from shared.governance.message import ActionRequest
from shared.governance.queue_runner import process_message
from shared.quarantine import read_message
from shared.services import get_services

bp = func.Blueprint()


@bp.function_name("govern_queue")
@bp.queue_trigger(arg_name="msg", queue_name="%GOVERN_QUEUE%", connection="AzureWebJobsStorage")
def govern_queue(msg: func.QueueMessage) -> None:
    # Throttling re-enqueues the work with a visibility delay and completes this message; other
    # errors raise, so the host retries and finally moves the message to `<queue>-poison`. A
    # malformed message is quarantined with its reason, not retried.
    svc, body = get_services(), msg.get_body()
    request = read_message(
        svc.quarantine_deps, "govern_queue", body, ActionRequest.from_message, now()
    )
    if request is None:
        return  # kept in quarantine
    process_message(
        svc.governance,
        body,
        dequeue_count=msg.dequeue_count or 1,
        max_dequeue_count=svc.settings.max_dequeue_count,
        queue_name=svc.settings.govern_queue,
        now=now(),
    )
