"""HTTP: the alerts (function key), newest first, filtered and paged."""

import azure.functions as func

from shared.alerts import list_alerts
from shared.services import get_services

bp = func.Blueprint()


@bp.function_name("alerts_http")
@bp.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def alerts_http(req: func.HttpRequest) -> func.HttpResponse:
    reply = list_alerts(get_services().alerts, dict(req.params))
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )
