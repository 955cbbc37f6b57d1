"""HTTP: the governance log (function key): list actions; approve, retry or revert one."""

import azure.functions as func

from shared.clock import now
from shared.governance.actions_api import list_actions, run_command
from shared.services import get_services
from shared.web import Reply

bp = func.Blueprint()


def _response(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )


@bp.function_name("governance_actions")
@bp.route(route="governance/actions", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def governance_actions(req: func.HttpRequest) -> func.HttpResponse:
    return _response(list_actions(get_services().governance, dict(req.params)))


@bp.function_name("governance_command")
@bp.route(
    route="governance/actions/{id}/{command:regex(^(approve|retry|revert)$)}",
    methods=["POST"],
    auth_level=func.AuthLevel.FUNCTION,
)
def governance_command(req: func.HttpRequest) -> func.HttpResponse:
    headers = {k.lower(): v for k, v in req.headers.items()}
    reply = run_command(
        get_services().governance,
        req.route_params.get("id", ""),
        req.route_params.get("command", ""),
        req.get_body(),
        headers,
        now(),
    )
    return _response(reply)
