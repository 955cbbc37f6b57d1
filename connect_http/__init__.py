"""HTTP: the Workplace install flow and the signed security webhooks."""

import azure.functions as func

from shared import sources
from shared.clock import now
from shared.services import get_services
from shared.web import Reply
from shared.workplace import connect

bp = func.Blueprint()


def _response(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )


@bp.function_name("connect_install")
@bp.route(route="workplace/install", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def connect_install(req: func.HttpRequest) -> func.HttpResponse:
    """Only an admin holding a function key starts an install."""
    return _response(connect.start_install(get_services().connect_deps, now(), dict(req.params)))


@bp.function_name("connect_status")
@bp.route(route="workplace/status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def connect_status(req: func.HttpRequest) -> func.HttpResponse:
    """Each install's mode, state, last sync, lag, counts by event and last error."""
    return _response(
        connect.report_status(get_services().workplace_status_deps, dict(req.params), now())
    )


@bp.function_name("sources_status")
@bp.route(route="sources/status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def sources_status(req: func.HttpRequest) -> func.HttpResponse:
    """Each enabled source's state: installs (Workplace), log back-fill and watermarks (Entra)."""
    return _response(sources.report_status(get_services().source_deps, dict(req.params), now()))


@bp.function_name("connect_http")
# The constraint keeps `workplace/install` (function key) from ever matching this anonymous route.
@bp.route(
    route="workplace/{action:regex(^(callback|webhook|uninstall)$)}",
    methods=["GET", "POST"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def workplace_callbacks(req: func.HttpRequest) -> func.HttpResponse:
    """What Workplace calls: the install callback, the webhook (its verification and its
    deliveries) and the uninstall; `state` and the signatures are their credentials."""
    action, body, params = req.route_params.get("action") or "", req.get_body(), dict(req.params)
    deps = get_services().connect_deps
    if refused := connect.refuse_oversized(action, len(body)):
        reply = refused
    elif action == "callback" and req.method == "GET":
        reply = connect.complete_install(deps, params, now())
    elif action == "webhook" and req.method == "GET":
        reply = connect.verify_subscription(deps, params)
    elif action == "webhook" and req.method == "POST":
        headers = {k.lower(): v for k, v in req.headers.items()}
        reply = connect.receive_webhook(deps, body, headers, now())
    elif action == "uninstall" and req.method == "POST":
        reply = connect.receive_uninstall(deps, body, now())
    else:
        reply = Reply.error(404, f"No {req.method} /api/workplace/{action}.")
    return _response(reply)
