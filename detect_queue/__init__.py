"""Queue: run the detections over one batch of stored activities."""

import logging

import azure.functions as func

from shared.activities import ActivityBatch
from shared.clock import now
from shared.config import ConfigError
from shared.detection.engine import run_batch
from shared.models import Activity
from shared.quarantine import quarantine_activities, read_message
from shared.services import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)
POLICY_RETRY_SECONDS = 300  # a refused policy folder: the batch waits for the fix


@bp.function_name("detect_queue")
@bp.queue_trigger(arg_name="msg", queue_name="%ACTIVITY_QUEUE%", connection="AzureWebJobsStorage")
def detect_queue(msg: func.QueueMessage) -> None:
    # A malformed message is quarantined with its reason, not retried.
    svc = get_services()
    batch = read_message(
        svc.quarantine_deps, "detect_queue", msg.get_body(), ActivityBatch.from_message, now()
    )
    if batch is None:
        return

    def quarantine(activities: list[Activity], reason: str) -> None:
        quarantine_activities(svc.quarantine_deps, activities, reason, now())

    try:
        svc.detections  # noqa: B018 (reads and validates the policies on first use)
    except ConfigError as exc:
        # Not this message's fault: put it back for later rather than let retries poison it.
        log.error("detection waits for valid policies and settings: %s", exc)
        svc.enqueue_detection(msg.get_body().decode(), POLICY_RETRY_SECONDS)
        return
    run_batch(svc.detection_deps(quarantine), batch)
    svc.siem_activities(msg.get_body())  # the batch's activities wait for the SIEM, if asked
