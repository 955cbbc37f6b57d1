"""A simulated Entra ID token endpoint over TLS (MSAL accepts only an ``https`` authority).

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/discovery/v2.0/keys``;
* ``POST /{tenant}/oauth2/v2.0/token``: client credentials with a secret (form or HTTP Basic), or
  with a certificate assertion when a certificate was registered with
  :meth:`SimulatedEntraToken.add_client_certificate`;
* ``GET /msi/token``: App Service's managed identity endpoint (api-version 2019-08-01).

Errors are Entra's (``AADSTS`` codes). Tokens are opaque random strings, not JWTs; a client
assertion's signature is not verified (only its header thumbprint, ``aud``, ``iss``/``sub`` and
lifetime). :meth:`token_problem` is how a resource server (the simulated Graph) checks a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import ssl
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

from local.http import RecordedRequest, Request, Response, Simulator, TestCA

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TENANT_ID",
    "GRAPH_RESOURCES",
    "GRAPH_SCOPE",
    "SimulatedEntraToken",
    "graph_record",
]

DEFAULT_TENANT_ID = "7c1d5c6e-3f5a-4c2b-9d8e-1a2b3c4d5e6f"
DEFAULT_CLIENT_ID = "0f4e2b7a-9c1d-4e8f-a3b5-6d7c8e9f0a1b"
DEFAULT_CLIENT_SECRET = "sim-graph-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCES = ("https://graph.microsoft.com", GRAPH_APP_ID)
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TOKEN_LIFETIME = 3599
_REDACTED = "***"
_FORM = "application/x-www-form-urlencoded"


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def single_query(raw: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def graph_record(record: RecordedRequest) -> RecordedRequest:
    """Graph's and Entra's record: the Authorization credentials, the managed identity header and
    a form's ``client_secret`` / ``client_assertion`` redacted; the body parsed as JSON, form or
    text (the raw body is not kept); a fresh ``request_id``."""
    headers = record.headers
    if "authorization" in headers:
        scheme = headers["authorization"].strip().partition(" ")[0]
        headers["authorization"] = f"{scheme} {_REDACTED}" if scheme else _REDACTED
    if "x-identity-header" in headers:
        headers["x-identity-header"] = _REDACTED
    raw, record.body, record.query_lists = record.body, b"", {}
    record.request_id = str(uuid.uuid4())
    if raw:
        media, text = media_type(headers.get("content-type", "")), raw.decode("utf-8", "replace")
        if media == "application/json":
            try:
                record.json = json.loads(text)
            except ValueError:
                record.text = text
        elif media == _FORM:
            form = single_query(text)
            for secret_field in ("client_secret", "client_assertion"):
                if secret_field in form:
                    form[secret_field] = _REDACTED
            record.form = form
        else:
            record.text = text
    return record


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _thumbprint(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _parse_basic(authorization: str) -> tuple[str | None, str | None]:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None, None
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


class SimulatedEntraToken(Simulator):
    """Entra ID's token side for one tenant and one app registration, on its own HTTPS port.

    ``tls`` is the CA to serve with (the simulated Graph shares its own); without one a temporary
    CA is made and removed on :meth:`stop`. ``records`` shares another simulator's request log.
    """

    name = "sim-entra-token"

    def __init__(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TestCA | None = None,
        records: Simulator | None = None,
    ) -> None:
        self._own_ca = tls is None
        super().__init__(host=host, port=port, tls=tls or TestCA(prefix="sim-entra"))
        if records is not None:
            self._requests, self._lock = records._requests, records._lock
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        # App Service managed identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER).
        self.identity_header = secrets.token_urlsafe(16)
        self.graph_url = "https://graph.microsoft.com/v1.0"  # for the discovery document
        self._tokens: dict[str, float] = {}
        self._token_count = 0
        self._cert_thumbprints: set[str] = set()

    def stop(self) -> None:
        super().stop()
        if self._own_ca and self._tls is not None:
            self._tls.remove()

    @property
    def ca_path(self) -> str:
        assert self._tls is not None
        return str(self._tls.ca_path)

    # -- URLs and state ----------------------------------------------------------------------

    @property
    def authority_host(self) -> str:
        """``https://localhost:PORT``: give ``f"{authority_host}/{tenant_id}"`` to MSAL."""
        return f"https://localhost:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def identity_endpoint(self) -> str:
        """Set ``IDENTITY_ENDPOINT`` to this and ``IDENTITY_HEADER`` to :attr:`identity_header`
        for azure-identity."""
        return f"{self.authority_host}/msi/token"

    @property
    def token_requests(self) -> int:
        """How many access tokens were issued."""
        with self._lock:
            return self._token_count

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token issued (for tests that look for leaks)."""
        with self._lock:
            return list(self._tokens)

    def invalidate_tokens(self) -> None:
        """Make every issued token expired; new tokens work."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    def token_problem(self, token: str) -> str | None:
        """Why a resource server refuses this bearer token (None: it is valid)."""
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            if "." not in token:
                return (
                    "IDX14100: JWT is not well formed, there are no dots (.). The token needs "
                    "to be in JWS or JWE Compact Serialization Format."
                )
            return "Access token validation failure. Invalid audience."
        if expiry < time.monotonic():
            return "Lifetime validation failed, the token is expired."
        return None

    def add_client_certificate(self, certificate_pem: str | bytes) -> None:
        """Accept client assertions whose ``x5t#S256``/``x5t`` header matches this certificate."""
        pem = certificate_pem.decode("ascii") if isinstance(certificate_pem, bytes) else (
            certificate_pem
        )  # fmt: skip
        der = ssl.PEM_cert_to_DER_cert(pem)
        with self._lock:
            self._cert_thumbprints.add(_thumbprint(hashlib.sha256(der).digest()))
            self._cert_thumbprints.add(_thumbprint(hashlib.sha1(der).digest()))  # noqa: S324

    def _issue(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + _TOKEN_LIFETIME
            self._token_count += 1
        return token

    # -- serving -----------------------------------------------------------------------------

    def _record(self, request: Request) -> RecordedRequest:
        return graph_record(super()._record(request))

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        correlation = record.headers.get("client-request-id") or record.request_id
        status, body = self._route(request, record, correlation)
        reply = Response(json.dumps(body), status, content_type="application/json; charset=utf-8")
        reply.headers.update(
            {
                "x-ms-request-id": record.request_id,
                "client-request-id": correlation,
                "Cache-Control": "no-store, no-cache",
                "Pragma": "no-cache",
            }
        )
        return reply

    def _route(
        self, request: Request, record: RecordedRequest, correlation: str
    ) -> tuple[int, dict[str, Any]]:
        path, method = record.path, request.method
        if m := re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path):
            if method != "GET":
                return 405, {"error": "invalid_request"}
            if unquote(m.group(1)).lower() != self.tenant_id.lower():
                return 400, self._unknown_tenant("invalid_tenant", unquote(m.group(1)), correlation)
            return 200, self._openid_configuration()
        if m := re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path):
            if method != "POST":
                return 405, {"error": "invalid_request"}
            return self._token(unquote(m.group(1)), request, correlation)
        if path == "/msi/token":
            return self._managed_identity_token(request, record)
        if re.fullmatch(r"/([^/]+)/discovery/v2\.0/keys", path) and method == "GET":
            return 200, {"keys": []}
        return 404, {"error": "not_found", "error_description": path}

    def _openid_configuration(self) -> dict[str, Any]:
        base = self.authority
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.authority_host}/{self.tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.graph_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": self.graph_url.split("/")[2],
            "rbac_url": "https://pas.windows.net",
        }

    def _error(self, error: str, code: int, description: str, correlation: str) -> dict[str, Any]:
        trace_id = str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation} Timestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation,
            "error_uri": f"{self.authority_host}/error?code={code}",
        }

    def _unknown_tenant(self, error: str, tenant: str, correlation: str) -> dict[str, Any]:
        return self._error(
            error,
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
            "are signing into the correct cloud.",
            correlation,
        )

    def _token(self, tenant: str, request: Request, correlation: str) -> tuple[int, dict[str, Any]]:
        def fail(status: int, error: str, code: int, description: str) -> tuple[int, Any]:
            return status, self._error(error, code, description, correlation)

        def missing(name: str) -> tuple[int, Any]:
            text = f"The request body must contain the following parameter: '{name}'."
            return fail(400, "invalid_request", 900144, text)

        if tenant.lower() != self.tenant_id.lower():
            return 400, self._unknown_tenant("invalid_request", tenant, correlation)
        if media_type(request.headers.get("Content-Type", "")) != _FORM:
            return missing("grant_type")
        form = single_query(request.get_data().decode("utf-8", errors="replace"))
        basic_id, basic_secret = _parse_basic(request.headers.get("Authorization", ""))
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id") or basic_id or ""
        client_secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        scope = form.get("scope", "")
        if not grant_type:
            return missing("grant_type")
        if grant_type != "client_credentials":
            return fail(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'. This simulator "
                "supports only client_credentials.",
            )
        if not client_id:
            return missing("client_id")
        if client_id.lower() != self.client_id.lower():
            return fail(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. "
                "You may have sent your authentication request to the wrong tenant.",
            )
        if not scope:
            return missing("scope")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return fail(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = scopes[0].removesuffix("/.default").rstrip("/")
        if resource.lower() not in GRAPH_RESOURCES:
            return fail(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.tenant_id}. This can happen if the application has not been installed by "
                "the administrator of the tenant or consented to by any user in the tenant.",
            )
        if assertion is not None:
            problem = self._check_assertion(form.get("client_assertion_type", ""), assertion)
            if problem is not None:
                return fail(401, "invalid_client", *problem)
        elif client_secret is None:
            return fail(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        elif not secrets.compare_digest(client_secret, self.client_secret):
            return fail(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{self.client_id}'.",
            )
        return 200, {
            "token_type": "Bearer",
            "expires_in": _TOKEN_LIFETIME,
            "ext_expires_in": _TOKEN_LIFETIME,
            "access_token": self._issue(),
        }

    def _managed_identity_token(
        self, request: Request, record: RecordedRequest
    ) -> tuple[int, dict[str, Any]]:
        if request.method != "GET":
            return 405, {"error": "invalid_request"}
        offered = request.headers.get("X-Identity-Header", "")
        if not secrets.compare_digest(offered, self.identity_header):
            return 401, {"error": "unauthorized", "error_description": "bad X-IDENTITY-HEADER"}
        resource = record.query.get("resource", "").removesuffix("/.default").rstrip("/")
        if resource not in GRAPH_RESOURCES:
            return 400, {
                "error": "invalid_resource",
                "error_description": f"unknown resource {resource}",
            }
        return 200, {
            "access_token": self._issue(),
            "expires_on": str(int(time.time()) + _TOKEN_LIFETIME),
            "resource": record.query.get("resource", ""),
            "token_type": "Bearer",
            "client_id": record.query.get("client_id", self.client_id),
        }

    def _check_assertion(self, assertion_type: str, assertion: str) -> tuple[int, str] | None:
        """Validate a client assertion's shape and claims; return (AADSTS code, text) on error."""
        if assertion_type != _JWT_BEARER:
            return 700023, f"Invalid client_assertion_type '{assertion_type}'."
        try:
            header_b64, payload_b64, _signature = assertion.split(".")
            header = json.loads(_b64url_decode(header_b64))
            claims = json.loads(_b64url_decode(payload_b64))
        except (ValueError, binascii.Error):
            return 50027, "JWT token is invalid or malformed."
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return 50027, "JWT token is invalid or malformed."
        with self._lock:
            known = set(self._cert_thumbprints)
        offered = {
            str(header.get(name, "")).rstrip("=") for name in ("x5t#S256", "x5t") if name in header
        }
        if not offered & known:
            return (
                700027,
                "Client assertion failed signature validation. (Reason - The key was not found.)",
            )
        if claims.get("aud") != self.token_endpoint:
            return (
                700212,
                f"Client assertion audience claim does not match '{self.token_endpoint}'.",
            )
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return 700021, "Client assertion application identifier doesn't match 'client_id'."
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            return 50027, "JWT token is invalid or malformed."
        if exp < now or nbf > now + 300:
            return 700024, "Client assertion is not within its valid time range."
        return None
