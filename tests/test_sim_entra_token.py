"""The simulated Entra ID token endpoint (local/sim_entra_token.py), on its own, driven by MSAL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msal
import pytest
import requests
import trustme

from local.sim_entra_token import GRAPH_SCOPE, SimulatedEntraToken

CREDENTIALS = {"grant_type": "client_credentials", "scope": GRAPH_SCOPE}
MSI = {"api-version": "2019-08-01", "resource": "https://graph.microsoft.com"}


@pytest.fixture
def entra() -> Iterator[SimulatedEntraToken]:
    with SimulatedEntraToken() as sim:
        yield sim


@pytest.fixture
def http(entra: SimulatedEntraToken) -> Iterator[requests.Session]:
    with entra.make_session() as session:
        yield session


def app(
    entra: SimulatedEntraToken, http: requests.Session, credential: Any = None, **kw: str
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        kw.get("client_id", entra.client_id),
        authority=kw.get("authority", entra.authority),
        client_credential=entra.client_secret if credential is None else credential,
        instance_discovery=False,
        http_client=http,
    )


def test_msal_gets_a_token_and_the_secret_is_recorded_redacted(
    entra: SimulatedEntraToken, http: requests.Session
) -> None:
    first = app(entra, http).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert (first["token_source"], first["token_type"]) == ("identity_provider", "Bearer")
    assert first["expires_in"] > 3000 and entra.token_requests == 1
    (post,) = [r for r in entra.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert (post.path, post.status) == (f"/{entra.tenant_id}/oauth2/v2.0/token", 200)
    assert post.form is not None
    assert post.form["grant_type"] == "client_credentials"
    assert (post.form["client_id"], post.form["scope"]) == (entra.client_id, GRAPH_SCOPE)
    assert post.form["client_secret"] == "***"  # recorded, but redacted
    assert "client-request-id" in post.headers  # MSAL's correlation id
    assert entra.issued_tokens == [first["access_token"]]
    assert entra.token_problem(first["access_token"]) is None
    entra.invalidate_tokens()
    assert "expired" in (entra.token_problem(first["access_token"]) or "")


@pytest.mark.parametrize(
    ("kw", "error", "code"),
    [
        ({"credential": "not-the-secret"}, "invalid_client", 7000215),
        ({"client_id": "aaaaaaaa-0000-0000-0000-000000000000"}, "unauthorized_client", 700016),
        ({"scope": "https://graph.microsoft.com/User.Read.All"}, "invalid_scope", 1002012),
        ({"scope": "https://management.azure.com/.default"}, "invalid_resource", 500011),
    ],
)
def test_msal_errors_are_entras(
    entra: SimulatedEntraToken, http: requests.Session, kw: dict[str, str], error: str, code: int
) -> None:
    scope = kw.pop("scope", GRAPH_SCOPE)
    result = app(entra, http, kw.pop("credential", None), **kw).acquire_token_for_client([scope])
    assert (result["error"], result["error_codes"]) == (error, [code])
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    assert "access_token" not in result and entra.token_requests == 0
    assert [r.status for r in entra.requests if r.method == "POST"] == [
        400 if code != 7000215 else 401
    ]


def test_graph_app_id_scope_is_accepted(entra: SimulatedEntraToken, http: requests.Session) -> None:
    scopes = ["00000003-0000-0000-c000-000000000000/.default"]
    assert "access_token" in app(entra, http).acquire_token_for_client(scopes=scopes)


def test_unknown_tenant_and_the_openid_configuration(
    entra: SimulatedEntraToken, http: requests.Session
) -> None:
    response = http.get(f"{entra.authority_host}/nope/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["error_codes"]) == ("invalid_tenant", [90002])
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        app(entra, http, authority=f"{entra.authority_host}/contoso-nope")
    config = http.get(f"{entra.authority}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{entra.authority}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{entra.authority}/oauth2/v2.0/authorize"
    assert config["issuer"] == f"{entra.authority}/v2.0"
    assert config["jwks_uri"].startswith(entra.authority_host)
    assert http.get(config["jwks_uri"]).json() == {"keys": []}


def test_form_errors(entra: SimulatedEntraToken, http: requests.Session) -> None:
    missing = http.post(entra.token_endpoint, data={**CREDENTIALS, "client_id": entra.client_id})
    assert (missing.status_code, missing.json()["error_codes"]) == (401, [7000218])
    grant = http.post(entra.token_endpoint, data={"grant_type": "password"})
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")


def test_msal_with_client_certificate(entra: SimulatedEntraToken, http: requests.Session) -> None:
    cert = trustme.CA().issue_cert("vigil-graph-client", key_type=trustme.KeyType.RSA)
    credential = {
        "private_key": cert.private_key_pem.bytes().decode(),
        "public_certificate": cert.cert_chain_pems[0].bytes().decode(),
    }
    rejected = app(entra, http, credential).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert (rejected["error"], rejected["error_codes"]) == ("invalid_client", [700027])
    entra.add_client_certificate(cert.cert_chain_pems[0].bytes())
    result = app(entra, http, credential).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["token_source"] == "identity_provider", result
    post = [r for r in entra.requests if r.method == "POST"][-1]
    assert post.form is not None and post.form["client_assertion"] == "***"
    assert post.form["client_assertion_type"].endswith("jwt-bearer")


def test_managed_identity_endpoint(entra: SimulatedEntraToken, http: requests.Session) -> None:
    url, header = entra.identity_endpoint, {"X-IDENTITY-HEADER": entra.identity_header}
    assert http.get(url, params=MSI, headers={"X-IDENTITY-HEADER": "x"}).status_code == 401
    vault = {**MSI, "resource": "https://vault.azure.net"}
    assert http.get(url, params=vault, headers=header).status_code == 400
    resp = http.get(url, params=MSI, headers=header)
    assert resp.status_code == 200 and resp.json()["token_type"] == "Bearer"
    assert entra.token_problem(resp.json()["access_token"]) is None
    (recorded,) = [r for r in entra.requests if r.path == "/msi/token" and r.status == 200]
    assert recorded.headers["x-identity-header"] == "***"


def test_untrusted_client_cannot_connect_and_the_ca_is_removed_on_stop() -> None:
    entra = SimulatedEntraToken()
    ca_path = entra.ca_path
    with entra, requests.Session() as session:
        session.trust_env = False
        discovery = f"{entra.authority}/v2.0/.well-known/openid-configuration"
        with pytest.raises(requests.exceptions.SSLError):
            session.get(discovery)
        # The server keeps serving trusted clients after a failed handshake.
        assert session.get(discovery, verify=str(ca_path)).ok
    with pytest.raises(RuntimeError):
        _ = entra.authority_host
    assert not ca_path.exists()
