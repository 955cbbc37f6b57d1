"""The simulated Microsoft Graph (local/sim_graph.py) over TLS, with tokens MSAL gets from its
Entra token endpoint (tested on its own in test_sim_entra_token.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from local.sim_graph import GRAPH_SCOPE, SimulatedGraph, SimUser

ALICE_ID = "11111111-1111-4111-8111-111111111111"
BOB_ID = "22222222-2222-4222-8222-222222222222"
SENDER_ID = "33333333-3333-4333-8333-333333333333"
UNKNOWN_ID = "99999999-9999-4999-8999-999999999999"
NOT_FOUND = "does not exist or one of its queried reference-property objects are not present."
MESSAGE = {
    "subject": "Vigil security notice",
    "body": {"contentType": "HTML", "content": "<p>Seen.</p>"},
    "toRecipients": [{"emailAddress": {"address": "alice@contoso.com"}}],
}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedGraph]:
    graph = SimulatedGraph(state_dir=tmp_path / "sim-graph")
    for uid, upn, mail, name in [
        (ALICE_ID, "alice@contoso.com", "alice@contoso.com", "Alice"),
        (BOB_ID, "bob@contoso.com", "bob.smith@contoso.com", "Bob"),
        (SENDER_ID, "vigil@contoso.com", "vigil@contoso.com", "Vigil"),
    ]:
        graph.add_user(SimUser(uid, upn, mail, name, on_premises_sync_enabled=uid == BOB_ID))
    with graph:
        yield graph


@dataclass
class Client:
    """Graph calls with a token MSAL got from the token endpoint (unless a call brings its own)."""

    sim: SimulatedGraph
    http: requests.Session
    token: str

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        target = url if url.startswith("https:") else f"{self.sim.graph_url}{url}"
        return self.http.request(method, target, headers=headers, **kw)

    def get(self, url: str, **kw: Any) -> requests.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> requests.Response:
        return self.request("POST", url, **kw)


@pytest.fixture
def g(sim: SimulatedGraph) -> Iterator[Client]:
    with sim.make_session() as http:
        app = msal.ConfidentialClientApplication(
            sim.client_id,
            authority=f"{sim.authority_host}/{sim.tenant_id}",
            client_credential=sim.client_secret,
            instance_discovery=False,
            http_client=http,
        )
        result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        assert isinstance(result["access_token"], str)
        yield Client(sim, http, result["access_token"])


def state(sim: SimulatedGraph) -> Any:
    """What a refused request must leave as it was."""
    users = copy.deepcopy(sorted(sim.users.values(), key=lambda u: u.id))
    return users, sim.sent_mail, [r for r in sim.requests if r.via_batch]


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"json": {"requests": list(items)}}


GET_USERS = {"method": "GET", "url": "/users"}
Prepare = Callable[[SimulatedGraph], Any] | None
REFUSED: list[tuple[Prepare, str, str, dict[str, Any], int, str, str]] = [
    # (prepare the simulator, method, url, request, status, error code, in the message)
    (None, "POST", f"/users/{ALICE_ID}/revokeSignInSessions", {"headers": {"Authorization": None}},
     401, "InvalidAuthenticationToken", "Access token is empty."),
    (None, "POST", f"/users/{ALICE_ID}/revokeSignInSessions",
     {"headers": {"Authorization": "Bearer not-a-token"}}, 401, "InvalidAuthenticationToken",
     "IDX14100"),
    (None, "POST", f"/users/{ALICE_ID}/revokeSignInSessions",
     {"headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, 401, "InvalidAuthenticationToken",
     "Access token is empty."),
    (lambda sim: sim.entra.invalidate_tokens(), "GET", f"/users/{ALICE_ID}", {}, 401,
     "InvalidAuthenticationToken", "expired"),
    (None, "GET", f"/users/{UNKNOWN_ID}", {}, 404, "Request_ResourceNotFound",
     f"Resource '{UNKNOWN_ID}' {NOT_FOUND}"),
    (None, "POST", f"/users/{UNKNOWN_ID}/revokeSignInSessions", {}, 404,
     "Request_ResourceNotFound", f"Resource '{UNKNOWN_ID}' {NOT_FOUND}"),
    (None, "GET", f"/users/{ALICE_ID}", {"params": {"$select": "acountEnabled"}}, 400,
     "Request_BadRequest", "'acountEnabled'"),
    (None, "PATCH", f"/users/{ALICE_ID}", {"data": b'{"accountEnabled": false}'}, 400,
     "BadRequest", "Content-Type"),  # no Content-Type
    (None, "PATCH", f"/users/{ALICE_ID}", {"json": {"accountEnabled": "no"}}, 400,
     "Request_BadRequest", "Edm.Boolean"),
    (None, "POST", f"/users/{SENDER_ID}/sendMail",
     {"json": {"message": {"subject": "x", "toRecipients": []}}}, 400, "ErrorInvalidRecipients",
     "recipient"),
    (None, "POST", f"/users/{SENDER_ID}/sendMail", {"json": {"subject": "no message wrapper"}},
     400, "ErrorInvalidRequest", "'message'"),
    (None, "POST", "/users/vigil@contoso.com/sendMail",
     {"json": {"message": {**MESSAGE, "internetMessageId": "no-angle-brackets"}}}, 400,
     "ErrorInvalidRequest", "internetMessageId"),
    (lambda sim: setattr(sim, "mail_read_denied", True), "GET",
     "/users/vigil@contoso.com/mailFolders/sentitems/messages", {}, 403, "ErrorAccessDenied", ""),
    (None, "POST", "/identityProtection/riskyUsers/dismiss",  # userIds are object ids
     {"json": {"userIds": [ALICE_ID, "bob@contoso.com"]}}, 404, "Request_ResourceNotFound",
     "bob@contoso.com"),
    (None, "POST", "/$batch", batch(*({"id": str(i), **GET_USERS} for i in range(21))), 400,
     "BadRequest", "limit of 20"),
    (None, "POST", "/$batch",
     batch({"id": "1", "method": "PATCH", "url": "/users/x", "body": {"a": 1}}), 400,
     "BadRequest", "Content-Type"),
    (None, "POST", "/$batch", batch({"id": "1", **GET_USERS}, {"id": "1", **GET_USERS}), 400,
     "BadRequest", "duplicated"),
    (None, "POST", "/$batch", batch({"id": "1", **GET_USERS, "dependsOn": ["9"]}), 400,
     "BadRequest", "depends on"),
]  # fmt: skip


@pytest.mark.parametrize(("prepare", "method", "url", "kw", "status", "code", "text"), REFUSED)
def test_a_refused_request_gets_graphs_error_envelope_and_changes_nothing(
    sim: SimulatedGraph,
    g: Client,
    prepare: Callable[[SimulatedGraph], Any] | None,
    method: str,
    url: str,
    kw: dict[str, Any],
    status: int,
    code: str,
    text: str,
) -> None:
    if prepare is not None:
        prepare(sim)
    before = state(sim)
    kw = {**kw, "headers": {"client-request-id": "my-correlation-id", **kw.get("headers", {})}}
    response = g.request(method, url, **kw)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and text in error["message"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert error["innerError"]["client-request-id"] == "my-correlation-id"
    assert response.headers["client-request-id"] == "my-correlation-id"
    assert "date" in error["innerError"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert state(sim) == before


def test_identity_protection_limit_answers_429_without_retry_after(
    sim: SimulatedGraph, g: Client
) -> None:
    sim.limit_identity_protection(0.001)  # one call per 1000 s: the second one is throttled
    url = "/identityProtection/riskyUsers/confirmCompromised"
    first = g.post(url, json={"userIds": [ALICE_ID]})
    second = g.post(url, json={"userIds": [BOB_ID]})
    assert (first.status_code, second.status_code) == (204, 429)
    assert "Retry-After" not in second.headers
    assert second.json()["error"]["code"] == "TooManyRequests"
    assert sim.users[BOB_ID].risk_state == "none"
    sim.limit_identity_protection(None)
    assert g.post(url, json={"userIds": [BOB_ID]}).status_code == 204


def test_request_id_headers_on_every_graph_response(sim: SimulatedGraph, g: Client) -> None:
    response = g.get(f"/users/{ALICE_ID}")
    assert response.headers["request-id"]
    # Without a client-request-id, Graph reports the request-id in both headers.
    assert response.headers["client-request-id"] == response.headers["request-id"]
    echoed = g.get(f"/users/{ALICE_ID}", headers={"client-request-id": "abc"})
    assert echoed.headers["client-request-id"] == "abc"
    assert echoed.headers["request-id"] != response.headers["request-id"]
    assert sim.requests[-1].request_id == echoed.headers["request-id"]


# --------------------------------------------------------------------------- $batch


def disable_then_revoke(user_id: str) -> dict[str, Any]:
    json = {"Content-Type": "application/json"}
    return batch(
        {"id": "1", "method": "PATCH", "url": f"/users/{user_id}", "headers": json,
         "body": {"accountEnabled": False}},
        {"id": "2", "dependsOn": ["1"], "method": "POST",
         "url": f"/users/{user_id}/revokeSignInSessions", "headers": json, "body": {}},
    )  # fmt: skip


def test_batch_disable_then_revoke(sim: SimulatedGraph, g: Client) -> None:
    response = g.post("/$batch", **disable_then_revoke(ALICE_ID))
    assert response.status_code == 200 and response.headers["request-id"]
    items = response.json()["responses"]
    assert [i["id"] for i in items] == ["2", "1"]  # not in request order
    by_id = {i["id"]: i for i in items}
    assert (by_id["1"]["status"], by_id["1"]["body"]) == (204, None)
    assert (by_id["2"]["status"], by_id["2"]["body"]["value"]) == (200, True)
    assert all(isinstance(i["headers"], dict) for i in items)
    assert sim.users[ALICE_ID].account_enabled is False
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is not None
    graph = sim.graph_requests()
    assert [(r.method, r.path, r.via_batch, r.batch_item_id, r.status) for r in graph] == [
        ("POST", "/v1.0/$batch", False, None, 200),
        ("PATCH", f"/v1.0/users/{ALICE_ID}", True, "1", 204),
        ("POST", f"/v1.0/users/{ALICE_ID}/revokeSignInSessions", True, "2", 200),
    ]
    assert len(sim.graph_requests(include_batch_items=False)) == 1
    assert graph[0].headers["authorization"] == "Bearer ***"  # recorded, redacted
    assert g.token not in repr(sim.requests)


def test_batch_allows_twenty_requests_and_relative_urls_without_slash(
    sim: SimulatedGraph, g: Client
) -> None:
    get = {"method": "GET", "url": f"users/{ALICE_ID}?$select=id"}
    response = g.post("/$batch", **batch(*({"id": str(i), **get} for i in range(20))))
    assert response.status_code == 200
    items = response.json()["responses"]
    assert len(items) == 20
    assert all(i["status"] == 200 and i["body"]["id"] == ALICE_ID for i in items)


# --------------------------------------------------------------------------- faults


def test_injected_faults_are_consumed_in_order(sim: SimulatedGraph, g: Client) -> None:
    url = "/identityProtection/riskyUsers/confirmCompromised"
    # Identity Protection throttles with a 429 that carries no Retry-After.
    sim.inject_fault("POST", "confirmCompromised", 429, times=2)
    sim.inject_fault("*", "riskyUsers", 503, headers={"Retry-After": "1"})
    denied = {"error": {"code": "Authorization_RequestDenied", "message": "Nope."}}
    sim.inject_fault("POST", "riskyUsers", 403, body=denied)
    statuses = []
    for _ in range(5):
        response = g.post(url, json={"userIds": [ALICE_ID]})
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert "Retry-After" not in response.headers
        if response.status_code == 403:
            error = response.json()["error"]
            assert error["code"] == "Authorization_RequestDenied"
            assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert statuses == [429, 429, 503, 403, 204]


def test_fault_does_not_match_other_paths_or_methods(sim: SimulatedGraph, g: Client) -> None:
    sim.inject_fault("PATCH", "/users/", 504)
    assert g.get(f"/users/{ALICE_ID}").status_code == 200
    assert sim.pending_faults == 1
    sim.faults.clear()
    assert (
        g.request("PATCH", f"/users/{ALICE_ID}", json={"accountEnabled": False}).status_code == 204
    )


def test_temporary_ca_directory_is_removed_on_stop() -> None:
    graph = SimulatedGraph()
    ca_path = graph.ca_path
    assert ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with graph:
        assert graph.authority_host.startswith("https://localhost:")
        assert graph.graph_url == f"https://localhost:{graph.port}/v1.0"
        assert graph.entra.port != graph.port  # the token endpoint is a server of its own
        with graph.make_session() as session:
            response = session.get(f"{graph.entra.authority}/v2.0/.well-known/openid-configuration")
            assert response.status_code == 200
    assert not ca_path.exists()
    with pytest.raises(RuntimeError):
        _ = graph.authority_host
