"""Timer: drain the webhook inbox into the activity log and queue it for detection."""

import logging

import azure.functions as func

from shared.clock import now
from shared.services import get_services
from shared.sync import drain_inbox

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("sync_timer")
@bp.timer_trigger(arg_name="timer", schedule="%SYNC_SCHEDULE%", run_on_startup=False)
def sync_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("sync_timer is running late")
    drain_inbox(get_services(), now())
