"""A simulated Entra ID token endpoint over TLS (MSAL accepts only an ``https`` authority):
OpenID discovery and keys, client credentials with a secret or (after
:meth:`SimulatedEntraToken.add_client_certificate`) a certificate assertion, and App Service's
managed identity endpoint (``GET /msi/token``). Errors are Entra's (``AADSTS`` codes). Tokens are
opaque random strings; an assertion's signature is not verified (only its header thumbprint,
``aud``, ``iss``/``sub`` and lifetime). :meth:`token_problem` is how the simulated Graph checks one.
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

from local.http import RecordedRequest, Request, Response, TestCA, TlsSimulator

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
_JSON = "application/json; charset=utf-8"
_BAD_JWT = (50027, "JWT token is invalid or malformed.")


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
            for secret_field in ("client_secret", "client_assertion") & form.keys():
                form[secret_field] = _REDACTED
            record.form = form
        else:
            record.text = text
    return record


def _b64url_json(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def _missing(name: str) -> tuple[int, str, int, str]:
    text = f"The request body must contain the following parameter: '{name}'."
    return 400, "invalid_request", 900144, text


def _thumbprints(der: bytes) -> set[str]:
    digests = (hashlib.sha256(der).digest(), hashlib.sha1(der).digest())  # noqa: S324 (x5t)
    return {base64.urlsafe_b64encode(d).decode("ascii").rstrip("=") for d in digests}


class SimulatedEntraToken(TlsSimulator):
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
        records: TlsSimulator | None = None,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls)
        if records is not None:
            self._requests, self._lock = records._requests, records._lock
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        # App Service managed identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER).
        self.identity_header = secrets.token_urlsafe(16)
        self._tokens: dict[str, float] = {}  # every token issued -> expiry (monotonic)
        self._cert_thumbprints: set[str] = set()

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
            return len(self._tokens)

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token issued (for tests that look for leaks)."""
        with self._lock:
            return list(self._tokens)

    def invalidate_tokens(self) -> None:
        """Make every issued token expired; new tokens work."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def token_problem(self, token: str) -> str | None:
        """Why a resource server refuses this bearer token (None: it is valid)."""
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None and "." not in token:
            return (
                "IDX14100: JWT is not well formed, there are no dots (.). The token needs to be "
                "in JWS or JWE Compact Serialization Format."
            )
        if expiry is None:
            return "Access token validation failure. Invalid audience."
        if expiry < time.monotonic():
            return "Lifetime validation failed, the token is expired."
        return None

    def add_client_certificate(self, certificate_pem: str | bytes) -> None:
        """Accept client assertions whose ``x5t#S256``/``x5t`` header matches this certificate."""
        pem = certificate_pem if isinstance(certificate_pem, str) else certificate_pem.decode()
        with self._lock:
            self._cert_thumbprints |= _thumbprints(ssl.PEM_cert_to_DER_cert(pem))

    def _issue(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + _TOKEN_LIFETIME
        return token

    # -- serving -----------------------------------------------------------------------------

    def _record(self, request: Request) -> RecordedRequest:
        return graph_record(super()._record(request))

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        correlation = record.headers.get("client-request-id") or record.request_id
        status, body = self._route(request, record, correlation)
        headers = {"x-ms-request-id": record.request_id, "client-request-id": correlation}
        headers |= {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        return Response(json.dumps(body), status, headers, content_type=_JSON)

    def _route(
        self, request: Request, record: RecordedRequest, correlation: str
    ) -> tuple[int, dict[str, Any]]:
        path, method = record.path, request.method
        m = re.fullmatch(r"/([^/]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token|"
                         r"discovery/v2\.0/keys)|/msi/token", path)  # fmt: skip
        if m is None:
            return 404, {"error": "not_found", "error_description": path}
        tenant, endpoint = unquote(m.group(1) or ""), m.group(2) or path
        if method != ("POST" if endpoint == "oauth2/v2.0/token" else "GET"):
            return 405, {"error": "invalid_request"}
        if endpoint == "/msi/token":
            return self._managed_identity_token(request, record)
        if endpoint.endswith("keys"):
            return 200, {"keys": []}
        if tenant.lower() != self.tenant_id.lower():
            error = "invalid_request" if endpoint.endswith("token") else "invalid_tenant"
            text = f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID"
            text += " and are signing into the correct cloud."
            return 400, self._error(error, 90002, text, correlation)
        if endpoint.endswith("token"):
            return self._token(request, correlation)
        return 200, self._openid_configuration()

    def _openid_configuration(self) -> dict[str, Any]:
        """The discovery document's fields a client reads."""
        base = self.authority
        return {
            "issuer": f"{base}/v2.0",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
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

    def _token(self, request: Request, correlation: str) -> tuple[int, dict[str, Any]]:
        form: dict[str, str] = {}
        if media_type(request.headers.get("Content-Type", "")) == _FORM:
            form = single_query(request.get_data().decode("utf-8", errors="replace"))
        problem = self._client_credentials_problem(form)
        if problem is not None:
            status, error, code, description = problem
            return status, self._error(error, code, description, correlation)
        return 200, {
            "token_type": "Bearer",
            "expires_in": _TOKEN_LIFETIME,
            "ext_expires_in": _TOKEN_LIFETIME,
            "access_token": self._issue(),
        }

    def _client_credentials_problem(self, form: dict[str, str]) -> tuple[int, str, int, str] | None:
        """(status, error, AADSTS code, description) of a refused client-credentials request (the
        descriptions are the first sentence of Entra's)."""
        grant_type, scope = form.get("grant_type", ""), form.get("scope", "")
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret")
        scopes = scope.split()
        resource = (scopes or [""])[0].removesuffix("/.default").rstrip("/")
        if not grant_type:
            return _missing("grant_type")
        if grant_type != "client_credentials":
            text = f"The app requested an unsupported grant type '{grant_type}'."
            return 400, "unsupported_grant_type", 70003, text
        if not client_id:
            return _missing("client_id")
        if client_id.lower() != self.client_id.lower():
            text = f"Application with identifier '{client_id}' was not found in the directory."
            return 400, "unauthorized_client", 700016, text
        if not scope:
            return _missing("scope")
        if len(scopes) != 1 or not scope.endswith("/.default"):
            text = f"The provided value for scope {scope} is not valid."
            return 400, "invalid_scope", 1002012, text
        if resource.lower() not in GRAPH_RESOURCES:
            text = f"The resource principal named {resource} was not found in the tenant."
            return 400, "invalid_resource", 500011, text
        if "client_assertion" in form:
            assertion_type = form.get("client_assertion_type", "")
            refused = self._assertion_problem(assertion_type, form["client_assertion"])
            return None if refused is None else (401, "invalid_client", *refused)
        if client_secret is None:
            text = "The request body must contain 'client_assertion' or 'client_secret'."
            return 401, "invalid_client", 7000218, text
        if not secrets.compare_digest(client_secret, self.client_secret):
            return 401, "invalid_client", 7000215, "Invalid client secret provided."
        return None

    def _managed_identity_token(
        self, request: Request, record: RecordedRequest
    ) -> tuple[int, dict[str, Any]]:
        offered = request.headers.get("X-Identity-Header", "")
        if not secrets.compare_digest(offered, self.identity_header):
            return 401, {"error": "unauthorized", "error_description": "bad X-IDENTITY-HEADER"}
        asked = record.query.get("resource", "")
        resource = asked.removesuffix("/.default").rstrip("/")
        if resource not in GRAPH_RESOURCES:
            return 400, {
                "error": "invalid_resource",
                "error_description": f"unknown resource {resource}",
            }
        return 200, {
            "access_token": self._issue(),
            "expires_on": str(int(time.time()) + _TOKEN_LIFETIME),
            "resource": asked,
            "token_type": "Bearer",
            "client_id": record.query.get("client_id", self.client_id),
        }

    def _assertion_problem(self, assertion_type: str, assertion: str) -> tuple[int, str] | None:
        """Check a client assertion's shape and claims: (AADSTS code, text) on error."""
        if assertion_type != _JWT_BEARER:
            return 700023, f"Invalid client_assertion_type '{assertion_type}'."
        try:
            header_b64, payload_b64, _signature = assertion.split(".")
            header, claims = _b64url_json(header_b64), _b64url_json(payload_b64)
        except (ValueError, binascii.Error):
            return _BAD_JWT
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return _BAD_JWT
        offered = {str(header[n]).rstrip("=") for n in ("x5t#S256", "x5t") if n in header}
        with self._lock:
            if not offered & self._cert_thumbprints:
                reason = "(Reason - The key was not found.)"
                return 700027, f"Client assertion failed signature validation. {reason}"
        if claims.get("aud") != self.token_endpoint:
            return (
                700212,
                f"Client assertion audience claim does not match '{self.token_endpoint}'.",
            )
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            return 700021, "Client assertion application identifier doesn't match 'client_id'."
        now, exp, nbf = time.time(), claims.get("exp"), claims.get("nbf", 0)
        if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
            return _BAD_JWT
        if exp < now or nbf > now + 300:
            return 700024, "Client assertion is not within its valid time range."
        return None
