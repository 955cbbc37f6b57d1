"""Timer: delete what is older than its retention, by partition (shared/retention.py)."""

import logging

import azure.functions as func

from shared import retention
from shared.clock import now
from shared.services import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("retention_timer")
@bp.timer_trigger(arg_name="timer", schedule="%RETENTION_SCHEDULE%", run_on_startup=False)
def retention_timer(timer: func.TimerRequest) -> None:
    svc, s = get_services(), get_services().settings
    tenants = [i.community_id for i in svc.installs.all()]
    deleted = retention.run(
        svc.storage,
        svc.inbox,
        tenants,
        s.activity_retention_days,
        s.alert_retention_days,
        now(),
        entra_tenants=svc.entra_tenants(),
    )
    log.info(
        "retention: deleted %d activities, %d alerts, %d notification rows, %d SIEM sent "
        "records, %d quarantined deliveries, %d held events, %d daily-limit rows, "
        "%d install states",
        deleted.activities,
        deleted.alerts,
        deleted.notifications,
        deleted.siem_sent,
        deleted.quarantine,
        deleted.held,
        deleted.daily_limits,
        deleted.install_states,
    )
