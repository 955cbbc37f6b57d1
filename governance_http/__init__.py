"""HTTP: the governance log (App Service principal or automation key): list actions; approve,
retry or revert one in the caller's name, each command written to the audit log."""

import azure.functions as func

from shared import analyst_api as api
from shared.access import READER, RESPONDER, Principal
from shared.clock import now
from shared.governance.actions_api import list_actions, run_command
from shared.services import get_services
from shared.web import Reply

bp = func.Blueprint()


def _response(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )


def _headers(req: func.HttpRequest) -> dict[str, str]:
    return {k.lower(): v for k, v in req.headers.items()}


@bp.function_name("governance_actions")
@bp.route(route="governance/actions", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def governance_actions(req: func.HttpRequest) -> func.HttpResponse:
    svc, params = get_services(), dict(req.params)

    def answer(_: Principal) -> Reply:
        return list_actions(svc.governance, params, svc.signer)

    return _response(api.guarded(svc.analyst_deps, _headers(req), READER, answer))


@bp.function_name("governance_command")
@bp.route(
    route="governance/actions/{id}/{command:regex(^(approve|retry|revert)$)}",
    methods=["POST"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
def governance_command(req: func.HttpRequest) -> func.HttpResponse:
    svc = get_services()
    action_id, command = req.route_params.get("id", ""), req.route_params.get("command", "")

    def answer(who: Principal) -> Reply:
        at = now()
        reply = run_command(svc.governance, action_id, command, who, at)
        return api.audited(svc.analyst_deps, who, at, f"governance.{command}", action_id, reply)

    return _response(api.guarded(svc.analyst_deps, _headers(req), RESPONDER, answer))
