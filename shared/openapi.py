"""The OpenAPI 3.1 description of every HTTP route Vigil registers (`GET /api/openapi.json`).

A test validates it with openapi-spec-validator and checks it against the app's routes both
ways, so a route added without its description (or the reverse) fails the build.
"""

from __future__ import annotations

from typing import Any

from shared.activity_log import CSV_FIELDS, MAX_CSV_ROWS, MAX_TOP
from shared.config import SOURCES
from shared.triage import (
    CLASSIFICATIONS,
    DETERMINATIONS,
    MAX_PAGE,
    MAX_SUPPRESS_DAYS,
    SEVERITIES,
    STATUSES,
)

_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_ANY = {"type": "object", "additionalProperties": True}


def _query(name: str, description: str, schema: dict[str, Any] | None = None, **kw: Any) -> Any:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": schema or {"type": "string"},
        **kw,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "Bad input; the message names the parameter and what it allows",
        401: "Not signed in and no automation key (or a wrong one)",
        403: "Signed in without the app role this route needs",
        404: "No such resource",
        409: "The command does not apply in the record's current state",
        412: "If-Match does not hold: the resource changed since it was read",
        413: "The body is over 64 KiB",
    }
    return {
        str(c): {"description": words[c], "content": {_JSON: {"schema": _ERROR}}} for c in codes
    }


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"200": {"description": description, "content": {_JSON: {"schema": schema or _ANY}}}}


def _op(
    summary: str,
    role: str,
    responses: dict[str, Any],
    params: list[Any] | None = None,
    body: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": responses,
        "x-vigil-role": role,
    }
    if secured:
        op["security"] = [{"appService": [role]}, {"automationKey": []}]
        op["responses"] = {**responses, **_errors(401, 403)}
    else:
        op["security"] = []
    if body is not None:
        op["requestBody"] = {"required": True, "content": {_JSON: {"schema": body}}}
    return op


NEXT_DOC = (
    "Opaque continuation token from the previous answer's `next`, signed and bound to this "
    "listing and query: send it unchanged with the same parameters (otherwise a 400)"
)
PAGE = {
    "type": "object",
    "properties": {
        "value": {"type": "array", "items": _ANY},
        "next": {"type": ["string", "null"], "description": NEXT_DOC},
    },
    "required": ["value", "next"],
}
ALERT_PATCH = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "status": {"enum": list(STATUSES)},
        "classification": {"enum": list(CLASSIFICATIONS)},
        "determination": {"enum": list(DETERMINATIONS)},
        "assignedTo": {"type": "string", "maxLength": 200},
        "comment": {"type": "string", "maxLength": 2000},
        "suppress": {
            "type": "object",
            "description": "With status resolved and a benign classification: do not alert "
            "again for this user and value for N days (event time)",
            "properties": {"days": {"type": "integer", "minimum": 1, "maximum": MAX_SUPPRESS_DAYS}},
            "required": ["days"],
        },
    },
}


