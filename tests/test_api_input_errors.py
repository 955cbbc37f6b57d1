"""Every HTTP route, fed malformed input through the local functions host: a 4xx naming the
parameter, never a 5xx.

The routes are enumerated from the app the host indexed (function_app's blueprints), so a route
added without cases here fails `test_every_route_and_method_has_malformed_input_cases`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from local.stack import APP_SECRET, Stack, local_stack
from shared.paging import TokenSigner, query_digest


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # under /api
    parameter: str  # what the answer must name
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = {k: (v if len(v) < 40 else v[:20] + "...") for k, v in self.query.items()}
        return f"{self.method} {self.path} {shown} {self.body[:30]!r} -> {self.parameter}"


def token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def signed_request(payload: object, secret: str) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    sig = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(sig).decode().rstrip("=") + "." + encoded


def foreign(listing: str, query: dict[str, str], after: str = "x") -> str:
    """A well-formed token of `listing` and `query`, signed by another deployment's key."""
    return TokenSigner(b"another deployment").sign({"after": after}, query_digest(query, listing))


LONG = "x" * 300
WINDOW = {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"}

CASES: dict[str, list[Case]] = {
    "alerts_http": [
        Case("GET", "alerts", "since", {"since": "0001-01-01T00:00:00+01:00"}),
        Case("GET", "alerts", "since", {"since": "9999-12-31T23:59:59-01:00"}),
        Case("GET", "alerts", "since", {"since": "1999-12-31T23:59:59Z"}),
        Case("GET", "alerts", "since", {"since": "yesterday"}),
        Case("GET", "alerts", "since", {"since": "2026-13-01T00:00:00Z"}),
        Case("GET", "alerts", "since", {"since": "2026-03-01T00:00:00+25:00"}),
        Case("GET", "alerts", "since", {"since": "2026-03-01\x00"}),
        Case("GET", "alerts", "top", {"top": "0"}),
        Case("GET", "alerts", "top", {"top": "201"}),
        Case("GET", "alerts", "top", {"top": "-1"}),
        Case("GET", "alerts", "top", {"top": "ten"}),
        Case("GET", "alerts", "top", {"top": "1e3"}),
        Case("GET", "alerts", "top", {"top": "\u0662"}),  # a digit, but not an ASCII one
        Case("GET", "alerts", "top", {"top": "9" * 5000}),  # beyond int()'s digits
        Case("GET", "alerts", "next", {"next": "not-a-token"}),
        Case("GET", "alerts", "next", {"next": token({"after": 5})}),
        Case("GET", "alerts", "next", {"next": token({"after": "../../x"})}),
        Case("GET", "alerts", "next", {"next": token(["after"])}),
        Case("GET", "alerts", "next", {"next": "W" * 5000}),
        Case("GET", "alerts", "next", {"next": foreign("alerts", {})}),
        Case("GET", "alerts", "next", {"next": "é" * 30}),
        Case("GET", "alerts", "tenant", {"tenant": "a/b"}),
        Case("GET", "alerts", "tenant", {"tenant": "a#b?c"}),
        Case("GET", "alerts", "detector", {"detector": LONG}),
        Case("GET", "alerts", "user", {"user": "bob\x01"}),
        Case("GET", "alerts", "colour", {"colour": "red"}),
    ],
    "governance_actions": [
        Case("GET", "governance/actions", "status", {"status": "exploded"}),
        Case("GET", "governance/actions", "action", {"action": "delete_everything"}),
        Case("GET", "governance/actions", "limit", {"limit": "0"}),
        Case("GET", "governance/actions", "limit", {"limit": "1001"}),
        Case("GET", "governance/actions", "limit", {"limit": "lots"}),
        Case("GET", "governance/actions", "limit", {"limit": "99999999999999999999999"}),
        Case("GET", "governance/actions", "limit", {"limit": "1" * 4500}),
        Case("GET", "governance/actions", "tenant", {"tenant": "a#b"}),
        Case("GET", "governance/actions", "user", {"user": LONG}),
        Case("GET", "governance/actions", "alert", {"alert": "a\nb"}),
        Case("GET", "governance/actions", "colour", {"colour": "red"}),
        Case("GET", "governance/actions", "source", {"source": "okta"}),
        Case("GET", "governance/actions", "next", {"next": "not-a-token"}),
        Case("GET", "governance/actions", "next", {"next": token({"after": "log-0"})}),
        Case("GET", "governance/actions", "next", {"next": foreign("governance", {}, "log-0")}),
        Case("GET", "governance/actions", "next", {"next": "W" * 5000}),
    ],
    "governance_command": [
        # The approver is the caller (shared/access.py): the body is not read at all.
        Case("POST", "governance/actions/a%23b/approve", "id", body=b'{"by": "analyst"}'),
        Case("POST", f"governance/actions/{'i' * 300}/approve", "id", body=b'{"by": "x"}'),
    ],
    "connect_install": [
        Case("GET", "workplace/install", "colour", {"colour": "red"}),
    ],
    "connect_status": [
        Case("GET", "workplace/status", "colour", {"colour": "red"}),
    ],
    "sources_status": [
        Case("GET", "sources/status", "colour", {"colour": "red"}),
    ],
    "connect_http": [
        Case("GET", "workplace/callback", "code"),
        Case("GET", "workplace/callback", "state", {"code": "abc"}),
        Case("GET", "workplace/callback", "state", {"code": "abc", "state": "a/b"}),
        Case("GET", "workplace/callback", "state", {"code": "abc", "state": "never-issued"}),
        Case("GET", "workplace/callback", "state", {"code": "abc", "state": LONG}),
        Case("GET", "workplace/callback", "code", {"code": "c" * 5000, "state": "s"}),
        Case("GET", "workplace/callback", "code", {"code": "a\x00b", "state": "s"}),
        Case("GET", "workplace/callback", "error", {"error": "access_denied"}),
        Case("GET", "workplace/webhook", "hub.mode"),
        Case("GET", "workplace/webhook", "hub.mode", {"hub.mode": "unsubscribe"}),
        Case(
            "GET",
            "workplace/webhook",
            "hub.verify_token",
            {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        ),
        Case("POST", "workplace/webhook", "X-Hub-Signature-256", body=b"{}"),
        *(
            Case("POST", "workplace/webhook", "X-Hub-Signature-256", body=b"{}", headers=h)
            for h in (
                {"X-Hub-Signature-256": ""},
                {"X-Hub-Signature-256": "sha256="},
                {"X-Hub-Signature-256": "sha256=zz"},
                {"X-Hub-Signature-256": "md5=abc"},
                {"X-Hub-Signature-256": "sha256=" + "0" * 64},
                {"X-Hub-Signature-256": "sha256=" + "a" * 10_000},
                {"X-Hub-Signature": "sha1=" + "0" * 40},
            )
        ),
        Case("POST", "workplace/uninstall", "signed_request"),
        Case("POST", "workplace/uninstall", "signed_request", body=b"signed_request="),
        Case("POST", "workplace/uninstall", "signed_request", body=b"signed_request=abc"),
        Case("POST", "workplace/uninstall", "signed_request", body=b"signed_request=a.b"),
        Case("POST", "workplace/uninstall", "signed_request", body=b"signed_request=%ff%fe.%00"),
        Case("POST", "workplace/uninstall", "signed_request", body=b"\xff\xfe\x00"),
        Case("POST", "workplace/uninstall", "signed_request", body=b"other=1&x=%zz"),
        Case(  # signed, but nested beyond the parser
            "POST",
            "workplace/uninstall",
            "signed_request",
            body=b"signed_request="
            + signed_request(b"[" * 2000 + b"]" * 2000, APP_SECRET).encode(),
        ),
        Case(
            "POST",
            "workplace/uninstall",
            "community_id",
            body=b"signed_request=" + signed_request({"user_id": "1"}, APP_SECRET).encode(),
        ),
        Case(
            "POST",
            "workplace/uninstall",
            "community_id",
            body=b"signed_request=" + signed_request({"community_id": "a/b"}, APP_SECRET).encode(),
        ),
    ],
    "alert_get": [
        Case("GET", "alerts/nope", "id"),
        Case("GET", "alerts/nope", "expand", {"expand": "all"}),
        Case("GET", "alerts/a%23b", "id"),
        Case("GET", f"alerts/{LONG}", "id"),
        Case("GET", "alerts/a%27%20or%20AlertId%20ne%20%27", "id"),
    ],
    "alert_patch": [
        Case("PATCH", "alerts/nope", "body", body=b"not json"),
        Case("PATCH", "alerts/nope", "body", body=b"[1]"),
        Case("PATCH", "alerts/nope", "body", body=b"[" * 5000 + b"]" * 5000),
        Case("PATCH", "alerts/nope", "body", body=b'{"a":' * 5000 + b"1" + b"}" * 5000),
        Case("PATCH", "alerts/nope", "body", body=json.dumps({"comment": "x" * 70_000}).encode()),
        Case("PATCH", "alerts/nope", "body", body=b'{"status": "resolved", "status": "new"}'),
        Case("PATCH", "alerts/nope", "body", body=b'{"comment": NaN}'),
        Case("PATCH", "alerts/nope", "body", body=b'{"comment": -Infinity}'),
        Case("PATCH", "alerts/nope", "body", body=b'{"comment": 1e999}'),
        Case("PATCH", "alerts/nope", "body", body=b'{"comment": "\xff"}'),
        Case("PATCH", "alerts/nope", "status", body=b'{"status": "closed"}'),
        Case("PATCH", "alerts/nope", "classification", body=b'{"classification": "benign"}'),
        Case("PATCH", "alerts/nope", "determination", body=b'{"determination": "bad"}'),
        Case("PATCH", "alerts/nope", "assignedTo", body=b'{"assignedTo": 5}'),
        Case("PATCH", "alerts/nope", "comment", body=json.dumps({"comment": LONG * 10}).encode()),
        Case("PATCH", "alerts/nope", "owner", body=b'{"owner": "x"}'),
        Case(
            "PATCH", "alerts/nope", "suppress", body=b'{"status": "new", "suppress": {"days": 7}}'
        ),
        Case("PATCH", "alerts/nope", "id", body=b'{"status": "new"}'),
        Case("PATCH", f"alerts/{LONG}", "id", body=b'{"status": "new"}'),
        Case("PATCH", "alerts/a%27%20or%20true%20or%20%27", "id", body=b'{"status": "new"}'),
    ],
    "activities_http": [
        Case("GET", "activities", "from"),
        Case("GET", "activities", "from", {"from": "yesterday", "to": "2026-03-02T00:00:00Z"}),
        Case("GET", "activities", "to", {"from": "2026-03-01T00:00:00Z"}),
        Case(
            "GET",
            "activities",
            "to",
            {"from": "2026-03-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"},
        ),
        Case(
            "GET",
            "activities",
            "ip",
            {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "ip": "300.1.1.1"},
        ),
        Case(
            "GET",
            "activities",
            "next",
            {
                "from": "2026-03-01T00:00:00Z",
                "to": "2026-03-02T00:00:00Z",
                "next": token({"pk": "x"}),
            },
        ),
        Case("GET", "activities", "next", {**WINDOW, "next": foreign("activities", WINDOW)}),
        Case(
            "GET",
            "activities",
            "source",
            {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "source": "okta"},
        ),
        Case(
            "GET",
            "activities",
            "format",
            {"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z", "format": "xml"},
        ),
    ],
    "user_page": [
        Case("GET", "users/nobody@contoso.com", "id"),
        Case("GET", "users/nobody@contoso.com", "days", {"days": "90"}),
        Case("GET", "users/nobody@contoso.com", "tenant", {"tenant": "a/b"}),
        Case("GET", "users/nobody@contoso.com", "tenant", {"tenant": "\x00"}),
        Case("GET", "users/a%00b", "id"),
    ],
    "audit_http": [
        Case("GET", "audit", "top", {"top": "0"}),
        Case("GET", "audit", "since", {"since": "yesterday"}),
        Case("GET", "audit", "next", {"next": "abc"}),
        Case("GET", "audit", "next", {"next": token({"after": "x"})}),
        Case("GET", "audit", "next", {"next": foreign("audit", {})}),
    ],
    "suppressions_http": [Case("GET", "suppressions", "active", {"active": "1"})],
    "suppression_delete": [Case("DELETE", "suppressions/nope", "id")],
    "posture_http": [Case("GET", "posture", "state", {"state": "atRisk"})],
    "openapi_http": [Case("GET", "openapi.json", "colour", {"colour": "red"})],
    "me_http": [Case("GET", "me", "colour", {"colour": "red"})],
    "console_page": [Case("GET", "console", "colour", {"colour": "red"})],
    "console_asset": [
        Case("GET", "console/app.js", "colour", {"colour": "red"}),
        Case("GET", "console/nothing.js", "name"),
        Case("GET", "console/.hidden.js", "name"),
        Case("GET", "console/app.py", "name"),
    ],
}


@pytest.fixture(scope="module")
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    with local_stack(port=None, triggers=False) as s:
        yield s


def send(stack: Stack, case: Case) -> requests.Response:
    url = f"{stack.api}/{case.path}"
    headers = {"x-functions-key": stack.function_key, **case.headers}
    if case.method == "POST" and "uninstall" in case.path:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return requests.request(
        case.method, url, params=case.query, data=case.body, headers=headers, timeout=30
    )


def all_cases() -> list[tuple[str, Case]]:
    return [(name, case) for name, cases in CASES.items() for case in cases]


def test_every_route_and_method_has_malformed_input_cases(stack: Stack) -> None:
    routes = stack.host.http_routes
    assert set(routes) == set(CASES), "add cases for each new HTTP route"
    for function, methods in routes.items():
        covered = {c.method for c in CASES[function]}
        assert covered == set(methods), f"{function}: cases for {sorted(methods)}"


@pytest.mark.parametrize(("function", "case"), all_cases(), ids=lambda v: str(v))
def test_malformed_input_is_a_4xx_naming_the_parameter(
    stack: Stack, function: str, case: Case
) -> None:
    answer = send(stack, case)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert case.parameter.lower() in answer.text.lower(), answer.text[:300]
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        error = answer.json()["error"]
        assert error["status"] == answer.status_code
        assert case.parameter.lower() in error["message"].lower()
