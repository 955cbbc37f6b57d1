"""Tests for the simulated Microsoft Graph + Entra token endpoint (local/sim_graph.py).

The token path is exercised with the real MSAL library against the simulator over TLS.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
import trustme

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


@pytest.fixture
def token(sim: SimulatedGraph, http: requests.Session) -> str:
    result = _app(sim, http).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    access_token = result["access_token"]
    assert isinstance(access_token, str)
    return access_token


def _auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


# --------------------------------------------------------------------------- Entra / MSAL


def test_msal_first_call_hits_identity_provider_then_cache(
    sim: SimulatedGraph, http: requests.Session
) -> None:
    app = _app(sim, http)
    # MSAL performs OIDC discovery while constructing the app, and nothing else.
    discovery_path = f"/{sim.tenant_id}/v2.0/.well-known/openid-configuration"
    assert [(r.method, r.path) for r in sim.requests] == [("GET", discovery_path)]

    first = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert first["token_source"] == "identity_provider"
    assert first["token_type"] == "Bearer"
    assert first["expires_in"] > 3000
    assert sim.token_requests == 1

    second = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert sim.token_requests == 1
    token_posts = [r for r in sim.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(token_posts) == 1

    post = token_posts[0]
    assert post.path == f"/{sim.tenant_id}/oauth2/v2.0/token"
    assert post.status == 200
    assert post.form is not None
    assert post.form["grant_type"] == "client_credentials"
    assert post.form["client_id"] == sim.client_id
    assert post.form["scope"] == GRAPH_SCOPE
    assert post.form["client_secret"] == "***"  # recorded, but redacted
    assert "client-request-id" in post.headers  # MSAL's correlation id


def test_token_is_accepted_by_graph(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    response = http.get(f"{sim.graph_url}/users/{ALICE_ID}", headers=_auth(token))
    assert response.status_code == 200
    assert response.json()["userPrincipalName"] == "alice@contoso.com"


def test_msal_wrong_secret_gives_invalid_client(
    sim: SimulatedGraph, http: requests.Session
) -> None:
    result = _app(sim, http, credential="not-the-secret").acquire_token_for_client(
        scopes=[GRAPH_SCOPE]
    )
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "access_token" not in result
    assert sim.token_requests == 0
    assert [r.status for r in sim.requests if r.method == "POST"] == [401]


def test_msal_unknown_client_gives_unauthorized_client(
    sim: SimulatedGraph, http: requests.Session
) -> None:
    app = msal.ConfidentialClientApplication(
        "aaaaaaaa-0000-0000-0000-000000000000",
        authority=sim.authority,
        client_credential=sim.client_secret,
        instance_discovery=False,
        http_client=http,
    )
    result = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


@pytest.mark.parametrize(
    ("scope", "error", "code"),
    [
        ("https://graph.microsoft.com/User.Read.All", "invalid_scope", 1002012),
        ("https://management.azure.com/.default", "invalid_resource", 500011),
    ],
)
def test_msal_bad_scope(
    sim: SimulatedGraph, http: requests.Session, scope: str, error: str, code: int
) -> None:
    result = _app(sim, http).acquire_token_for_client(scopes=[scope])
    assert result["error"] == error
    assert result["error_codes"] == [code]
    assert sim.token_requests == 0


def test_graph_app_id_scope_is_accepted(sim: SimulatedGraph, http: requests.Session) -> None:
    result = _app(sim, http).acquire_token_for_client(
        scopes=["00000003-0000-0000-c000-000000000000/.default"]
    )
    assert "access_token" in result


def test_unknown_tenant(sim: SimulatedGraph, http: requests.Session) -> None:
    response = http.get(f"{sim.authority_host}/contoso-nope/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert response.json()["error_codes"] == [90002]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            sim.client_id,
            authority=f"{sim.authority_host}/contoso-nope",
            client_credential=sim.client_secret,
            instance_discovery=False,
            http_client=http,
        )


def test_openid_configuration_points_at_the_simulator(
    sim: SimulatedGraph, http: requests.Session
) -> None:
    config = http.get(f"{sim.authority}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{sim.authority}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{sim.authority}/oauth2/v2.0/authorize"
    assert config["issuer"] == f"{sim.authority}/v2.0"
    assert config["jwks_uri"].startswith(sim.authority_host)
    assert http.get(config["jwks_uri"]).json() == {"keys": []}


def test_client_secret_basic_and_form_errors(sim: SimulatedGraph, http: requests.Session) -> None:
    basic = base64.b64encode(f"{sim.client_id}:{sim.client_secret}".encode()).decode()
    ok = http.post(
        sim.token_endpoint,
        data={"grant_type": "client_credentials", "scope": GRAPH_SCOPE},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert ok.status_code == 200
    assert set(ok.json()) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert ok.json()["expires_in"] == 3599

    missing = http.post(
        sim.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": sim.client_id, "scope": GRAPH_SCOPE},
    )
    assert missing.status_code == 401
    assert missing.json()["error_codes"] == [7000218]

    grant = http.post(sim.token_endpoint, data={"grant_type": "password"})
    assert grant.status_code == 400
    assert grant.json()["error"] == "unsupported_grant_type"

    recorded = [r for r in sim.requests if r.method == "POST"]
    assert recorded[0].headers["authorization"] == "Basic ***"


def test_msal_with_client_certificate(sim: SimulatedGraph, http: requests.Session) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("vigil-graph-client", key_type=trustme.KeyType.RSA)
    credential = {
        "private_key": cert.private_key_pem.bytes().decode(),
        "public_certificate": cert.cert_chain_pems[0].bytes().decode(),
    }

    rejected = _app(sim, http, credential).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert rejected["error"] == "invalid_client"
    assert rejected["error_codes"] == [700027]

    sim.add_client_certificate(cert.cert_chain_pems[0].bytes())
    result = _app(sim, http, credential).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["token_source"] == "identity_provider", result
    post = [r for r in sim.requests if r.method == "POST"][-1]
    assert post.form is not None
    assert post.form["client_assertion"] == "***"
    assert post.form["client_assertion_type"].endswith("jwt-bearer")


# --------------------------------------------------------------------------- Graph


def test_revoke_sign_in_sessions_returns_200_with_known_issue_body(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is None
    response = http.post(
        f"{sim.graph_url}/users/{ALICE_ID}/revokeSignInSessions", headers=_auth(token)
    )
    assert response.status_code == 200
    assert response.json() == {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
        "value": True,
    }
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is not None

    by_upn = http.post(
        f"{sim.graph_url}/users/BOB@Contoso.com/revokeSignInSessions", headers=_auth(token)
    )
    assert by_upn.status_code == 200
    assert sim.users[BOB_ID].sign_in_sessions_valid_from is not None


def test_patch_disables_account(sim: SimulatedGraph, http: requests.Session, token: str) -> None:
    url = f"{sim.graph_url}/users/{ALICE_ID}"
    response = http.patch(url, json={"accountEnabled": False}, headers=_auth(token))
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
    assert token not in repr(sim.requests)

    no_content_type = http.patch(url, data=b'{"accountEnabled": true}', headers=_auth(token))
    assert no_content_type.status_code == 400
    assert sim.users[ALICE_ID].account_enabled is False

    not_bool = http.patch(url, json={"accountEnabled": "no"}, headers=_auth(token))
    assert not_bool.status_code == 400
    assert not_bool.json()["error"]["code"] == "Request_BadRequest"

    enable = http.patch(url, json={"accountEnabled": True}, headers=_auth(token))
    assert enable.status_code == 204
    assert sim.users[ALICE_ID].account_enabled is True


def test_get_user_by_id_or_upn_with_select(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    full = http.get(f"{sim.graph_url}/users/{BOB_ID}", headers=_auth(token)).json()
    assert full["id"] == BOB_ID
    assert full["onPremisesSyncEnabled"] is True
    assert full["accountEnabled"] is True

    selected = http.get(
        f"{sim.graph_url}/users/ALICE@contoso.com",
        params={"$select": "id,accountEnabled,onPremisesSyncEnabled"},
        headers=_auth(token),
    )
    assert selected.status_code == 200
    body = selected.json()
    assert body.pop("@odata.context").endswith(
        "#users(id,accountEnabled,onPremisesSyncEnabled)/$entity"
    )
    assert body == {"id": ALICE_ID, "accountEnabled": True, "onPremisesSyncEnabled": False}

    bad_select = http.get(
        f"{sim.graph_url}/users/{ALICE_ID}",
        params={"$select": "acountEnabled"},
        headers=_auth(token),
    )
    assert bad_select.status_code == 400


def test_filter_users_by_mail_or_upn(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    by_mail = http.get(
        f"{sim.graph_url}/users",
        params={"$filter": "mail eq 'Bob.Smith@contoso.com'", "$select": "id,mail"},
        headers=_auth(token),
    )
    assert by_mail.status_code == 200
    assert by_mail.json()["value"] == [{"id": BOB_ID, "mail": "bob.smith@contoso.com"}]

    by_upn = http.get(
        f"{sim.graph_url}/users",
        params={"$filter": "userPrincipalName eq 'alice@contoso.com'"},
        headers=_auth(token),
    )
    assert [u["id"] for u in by_upn.json()["value"]] == [ALICE_ID]

    none = http.get(
        f"{sim.graph_url}/users",
        params={"$filter": "mail eq 'nobody@contoso.com'"},
        headers=_auth(token),
    )
    assert none.json()["value"] == []


def test_send_mail_is_accepted_and_recorded(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    message = {
        "subject": "Vigil: activity blocked",
        "body": {"contentType": "HTML", "content": "<p>Blocked.</p>"},
        "toRecipients": [{"emailAddress": {"address": "alice@contoso.com"}}],
    }
    response = http.post(
        f"{sim.graph_url}/users/vigil@contoso.com/sendMail",
        json={"message": message, "saveToSentItems": False},
        headers=_auth(token),
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

    no_recipients = http.post(
        f"{sim.graph_url}/users/{SENDER_ID}/sendMail",
        json={"message": {"subject": "x", "toRecipients": []}},
        headers=_auth(token),
    )
    assert no_recipients.status_code == 400
    assert no_recipients.json()["error"]["code"] == "ErrorInvalidRecipients"

    malformed = http.post(
        f"{sim.graph_url}/users/{SENDER_ID}/sendMail",
        json={"subject": "no message wrapper"},
        headers=_auth(token),
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "ErrorInvalidRequest"
    assert len(sim.sent_mail) == 1


def test_sent_items_keep_a_sent_mail_under_its_internet_message_id(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    message = {
        "subject": "Vigil security notice",
        "body": {"contentType": "HTML", "content": "<p>Seen.</p>"},
        "toRecipients": [{"emailAddress": {"address": "alice@contoso.com"}}],
        "internetMessageId": "<vigil.abc@contoso.com>",
    }
    url = f"{sim.graph_url}/users/vigil@contoso.com"
    sent = http.post(f"{url}/sendMail", json={"message": message}, headers=_auth(token))
    assert sent.status_code == 202  # saveToSentItems defaults to true
    unsaved = {**message, "internetMessageId": "<vigil.not-kept@contoso.com>"}
    http.post(
        f"{url}/sendMail", json={"message": unsaved, "saveToSentItems": False}, headers=_auth(token)
    )
    bad = {**message, "internetMessageId": "no-angle-brackets"}
    refused = http.post(f"{url}/sendMail", json={"message": bad}, headers=_auth(token))
    assert refused.status_code == 400

    def find(message_id: str) -> list[dict[str, object]]:
        got = http.get(
            f"{url}/mailFolders/sentitems/messages",
            params={
                "$filter": f"internetMessageId eq '{message_id}'",
                "$select": "id,internetMessageId",
            },
            headers=_auth(token),
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
    denied = http.get(f"{url}/mailFolders/sentitems/messages", headers=_auth(token))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"


def test_a_hook_runs_after_the_call_and_before_the_answer(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    seen: list[tuple[str, bool]] = []

    def hook(request: object) -> None:
        user = sim.find_user("alice@contoso.com")
        assert user is not None
        seen.append((getattr(request, "path", ""), user.sign_in_sessions_valid_from is not None))

    sim.before_answer("POST", "/revokeSignInSessions$", hook)
    url = f"{sim.graph_url}/users/alice@contoso.com/revokeSignInSessions"
    assert http.post(url, headers=_auth(token)).status_code == 200
    assert http.post(url, headers=_auth(token)).status_code == 200
    assert seen == [("/v1.0/users/alice@contoso.com/revokeSignInSessions", True)]  # once, after


def test_risky_users_confirm_and_dismiss(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    base = f"{sim.graph_url}/identityProtection/riskyUsers"
    confirm = http.post(
        f"{base}/confirmCompromised", json={"userIds": [ALICE_ID, BOB_ID]}, headers=_auth(token)
    )
    assert confirm.status_code == 204
    assert sim.users[ALICE_ID].risk_state == "confirmedCompromised"
    assert sim.users[BOB_ID].risk_state == "confirmedCompromised"
    risky = http.get(f"{base}/{ALICE_ID}", headers=_auth(token)).json()
    assert (risky["riskState"], risky["riskLevel"]) == ("confirmedCompromised", "high")

    dismiss = http.post(f"{base}/dismiss", json={"userIds": [ALICE_ID]}, headers=_auth(token))
    assert dismiss.status_code == 204
    assert sim.users[ALICE_ID].risk_state == "dismissed"

    by_upn = http.post(  # userIds are object ids
        f"{base}/dismiss", json={"userIds": ["bob@contoso.com"]}, headers=_auth(token)
    )
    assert by_upn.status_code == 404
    assert sim.users[BOB_ID].risk_state == "confirmedCompromised"


def test_identity_protection_limit_answers_429_without_retry_after(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    sim.limit_identity_protection(0.001)  # one call per 1000 s: the second one is throttled
    url = f"{sim.graph_url}/identityProtection/riskyUsers/confirmCompromised"
    first = http.post(url, json={"userIds": [ALICE_ID]}, headers=_auth(token))
    second = http.post(url, json={"userIds": [BOB_ID]}, headers=_auth(token))
    assert (first.status_code, second.status_code) == (204, 429)
    assert "Retry-After" not in second.headers
    assert second.json()["error"]["code"] == "TooManyRequests"
    assert sim.users[BOB_ID].risk_state == "none"
    sim.limit_identity_protection(None)
    assert http.post(url, json={"userIds": [BOB_ID]}, headers=_auth(token)).status_code == 204


def test_managed_identity_endpoint_issues_graph_tokens(
    sim: SimulatedGraph, http: requests.Session
) -> None:
    params = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}
    refused = http.get(sim.identity_endpoint, params=params, headers={"X-IDENTITY-HEADER": "x"})
    assert refused.status_code == 401
    wrong = http.get(
        sim.identity_endpoint,
        params={**params, "resource": "https://vault.azure.net"},
        headers={"X-IDENTITY-HEADER": sim.identity_header},
    )
    assert wrong.status_code == 400
    resp = http.get(
        sim.identity_endpoint, params=params, headers={"X-IDENTITY-HEADER": sim.identity_header}
    )
    assert resp.status_code == 200 and resp.json()["token_type"] == "Bearer"
    token = resp.json()["access_token"]
    me = http.get(f"{sim.graph_url}/users/{ALICE_ID}", headers=_auth(token))
    assert me.status_code == 200
    (recorded,) = [r for r in sim.requests if r.path == "/msi/token" and r.status == 200]
    assert recorded.headers["x-identity-header"] == "***"


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


def test_invalidated_token_gives_401(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    sim.invalidate_tokens()
    response = http.get(f"{sim.graph_url}/users/{ALICE_ID}", headers=_auth(token))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_unknown_user_gives_404(sim: SimulatedGraph, http: requests.Session, token: str) -> None:
    for method, suffix in [("GET", ""), ("POST", "/revokeSignInSessions")]:
        response = http.request(
            method, f"{sim.graph_url}/users/{UNKNOWN_ID}{suffix}", headers=_auth(token)
        )
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "Request_ResourceNotFound"
        assert error["message"] == (
            f"Resource '{UNKNOWN_ID}' does not exist or one of its queried reference-property "
            "objects are not present."
        )
        assert error["innerError"]["request-id"] == response.headers["request-id"]


def test_request_id_headers_on_every_graph_response(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    response = http.get(f"{sim.graph_url}/users/{ALICE_ID}", headers=_auth(token))
    assert response.headers["request-id"]
    # Without a client-request-id, Graph reports the request-id in both headers.
    assert response.headers["client-request-id"] == response.headers["request-id"]
    echoed = http.get(
        f"{sim.graph_url}/users/{ALICE_ID}", headers=_auth(token, **{"client-request-id": "abc"})
    )
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


def test_batch_disable_then_revoke(sim: SimulatedGraph, http: requests.Session, token: str) -> None:
    response = http.post(
        f"{sim.graph_url}/$batch", json=_disable_then_revoke(ALICE_ID), headers=_auth(token)
    )
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


def test_batch_failed_dependency_gives_424(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    response = http.post(
        f"{sim.graph_url}/$batch", json=_disable_then_revoke(UNKNOWN_ID), headers=_auth(token)
    )
    assert response.status_code == 200
    by_id = {i["id"]: i for i in response.json()["responses"]}
    assert by_id["1"]["status"] == 404
    assert by_id["1"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert by_id["2"]["status"] == 424
    assert by_id["2"]["body"]["error"]["code"] == "FailedDependency"


def test_batch_item_can_be_throttled_alone(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    sim.inject_fault("PATCH", rf"/users/{ALICE_ID}$", 429, headers={"Retry-After": "7"})
    response = http.post(
        f"{sim.graph_url}/$batch", json=_disable_then_revoke(ALICE_ID), headers=_auth(token)
    )
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
    http: requests.Session,
    token: str,
    payload: dict[str, Any],
    fragment: str,
) -> None:
    response = http.post(f"{sim.graph_url}/$batch", json=payload, headers=_auth(token))
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]
    assert not any(r.via_batch for r in sim.requests)


def test_batch_allows_twenty_requests_and_relative_urls_without_slash(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    payload = {
        "requests": [
            {"id": str(i), "method": "GET", "url": f"users/{ALICE_ID}?$select=id"}
            for i in range(20)
        ]
    }
    response = http.post(f"{sim.graph_url}/$batch", json=payload, headers=_auth(token))
    assert response.status_code == 200
    items = response.json()["responses"]
    assert len(items) == 20
    assert all(i["status"] == 200 and i["body"]["id"] == ALICE_ID for i in items)


# --------------------------------------------------------------------------- faults


def test_injected_429_with_retry_after_is_returned_once(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    sim.inject_fault("POST", r"/revokeSignInSessions$", 429, headers={"Retry-After": "3"})
    url = f"{sim.graph_url}/users/{ALICE_ID}/revokeSignInSessions"

    throttled = http.post(url, headers=_auth(token))
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    error = throttled.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["innerError"]["request-id"] == throttled.headers["request-id"]
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is None
    assert sim.pending_faults == 0

    retried = http.post(url, headers=_auth(token))
    assert retried.status_code == 200
    assert sim.users[ALICE_ID].sign_in_sessions_valid_from is not None


def test_injected_faults_are_consumed_in_order(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    url = f"{sim.graph_url}/identityProtection/riskyUsers/confirmCompromised"
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
        response = http.post(url, json={"userIds": [ALICE_ID]}, headers=_auth(token))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert "Retry-After" not in response.headers
        if response.status_code == 403:
            error = response.json()["error"]
            assert error["code"] == "Authorization_RequestDenied"
            assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert statuses == [429, 429, 503, 403, 204]


def test_fault_does_not_match_other_paths_or_methods(
    sim: SimulatedGraph, http: requests.Session, token: str
) -> None:
    sim.inject_fault("PATCH", "/users/", 504)
    assert http.get(f"{sim.graph_url}/users/{ALICE_ID}", headers=_auth(token)).status_code == 200
    assert sim.pending_faults == 1
    sim.clear_faults()
    patched = http.patch(
        f"{sim.graph_url}/users/{ALICE_ID}", json={"accountEnabled": False}, headers=_auth(token)
    )
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


def test_untrusted_client_cannot_connect(sim: SimulatedGraph) -> None:
    session = requests.Session()
    session.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{sim.authority}/v2.0/.well-known/openid-configuration")
    # The server keeps serving trusted clients after a failed handshake.
    with sim.make_session() as trusted:
        assert trusted.get(f"{sim.authority}/v2.0/.well-known/openid-configuration").ok
