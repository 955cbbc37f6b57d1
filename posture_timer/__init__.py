"""Timer: recompute the posture recommendations (Adopt SSO in Workplace) from stored data."""

import logging

import azure.functions as func

from shared.clock import now
from shared.posture import compute
from shared.services import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("posture_timer")
@bp.timer_trigger(arg_name="timer", schedule="0 20 * * * *", run_on_startup=False)
def posture_timer(timer: func.TimerRequest) -> None:
    svc = get_services()
    communities = [i.community_id for i in svc.installs.all() if i.status == "active"]
    stored = compute(communities, svc.users, svc.activity_log, svc.posture, now())
    log.info("posture: %d communities assessed", stored)
