"""The simulated Microsoft Graph (local/sim_graph.py) over TLS, with tokens MSAL gets from its
Entra token endpoint (tested on its own in test_sim_entra_token.py)."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedGraph]:
    graph = SimulatedGraph(state_dir=tmp_path / "sim-graph")
    graph.add_user(
        SimUser(
            id=ALICE_ID,
            user_principal_name="alice@contoso.com",
            mail="alice@contoso.com",
            display_name="Alice",
        )
    )
    graph.add_user(
        SimUser(
            id=BOB_ID,
            user_principal_name="bob@contoso.com",
            mail="bob.smith@contoso.com",
            display_name="Bob",
            on_premises_sync_enabled=True,
        )
    )
    graph.add_user(
        SimUser(
            id=SENDER_ID,
            user_principal_name="vigil@contoso.com",
            mail="vigil@contoso.com",
            display_name="Vigil",
        )
    )
    with graph:
        yield graph


def _session(sim: SimulatedGraph) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sim.ca_path)
    return session


def _app(
    sim: SimulatedGraph, session: requests.Session, credential: Any = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        sim.client_id,
        authority=f"{sim.authority_host}/{sim.tenant_id}",
        client_credential=sim.client_secret if credential is None else credential,
        instance_discovery=False,
        http_client=session,
    )


@pytest.fixture
def http(sim: SimulatedGraph) -> Iterator[requests.Session]:
    session = _session(sim)
    yield session
    session.close()


@dataclass
class Client:
    """Graph calls with a token from the token endpoint (unless the call brings its own)."""

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

    def patch(self, url: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", url, **kw)


@pytest.fixture
def g(sim: SimulatedGraph, http: requests.Session) -> Client:
    result = _app(sim, http).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert isinstance(result["access_token"], str)
    return Client(sim, http, result["access_token"])


def _auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


# --------------------------------------------------------------------------- Graph


def test_revoke_sign_in_sessions_returns_200_with_known_issue_body(
    sim: SimulatedGraph, g: Client
) -> None:
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is None
    response = g.post(f"/users/{ALICE_ID}/revokeSignInSessions")
    assert response.status_code == 200
    assert response.json() == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
        "value": True,
    }
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is not None

    by_upn = g.post("/users/BOB@Contoso.com/revokeSignInSessions")
    assert by_upn.status_code == 200
    assert sim.users[BOB_ID].sign_in_sessions_valid_from is not None


def test_patch_disables_account(sim: SimulatedGraph, g: Client) -> None:
    url = f"/users/{ALICE_ID}"
    response = g.patch(url, json={"accountEnabled": False})
    assert response.status_code == 204
    assert response.content == b""
    assert sim.users[ALICE_ID].account_enabled is False
    recorded = sim.requests[-1]
    assert (recorded.method, recorded.path, recorded.json) == (
        "PATCH",
        f"/v1.0/users/{ALICE_ID}",
        {"accountEnabled": False},
    )
    assert recorded.headers["authorization"] == "Bearer ***"
    assert g.token not in repr(sim.requests)

    no_content_type = g.patch(url, data=b'{"accountEnabled": true}')
    assert no_content_type.status_code == 400
    assert sim.users[ALICE_ID].account_enabled is False

    not_bool = g.patch(url, json={"accountEnabled": "no"})
    assert not_bool.status_code == 400
    assert not_bool.json()["error"]["code"] == "Request_BadRequest"

    enable = g.patch(url, json={"accountEnabled": True})
    assert enable.status_code == 204
    assert sim.users[ALICE_ID].account_enabled is True


def test_get_user_by_id_or_upn_with_select(sim: SimulatedGraph, g: Client) -> None:
    full = g.get(f"/users/{BOB_ID}").json()
    assert full["id"] == BOB_ID
    assert full["onPremisesSyncEnabled"] is True
    assert full["accountEnabled"] is True

    selected = g.get(
        "/users/ALICE@contoso.com",
        params={"$select": "id,accountEnabled,onPremisesSyncEnabled"},
    )
    assert selected.status_code == 200
    body = selected.json()
    assert body.pop("@odata.context").endswith(
        "#users(id,accountEnabled,onPremisesSyncEnabled)/$entity"
    )
    assert body == {"id": ALICE_ID, "accountEnabled": True, "onPremisesSyncEnabled": False}

    bad_select = g.get(
        f"/users/{ALICE_ID}",
        params={"$select": "acountEnabled"},
    )
    assert bad_select.status_code == 400


def test_filter_users_by_mail_or_upn(sim: SimulatedGraph, g: Client) -> None:
    by_mail = g.get(
        "/users",
        params={"$filter": "mail eq 'Bob.Smith@contoso.com'", "$select": "id,mail"},
    )
    assert by_mail.status_code == 200
    assert by_mail.json()["value"] == [{"id": BOB_ID, "mail": "bob.smith@contoso.com"}]

    by_upn = g.get(
        "/users",
        params={"$filter": "userPrincipalName eq 'alice@contoso.com'"},
    )
    assert [u["id"] for u in by_upn.json()["value"]] == [ALICE_ID]

    none = g.get(
        "/users",
        params={"$filter": "mail eq 'nobody@contoso.com'"},
    )
    assert none.json()["value"] == []


def test_send_mail_is_accepted_and_recorded(sim: SimulatedGraph, g: Client) -> None:
    message = {
        "subject": "Vigil: activity blocked",
        "body": {"contentType": "HTML", "content": "<p>Blocked.</p>"},
        "toRecipients": [{"emailAddress": {"address": "alice@contoso.com"}}],
    }
    response = g.post(
        "/users/vigil@contoso.com/sendMail",
        json={"message": message, "saveToSentItems": False},
    )
    assert response.status_code == 202
    assert response.content == b""
    assert sim.sent_mail == [
        {
            "sender": "vigil@contoso.com",
            "sender_id": SENDER_ID,
            "message": message,
            "saveToSentItems": False,
        }
    ]

    no_recipients = g.post(
        f"/users/{SENDER_ID}/sendMail",
        json={"message": {"subject": "x", "toRecipients": []}},
    )
    assert no_recipients.status_code == 400
    assert no_recipients.json()["error"]["code"] == "ErrorInvalidRecipients"

    malformed = g.post(
        f"/users/{SENDER_ID}/sendMail",
        json={"subject": "no message wrapper"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "ErrorInvalidRequest"
    assert len(sim.sent_mail) == 1


def test_sent_items_keep_a_sent_mail_under_its_internet_message_id(
    sim: SimulatedGraph, g: Client
) -> None:
    message = {
        "subject": "Vigil security notice",
        "body": {"contentType": "HTML", "content": "<p>Seen.</p>"},
        "toRecipients": [{"emailAddress": {"address": "alice@contoso.com"}}],
        "internetMessageId": "<vigil.abc@contoso.com>",
    }
    url = "/users/vigil@contoso.com"
    sent = g.post(f"{url}/sendMail", json={"message": message})
    assert sent.status_code == 202  # saveToSentItems defaults to true
    unsaved = {**message, "internetMessageId": "<vigil.not-kept@contoso.com>"}
    g.post(f"{url}/sendMail", json={"message": unsaved, "saveToSentItems": False})
    bad = {**message, "internetMessageId": "no-angle-brackets"}
    refused = g.post(f"{url}/sendMail", json={"message": bad})
    assert refused.status_code == 400

    def find(message_id: str) -> list[dict[str, object]]:
        got = g.get(
            f"{url}/mailFolders/sentitems/messages",
            params={
                "$filter": f"internetMessageId eq '{message_id}'",
                "$select": "id,internetMessageId",
            },
        )
        assert got.status_code == 200, got.text
        value: list[dict[str, object]] = got.json()["value"]
        return value

    (kept,) = find("<vigil.abc@contoso.com>")
    assert kept["internetMessageId"] == "<vigil.abc@contoso.com>" and set(kept) == {
        "id",
        "internetMessageId",
    }
    assert (
        find("<vigil.not-kept@contoso.com>") == [] and len(sim.sent_items("vigil@contoso.com")) == 1
    )
    sim.mail_read_denied = True
    denied = g.get(f"{url}/mailFolders/sentitems/messages")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"


def test_a_hook_runs_after_the_call_and_before_the_answer(sim: SimulatedGraph, g: Client) -> None:
    seen: list[tuple[str, bool]] = []

    def hook(request: object) -> None:
        user = sim.find_user("alice@contoso.com")
        assert user is not None
        seen.append((getattr(request, "path", ""), user.sign_in_sessions_valid_from is not None))

    sim.before_answer("POST", "/revokeSignInSessions$", hook)
    url = "/users/alice@contoso.com/revokeSignInSessions"
    assert g.post(url).status_code == 200
    assert g.post(url).status_code == 200
    assert seen == [("/v1.0/users/alice@contoso.com/revokeSignInSessions", True)]  # once, after


def test_risky_users_confirm_and_dismiss(sim: SimulatedGraph, g: Client) -> None:
    base = "/identityProtection/riskyUsers"
    confirm = g.post(f"{base}/confirmCompromised", json={"userIds": [ALICE_ID, BOB_ID]})
    assert confirm.status_code == 204
    assert sim.users[ALICE_ID].risk_state == "confirmedCompromised"
    assert sim.users[BOB_ID].risk_state == "confirmedCompromised"
    risky = g.get(f"{base}/{ALICE_ID}").json()
    assert (risky["riskState"], risky["riskLevel"]) == ("confirmedCompromised", "high")

    dismiss = g.post(f"{base}/dismiss", json={"userIds": [ALICE_ID]})
    assert dismiss.status_code == 204
    assert sim.users[ALICE_ID].risk_state == "dismissed"

    by_upn = g.post(  # userIds are object ids
        f"{base}/dismiss", json={"userIds": ["bob@contoso.com"]}
    )
    assert by_upn.status_code == 404
    assert sim.users[BOB_ID].risk_state == "confirmedCompromised"


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


def test_tokens_of_the_token_endpoint_and_the_managed_identity_are_accepted(
    sim: SimulatedGraph, g: Client
) -> None:
    assert g.get(f"/users/{ALICE_ID}").json()["userPrincipalName"] == "alice@contoso.com"
    params = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}
    headers = {"X-IDENTITY-HEADER": sim.identity_header}
    resp = g.http.get(sim.identity_endpoint, params=params, headers=headers)
    me = g.get(f"/users/{ALICE_ID}", headers=_auth(resp.json()["access_token"]))
    assert me.status_code == 200
    assert sim.entra.port != sim.port and sim.identity_endpoint.startswith(sim.authority_host)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Access token is empty."),
        ({"Authorization": "Bearer not-a-token"}, "IDX14100"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Access token is empty."),
    ],
)
def test_missing_or_invalid_token_gives_401_envelope(
    sim: SimulatedGraph, http: requests.Session, headers: dict[str, str], message: str
) -> None:
    response = http.post(
        f"{sim.graph_url}/users/{ALICE_ID}/revokeSignInSessions",
        headers={**headers, "client-request-id": "my-correlation-id"},
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert message in error["message"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert error["innerError"]["client-request-id"] == "my-correlation-id"
    assert response.headers["client-request-id"] == "my-correlation-id"
    assert "date" in error["innerError"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is None


def test_invalidated_token_gives_401(sim: SimulatedGraph, g: Client) -> None:
    sim.invalidate_tokens()
    response = g.get(f"/users/{ALICE_ID}")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_unknown_user_gives_404(sim: SimulatedGraph, g: Client) -> None:
    for method, suffix in [("GET", ""), ("POST", "/revokeSignInSessions")]:
        response = g.request(method, f"/users/{UNKNOWN_ID}{suffix}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "Request_ResourceNotFound"
        assert error["message"] == (
            f"Resource '{UNKNOWN_ID}' does not exist or one of its queried reference-property "
            "objects are not present."
        )
        assert error["innerError"]["request-id"] == response.headers["request-id"]


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


def _disable_then_revoke(user_id: str) -> dict[str, Any]:
    return {
        "requests": [
            {
                "id": "1",
                "method": "PATCH",
                "url": f"/users/{user_id}",
                "headers": {"Content-Type": "application/json"},
                "body": {"accountEnabled": False},
            },
            {
                "id": "2",
                "dependsOn": ["1"],
                "method": "POST",
                "url": f"/users/{user_id}/revokeSignInSessions",
                "headers": {"Content-Type": "application/json"},
                "body": {},
            },
        ]
    }


def test_batch_disable_then_revoke(sim: SimulatedGraph, g: Client) -> None:
    response = g.post("/$batch", json=_disable_then_revoke(ALICE_ID))
    assert response.status_code == 200
    assert response.headers["request-id"]
    items = response.json()["responses"]
    assert [i["id"] for i in items] == ["2", "1"]  # not in request order
    by_id = {i["id"]: i for i in items}
    assert by_id["1"]["status"] == 204
    assert by_id["1"]["body"] is None
    assert by_id["2"]["status"] == 200
    assert by_id["2"]["body"]["value"] is True
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


def test_batch_failed_dependency_gives_424(sim: SimulatedGraph, g: Client) -> None:
    response = g.post("/$batch", json=_disable_then_revoke(UNKNOWN_ID))
    assert response.status_code == 200
    by_id = {i["id"]: i for i in response.json()["responses"]}
    assert by_id["1"]["status"] == 404
    assert by_id["1"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert by_id["2"]["status"] == 424
    assert by_id["2"]["body"]["error"]["code"] == "FailedDependency"


def test_batch_item_can_be_throttled_alone(sim: SimulatedGraph, g: Client) -> None:
    sim.inject_fault("PATCH", rf"/users/{ALICE_ID}$", 429, headers={"Retry-After": "7"})
    response = g.post("/$batch", json=_disable_then_revoke(ALICE_ID))
    by_id = {i["id"]: i for i in response.json()["responses"]}
    assert by_id["1"]["status"] == 429
    assert by_id["1"]["headers"]["Retry-After"] == "7"
    assert by_id["1"]["body"]["error"]["code"] == "TooManyRequests"
    assert by_id["2"]["status"] == 424
    assert sim.users[ALICE_ID].account_enabled is True


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (
            {"requests": [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]},
            "limit of 20",
        ),
        (
            {"requests": [{"id": "1", "method": "PATCH", "url": "/users/x", "body": {"a": 1}}]},
            "Content-Type",
        ),
        (
            {
                "requests": [
                    {"id": "1", "method": "GET", "url": "/users"},
                    {"id": "1", "method": "GET", "url": "/users"},
                ]
            },
            "duplicated",
        ),
        (
            {"requests": [{"id": "1", "method": "GET", "url": "/users", "dependsOn": ["9"]}]},
            "depends on",
        ),
    ],
)
def test_batch_rejects_invalid_payloads(
    sim: SimulatedGraph,
    g: Client,
    payload: dict[str, Any],
    fragment: str,
) -> None:
    response = g.post("/$batch", json=payload)
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]
    assert not any(r.via_batch for r in sim.requests)


def test_batch_allows_twenty_requests_and_relative_urls_without_slash(
    sim: SimulatedGraph, g: Client
) -> None:
    payload = {
        "requests": [
            {"id": str(i), "method": "GET", "url": f"users/{ALICE_ID}?$select=id"}
            for i in range(20)
        ]
    }
    response = g.post("/$batch", json=payload)
    assert response.status_code == 200
    items = response.json()["responses"]
    assert len(items) == 20
    assert all(i["status"] == 200 and i["body"]["id"] == ALICE_ID for i in items)


# --------------------------------------------------------------------------- faults


def test_injected_429_with_retry_after_is_returned_once(sim: SimulatedGraph, g: Client) -> None:
    sim.inject_fault("POST", r"/revokeSignInSessions$", 429, headers={"Retry-After": "3"})
    url = f"/users/{ALICE_ID}/revokeSignInSessions"

    throttled = g.post(url)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    error = throttled.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["innerError"]["request-id"] == throttled.headers["request-id"]
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is None
    assert sim.pending_faults == 0

    retried = g.post(url)
    assert retried.status_code == 200
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is not None


def test_injected_faults_are_consumed_in_order(sim: SimulatedGraph, g: Client) -> None:
    url = "/identityProtection/riskyUsers/confirmCompromised"
    # Identity Protection throttles with a 429 that carries no Retry-After.
    sim.inject_fault("POST", "confirmCompromised", 429, times=2)
    sim.inject_fault("*", "riskyUsers", 503, headers={"Retry-After": "1"})
    sim.inject_fault(
        "POST",
        "riskyUsers",
        403,
        body={"error": {"code": "Authorization_RequestDenied", "message": "Nope."}},
    )
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
    sim.clear_faults()
    patched = g.patch(f"/users/{ALICE_ID}", json={"accountEnabled": False})
    assert patched.status_code == 204


# --------------------------------------------------------------------------- lifecycle


def test_temporary_ca_directory_is_removed_on_stop() -> None:
    graph = SimulatedGraph()
    ca_path = graph.ca_path
    assert ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with graph:
        assert graph.authority_host.startswith("https://localhost:")
        assert graph.graph_url == f"https://localhost:{graph.port}/v1.0"
        assert graph.entra.port != graph.port  # the token endpoint is a server of its own
        with graph.make_session() as session:
            response = session.get(f"{graph.authority}/v2.0/.well-known/openid-configuration")
            assert response.status_code == 200
    assert not ca_path.exists()
    with pytest.raises(RuntimeError):
        _ = graph.authority_host
