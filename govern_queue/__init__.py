"""Queue: carry out one governance action for one alert, exactly once, and record it."""

import azure.functions as func

from shared.clock import now
from shared.governance.executor import ActionRequest, execute
from shared.services import get_services

bp = func.Blueprint()


@bp.function_name("govern_queue")
@bp.queue_trigger(arg_name="msg", queue_name="%GOVERN_QUEUE%", connection="AzureWebJobsStorage")
def govern_queue(msg: func.QueueMessage) -> None:
    request = ActionRequest.from_message(msg.get_body())
    svc = get_services()
    execute(
        request,
        alerts=svc.alerts,
        actions=svc.actions,
        mode=svc.settings.governance_mode,
        governor=lambda: svc.graph,
        now=now(),
    )
