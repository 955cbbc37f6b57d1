"""Timer: drain the webhook inbox into the activity log, then sync each install's directory."""

import logging

import azure.functions as func

from shared.clock import now
from shared.services import get_services
from shared.sync import drain_inbox
from shared.workplace.directory_sync import sync_installs

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("sync_timer")
@bp.timer_trigger(arg_name="timer", schedule="%SYNC_SCHEDULE%", run_on_startup=False)
def sync_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("sync_timer is running late")
    svc, at = get_services(), now()
    drain_inbox(svc, at)
    sync_installs(svc, at)  # each install on its own WORKPLACE_DIRECTORY_SYNC_MINUTES cadence
