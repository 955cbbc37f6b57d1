"""Timer: send the alerts (and activities) waiting in the SIEM outbox to Log Analytics."""

import logging

import azure.functions as func

from shared.clock import now
from shared.services import get_services
from shared.siem.export import export

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("siem_timer")
@bp.timer_trigger(arg_name="timer", schedule="%LOG_ANALYTICS_SCHEDULE%", run_on_startup=False)
def siem_timer(timer: func.TimerRequest) -> None:
    svc = get_services()
    if not svc.settings.siem_enabled:
        return  # LOG_ANALYTICS_DCE_ENDPOINT and LOG_ANALYTICS_DCR_ID are not set
    result = export(svc.siem_outbox, svc.siem_client, svc.settings, svc.activities.load, now())
    if result.failed:
        log.warning("SIEM: %d requests not accepted; retried next run", result.failed)