def document() -> dict[str, Any]:
    reader, responder = "Vigil.Reader", "Vigil.Responder"
    alert_id = _path("id", "The alert's id (at most 256 characters, none of / \\ # ?)")
    activity_params = [
        _query("from", "Start of the range (ISO 8601, inclusive)", required=True),
        _query("to", "End of the range (ISO 8601, exclusive), at most 31 days after from",
               required=True),
        _query("tenant", "One Workplace community or Entra tenant id (default: every one)"),
        _query("source", "One source (default: every enabled one)",
               {"enum": list(SOURCES)}),
        _query("user", "The actor: Workplace id or e-mail"),
        _query("event", "Workplace event name (LOGIN_FAILED) or Vigil kind (login_failed)"),
        _query("outcome", "success or failure", {"enum": ["success", "failure"]}),
        _query("ip", "One IP address, or a CIDR range such as 203.0.113.0/24"),
        _query("country", "Two-letter ISO country code"),
        _query("alert", "Only the activities related to this alert"),
        _query("top", f"Page size (1-{MAX_TOP}; CSV up to {MAX_CSV_ROWS})",
               {"type": "integer", "minimum": 1, "maximum": MAX_CSV_ROWS}),
        _query("next", NEXT_DOC),
        _query("format", "json (default) or csv", {"enum": ["json", "csv"]}),
    ]  # fmt: skip
    csv_answer = {
        "description": "One page as JSON; or, with format=csv, as CSV (columns: "
        + ", ".join(CSV_FIELDS)
        + "; the header row only on the first page) with the next token in `Vigil-Next`",
        "headers": {"Vigil-Next": {"schema": {"type": "string"}, "description": NEXT_DOC}},
        "content": {_JSON: {"schema": PAGE}, "text/csv": {"schema": {"type": "string"}}},
    }
    etag = {"ETag": {"schema": {"type": "string"}, "description": "Send back in If-Match"}}
    alert_answer = {"description": "The alert (Graph security alert v2 fields), its related "
                    "activities, history and governance records", "headers": etag,
                    "content": {_JSON: {"schema": _ANY}}}  # fmt: skip
    paths: dict[str, Any] = {
        "/alerts": {
            "get": _op(
                "Alerts, newest first",
                reader,
                {**_ok("A page of alerts", PAGE), **_errors(400)},
                [
                    _query("since", "Raised at or after (ISO 8601, event time)"),
                    _query("detector", "Detector id, e.g. vigil.impossible_travel"),
                    _query("user", "Workplace id or e-mail"),
                    _query("tenant", "Workplace community id"),
                    _query("status", "Triage status", {"enum": list(STATUSES)}),
                    _query("severity", "Severity", {"enum": list(SEVERITIES)}),
                    _query("classification", "Classification", {"enum": list(CLASSIFICATIONS)}),
                    _query("source", "Source", {"enum": list(SOURCES)}),
                    _query(
                        "top",
                        f"Page size (1-{MAX_PAGE}, default 50)",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    ),
                    _query("next", NEXT_DOC),
                ],  # fmt: skip
            )
        },
        "/alerts/{id}": {
            "get": _op(
                "One alert with its activities and history",
                reader,
                {"200": alert_answer, **_errors(400, 404)},
                [alert_id],
            ),  # fmt: skip
            "patch": _op(
                "Triage an alert (Graph security alert v2 vocabulary)",
                responder,
                {"200": alert_answer, **_errors(400, 404, 412, 413)},
                [
                    alert_id,
                    {
                        "name": "If-Match",
                        "in": "header",
                        "description": "The ETag read: 412 when the alert changed since",
                        "schema": {"type": "string"},
                    },
                ],
                ALERT_PATCH,
            ),
        },
        "/activities": {
            "get": _op(
                "The activity log (JSON or CSV)",
                reader,
                {"200": csv_answer, **_errors(400)},
                activity_params,
            )  # fmt: skip
        },
        "/users/{id}": {
            "get": _op(
                "The user page",
                reader,
                {
                    **_ok("Directory record, last 30 days, open alerts, actions, baselines"),
                    **_errors(400, 404),
                },
                [
                    _path("id", "Workplace user id or e-mail"),
                    _query("tenant", "Workplace community id (when the id is ambiguous)"),
                ],
            )  # fmt: skip
        },
        "/audit": {
            "get": _op(
                "The audit log: every triage and governance command",
                reader,
                {**_ok("A page of audit entries, newest first", PAGE), **_errors(400)},
                [
                    _query("since", "At or after (ISO 8601)"),
                    _query("actor", "Who gave the command (user name, or `automation key`)"),
                    _query("command", "e.g. alert.update, governance.approve"),
                    _query("target", "The alert, action or suppression id"),
                    _query("top", "Page size (1-1000, default 100)", {"type": "integer"}),
                    _query("next", NEXT_DOC),
                ],
            )
        },
        "/governance/actions": {
            "get": _op(
                "The governance log",
                reader,
                {**_ok("Action records, newest first"), **_errors(400)},
                [
                    _query(n, f"Filter: {n}")
                    for n in ("tenant", "status", "action", "user", "alert", "limit")
                ]
                + [
                    _query("source", "The alert's source", {"enum": list(SOURCES)}),
                    _query("next", NEXT_DOC),
                ],
            )  # fmt: skip
        },
        "/suppressions": {
            "get": _op(
                "Analysts' suppressions (made when resolving an alert as benign)",
                reader,
                {**_ok("The suppressions", PAGE), **_errors(400)},
                [
                    _query("tenant", "Workplace community id"),
                    _query("user", "Workplace user id"),
                    _query("detector", "Detector or policy id"),
                ],
            )  # fmt: skip
        },
        "/suppressions/{id}": {
            "delete": _op(
                "Remove a suppression (detection alerts again at once)",
                responder,
                {"204": {"description": "Removed"}, **_errors(400, 404)},
                [_path("id", "The suppression's id")],
            )
        },
        "/posture": {
            "get": _op(
                "Posture recommendations (Adopt SSO in Workplace), as the timer last computed",
                reader,
                {**_ok("One recommendation per community", PAGE), **_errors(400)},
                [_query("tenant", "Workplace community id")],
            )
        },
        "/me": {
            "get": _op(
                "The caller: name, id and the app roles held (the console offers only those)",
                reader,
                {**_ok("The caller"), **_errors(400)},
            )
        },
        "/console": {
            "get": _op(
                "The analyst console (HTML; it calls this API as the signed-in analyst)",
                "",
                {"200": {"description": "The console's page"}, **_errors(400)},
                secured=False,
            ),
        },
        "/console/{name}": {
            "get": _op(
                "One of the console's files (app.js, app.css)",
                "",
                {"200": {"description": "The file"}, **_errors(400, 404)},
                [_path("name", "The file's name")],
                secured=False,
            ),
        },
        "/openapi.json": {
            "get": _op("This document", "", {**_ok("OpenAPI 3.1"), **_errors(400)}, secured=False),
        },
        "/workplace/install": {
            "get": {
                "summary": "Start installing Vigil into a Workplace community (operator)",
                "security": [{"functionKey": []}],
                "responses": {"302": {"description": "To Workplace's install dialog"}},
            }
        },
        "/workplace/status": {
            "get": {
                "summary": "Each install's state and sync health (operator)",
                "security": [{"functionKey": []}],
                "responses": _ok("Installs"),
            }
        },
        "/sources/status": {
            "get": {
                "summary": "Each enabled source's state: installs, Entra log back-fill (operator)",
                "security": [{"functionKey": []}],
                "responses": _ok("Sources"),
            }
        },
    }
    for command in ("approve", "retry", "revert"):
        paths[f"/governance/actions/{{id}}/{command}"] = {
            "post": _op(
                f"{command.capitalize()} a governance action, in the caller's name",
                responder,
                {**_ok("The action record"), **_errors(404, 409)},
                [_path("id", "The governance action's id")],
            )
        }
    for action, what in (
        ("callback", "Workplace's install redirect (signed state)"),
        ("webhook", "Workplace's webhook: GET verifies, POST delivers (signed)"),
        ("uninstall", "Workplace's uninstall and deauthorisation callback (signed)"),
    ):
        answer = {"200": {"description": "Accepted"}, **_errors(400)}
        paths[f"/workplace/{action}"] = {
            "get": {"summary": what, "security": [], "responses": answer},
            "post": {"summary": what, "security": [], "responses": answer},
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil",
            "version": "1.0",
            "description": "Threat detection and response for Workplace: the analyst's API.",
        },
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "integer"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
            "securitySchemes": {
                "appService": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "App Service Authentication (Microsoft Entra ID); app roles "
                    "Vigil.Reader and Vigil.Responder",
                },
                "automationKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
    }
