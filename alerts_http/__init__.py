"""HTTP: the alerts, newest first, filtered and paged (App Service principal or automation key)."""

import azure.functions as func

from shared import analyst_api as api
from shared.access import READER
from shared.services import get_services

bp = func.Blueprint()


@bp.function_name("alerts_http")
@bp.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def alerts_http(req: func.HttpRequest) -> func.HttpResponse:
    deps, params = get_services().analyst_deps, dict(req.params)
    headers = {k.lower(): v for k, v in req.headers.items()}
    reply = api.guarded(deps, headers, READER, lambda _: api.list_alerts(deps, params))
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )
