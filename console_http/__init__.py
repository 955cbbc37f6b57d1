"""HTTP: the analyst console (static files from `console/`) and `me`, the signed-in caller."""

import azure.functions as func

from shared import analyst_api as api
from shared import console
from shared.access import READER
from shared.services import get_services
from shared.web import Reply

bp = func.Blueprint()
ANON = func.AuthLevel.ANONYMOUS  # the page holds no data; the API it calls authorises


def _response(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.body, status_code=reply.status, mimetype=reply.mimetype, headers=reply.headers
    )


@bp.function_name("console_page")
@bp.route(route="console", methods=["GET"], auth_level=ANON)
def console_page(req: func.HttpRequest) -> func.HttpResponse:
    return _response(console.asset("index.html", dict(req.params)))


@bp.function_name("console_asset")
@bp.route(route="console/{name}", methods=["GET"], auth_level=ANON)
def console_asset(req: func.HttpRequest) -> func.HttpResponse:
    return _response(console.asset(req.route_params.get("name", ""), dict(req.params)))


@bp.function_name("me_http")
@bp.route(route="me", methods=["GET"], auth_level=ANON)
def me_http(req: func.HttpRequest) -> func.HttpResponse:
    deps, headers = get_services().analyst_deps, {k.lower(): v for k, v in req.headers.items()}
    return _response(api.guarded(deps, headers, READER, console.me, dict(req.params)))
