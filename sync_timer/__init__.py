"""Timer: each enabled source pulls its new records into the activity log, then its directory."""

import logging

import azure.functions as func

from shared.clock import now
from shared.services import get_services
from shared.sources import enabled

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("sync_timer")
@bp.timer_trigger(arg_name="timer", schedule="%SYNC_SCHEDULE%", run_on_startup=False)
def sync_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("sync_timer is running late")
    deps, at = get_services().source_deps, now()
    failed: Exception | None = None
    for source in enabled(deps):
        try:
            source.pull(deps, at)
            source.sync_directory(deps, at)
        except Exception as exc:  # one source's failure never starves the other...
            failed = failed or exc
    if failed is not None:
        raise failed  # ...and the run still fails visibly; the next one tries again
