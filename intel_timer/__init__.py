"""Timer: refresh the Tor exit list (keeping the last good copy when the list is unreachable)."""

import logging

import azure.functions as func

from shared.clock import now
from shared.ipintel.tor import http_fetch, refresh
from shared.services import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("intel_timer")
@bp.timer_trigger(arg_name="timer", schedule="%TOR_REFRESH_SCHEDULE%", run_on_startup=False)
def intel_timer(timer: func.TimerRequest) -> None:
    svc = get_services()
    ok, count = refresh(svc.tor_exits, http_fetch(svc.settings.tor_exit_list_url), now())
    log.info("tor exit list %s: %d addresses", "refreshed" if ok else "kept", count)
