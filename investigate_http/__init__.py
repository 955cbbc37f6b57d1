"""HTTP: the analyst's investigation API (App Service Authentication or the automation key):
one alert and its triage, the activity log (JSON or CSV), the user page and the audit log."""

import azure.functions as func

from shared import analyst_api as api
from shared.access import READER, RESPONDER
from shared.clock import now
from shared.services import get_services
from shared.web import Reply

bp = func.Blueprint()
ANON = func.AuthLevel.ANONYMOUS  # the app authorises: App Service principal or automation key


def _headers(req: func.HttpRequest) -> dict[str, str]:
    return {k.lower(): v for k, v in req.headers.items()}


def _response(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )


@bp.function_name("alert_get")
@bp.route(route="alerts/{id}", methods=["GET"], auth_level=ANON)
def alert_get(req: func.HttpRequest) -> func.HttpResponse:
    deps, alert_id = get_services().analyst_deps, req.route_params.get("id", "")
    return _response(
        api.guarded(
            deps, _headers(req), READER, lambda _: api.get_alert(deps, alert_id), dict(req.params)
        )
    )


@bp.function_name("alert_patch")
@bp.route(route="alerts/{id}", methods=["PATCH"], auth_level=ANON)
def alert_patch(req: func.HttpRequest) -> func.HttpResponse:
    deps, alert_id = get_services().analyst_deps, req.route_params.get("id", "")
    headers = _headers(req)
    if_match, body = headers.get("if-match", ""), req.get_body()
    return _response(
        api.guarded(
            deps,
            headers,
            RESPONDER,
            lambda who: api.patch_alert(deps, alert_id, body, if_match, who, now()),
            dict(req.params),
        )
    )


@bp.function_name("activities_http")
@bp.route(route="activities", methods=["GET"], auth_level=ANON)
def activities_http(req: func.HttpRequest) -> func.HttpResponse:
    deps, params = get_services().analyst_deps, dict(req.params)
    return _response(
        api.guarded(deps, _headers(req), READER, lambda _: api.list_activities(deps, params))
    )


@bp.function_name("user_page")
@bp.route(route="users/{id}", methods=["GET"], auth_level=ANON)
def user_page(req: func.HttpRequest) -> func.HttpResponse:
    deps, ident = get_services().analyst_deps, req.route_params.get("id", "")
    tenant = req.params.get("tenant", "")
    return _response(
        api.guarded(
            deps,
            _headers(req),
            READER,
            lambda _: api.user_page(deps, ident, tenant, now()),
            dict(req.params),
            ("tenant",),
        )
    )


@bp.function_name("audit_http")
@bp.route(route="audit", methods=["GET"], auth_level=ANON)
def audit_http(req: func.HttpRequest) -> func.HttpResponse:
    deps, params = get_services().analyst_deps, dict(req.params)
    return _response(
        api.guarded(deps, _headers(req), READER, lambda _: api.list_audit(deps, params))
    )


@bp.function_name("openapi_http")
@bp.route(route="openapi.json", methods=["GET"], auth_level=ANON)
def openapi_http(req: func.HttpRequest) -> func.HttpResponse:
    return _response(api.openapi_document(dict(req.params)))


@bp.function_name("suppressions_http")
@bp.route(route="suppressions", methods=["GET"], auth_level=ANON)
def suppressions_http(req: func.HttpRequest) -> func.HttpResponse:
    deps, params = get_services().analyst_deps, dict(req.params)
    return _response(
        api.guarded(deps, _headers(req), READER, lambda _: api.list_suppressions(deps, params))
    )


@bp.function_name("suppression_delete")
@bp.route(route="suppressions/{id}", methods=["DELETE"], auth_level=ANON)
def suppression_delete(req: func.HttpRequest) -> func.HttpResponse:
    deps, sid = get_services().analyst_deps, req.route_params.get("id", "")
    return _response(
        api.guarded(
            deps,
            _headers(req),
            RESPONDER,
            lambda who: api.delete_suppression(deps, sid, who, now()),
            dict(req.params),
        )
    )


@bp.function_name("posture_http")
@bp.route(route="posture", methods=["GET"], auth_level=ANON)
def posture_http(req: func.HttpRequest) -> func.HttpResponse:
    deps, params = get_services().analyst_deps, dict(req.params)
    return _response(api.guarded(deps, _headers(req), READER, lambda _: api.posture(deps, params)))
