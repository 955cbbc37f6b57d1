"""A simulated Microsoft Graph, with its Entra ID token endpoint, served over TLS.

MSAL accepts only an ``https`` authority, so this server speaks HTTPS with a throw-away CA made by
``trustme``. One server (one port, host name ``localhost``) answers both sides:

* Entra ID: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and
  ``POST /{tenant}/oauth2/v2.0/token`` (client credentials with a secret, or with a certificate
  assertion when a certificate was registered with :meth:`SimulatedGraph.add_client_certificate`).
* Microsoft Graph under ``/v1.0``: the calls Vigil's governance needs (see
  ``graph-governance.md``): user lookup, ``revokeSignInSessions`` (200 with the documented
  known-issue body), ``PATCH accountEnabled`` (204), ``sendMail`` (202, kept in the sender's Sent
  Items under its ``internetMessageId``), Sent Items listed with ``$filter`` on
  ``internetMessageId``, ``riskyUsers`` (state, ``confirmCompromised`` / ``dismiss``, 204),
  ``$batch`` (with ``dependsOn`` and 424s), the reporting APIs (``local/sim_auditlogs.py``) and the
  ``/users`` and ``/groups`` delta queries (``local/sim_users_delta.py``).

Every request is recorded (Authorization and client secrets redacted) and tests can script
faults (429 with or without ``Retry-After``, 503, 504, 401, 403, 404, ...) with
:meth:`SimulatedGraph.inject_fault`, or stop the client after a call was carried out and before
its answer with :meth:`SimulatedGraph.before_answer`.

Typical use with MSAL::

    with SimulatedGraph() as sim:
        session = sim.make_session()          # trust_env=False, verify=sim.ca_path
        app = msal.ConfidentialClientApplication(
            sim.client_id, authority=sim.authority, client_credential=sim.client_secret,
            instance_discovery=False, http_client=session)
        token = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])["access_token"]
        session.post(f"{sim.graph_url}/users/{uid}/revokeSignInSessions",
                     headers={"Authorization": f"Bearer {token}"})

Simplifications (deliberate): access tokens are opaque random strings, not JWTs; a client
assertion's signature is not verified (only its header thumbprint, ``aud``, ``iss``/``sub`` and
lifetime), because the standard library has no RSA; the default user representation includes
``accountEnabled`` and ``onPremisesSyncEnabled`` (real Graph returns them only with ``$select``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import trustme

from local.sim_auditlogs import AuditLogs, ReportError
from local.sim_users_delta import DeltaError, UsersDelta

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TENANT_ID",
    "GRAPH_SCOPE",
    "RecordedRequest",
    "SimUser",
    "SimulatedGraph",
]

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID = "7c1d5c6e-3f5a-4c2b-9d8e-1a2b3c4d5e6f"
DEFAULT_CLIENT_ID = "0f4e2b7a-9c1d-4e8f-a3b5-6d7c8e9f0a1b"
DEFAULT_CLIENT_SECRET = "sim-graph-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
_GRAPH_RESOURCES = ("https://graph.microsoft.com", _GRAPH_APP_ID)
_GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata"
_GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TOKEN_LIFETIME = 3599
_MAX_BATCH = 20
_REDACTED = "***"
_BAD_JSON = (
    "Unable to read JSON request payload. Please ensure Content-Type header is set and payload "
    "is of valid JSON format."
)
_DEFAULT_FAULT_CODES: Mapping[int, tuple[str, str]] = {
    400: ("Request_BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "Resource does not exist."),
    409: ("Conflict", "Conflict."),
    412: ("PreconditionFailed", "Precondition failed."),
    423: ("Locked", "The resource is locked."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("InternalServerError", "Internal server error."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceNotAvailable", "Service unavailable."),
    504: ("GatewayTimeout", "Gateway timeout."),
}
# Real user properties the simulator knows by name but does not model: `$select` returns null.
_UNMODELLED_USER_PROPERTIES = frozenset(
    {
        "businessPhones",
        "city",
        "companyName",
        "country",
        "createdDateTime",
        "creationType",
        "department",
        "employeeId",
        "externalUserState",
        "givenName",
        "identities",
        "jobTitle",
        "lastPasswordChangeDateTime",
        "mailNickname",
        "mobilePhone",
        "officeLocation",
        "onPremisesDistinguishedName",
        "onPremisesDomainName",
        "onPremisesImmutableId",
        "onPremisesLastSyncDateTime",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesUserPrincipalName",
        "otherMails",
        "passwordPolicies",
        "postalCode",
        "preferredLanguage",
        "proxyAddresses",
        "state",
        "streetAddress",
        "surname",
        "usageLocation",
        "userType",
    }
)
_DEFAULT_USER_PROPERTIES = (
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "accountEnabled",
    "onPremisesSyncEnabled",
)
_RISK_LEVEL = {"atRisk": "medium", "confirmedCompromised": "high"}
_RISK_DETAIL = {
    "confirmedCompromised": "adminConfirmedUserCompromised",
    "dismissed": "adminDismissedAllRiskForUser",
}


@dataclass
class SimUser:
    """A directory user. ``risk_state`` follows Graph's ``riskState`` values."""

    id: str
    user_principal_name: str
    mail: str
    display_name: str = ""
    account_enabled: bool = True
    on_premises_sync_enabled: bool = False
    sign_in_sessions_valid_from: datetime | None = None
    risk_state: str = "none"


@dataclass
class RecordedRequest:
    """One request the simulator received.

    ``headers`` has lower-case names; ``authorization`` is redacted to its scheme. ``json`` is the
    parsed body when it was JSON; ``form`` the parsed form body (token endpoint; ``client_secret``
    and ``client_assertion`` redacted); ``text`` any other body. ``$batch`` sub-requests are
    recorded too, after their ``$batch`` request, with ``via_batch=True``, ``batch_item_id`` and
    path ``/v1.0/<relative url>``. ``status`` is the status the simulator answered.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] | None = None
    text: str | None = None
    status: int = 0
    request_id: str = ""
    via_batch: bool = False
    batch_item_id: str | None = None


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None
    remaining: int


@dataclass
class _Result:
    status: int
    body: Any = None  # None means "no body"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Call:
    """A Graph call, top-level or from a ``$batch``; ``path`` is relative to ``/v1.0``."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    content_type: str
    has_body: bool
    body: Any
    request_id: str
    client_request_id: str
    beta: bool = False


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64url(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode("ascii")


def _single_query(raw_query: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class SimulatedGraph:
    """Simulated Entra ID token endpoint + Microsoft Graph on one HTTPS port.

    The CA certificate is written to :attr:`ca_path` at construction time (under ``state_dir`` or
    a temporary directory that :meth:`stop` removes). URLs are available after :meth:`start`.
    """

    def __init__(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self._requested_port = port
        self.users: dict[str, SimUser] = {}
        self._by_key: dict[str, SimUser] = {}
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._sent_mail: list[dict[str, Any]] = []
        self._sent_items: dict[str, list[dict[str, Any]]] = {}  # sender object id -> messages
        # Answer reading mail folders with 403, as without Mail.ReadBasic.All / Mail.Read.
        self.mail_read_denied = False
        self._faults: list[_Fault] = []
        self._hooks: list[tuple[str, re.Pattern[str], Callable[[RecordedRequest], None]]] = []
        self._tokens: dict[str, float] = {}
        self._token_count = 0
        self._cert_thumbprints: set[str] = set()
        self._risk_interval: float | None = None  # Identity Protection throttle, seconds
        # App Service managed identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER).
        self.identity_header = secrets.token_urlsafe(16)
        self._last_risk_call = float("-inf")
        self._server: _TLSServer | None = None
        self._thread: threading.Thread | None = None
        self.audit_logs = AuditLogs()  # sign-ins and directory audits (local/sim_auditlogs.py)
        self.users_delta = UsersDelta()  # GET /users|groups/delta (local/sim_users_delta.py)

        self._ca = trustme.CA()
        self._server_cert = self._ca.issue_cert("localhost", "127.0.0.1")
        self._own_dir = state_dir is None
        self._dir = (
            Path(tempfile.mkdtemp(prefix="sim-graph-")) if state_dir is None else Path(state_dir)
        )
        self.ca_path: Path = self._dir / "sim-graph-ca.pem"
        self._write_ca()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind the port and serve in a daemon thread. Idempotent while running."""
        if self._server is not None:
            return
        self._write_ca()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._server_cert.configure_cert(context)
        server = _TLSServer((self.host, self._requested_port), context, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sim-graph:{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close open connections and remove the temporary CA directory."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_ca(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    # ------------------------------------------------------------------ URLs

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SimulatedGraph is not started")
        return int(self._server.server_address[1])

    @property
    def authority_host(self) -> str:
        """``https://localhost:PORT``: give ``f"{authority_host}/{tenant_id}"`` to MSAL."""
        return f"https://localhost:{self.port}"

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def identity_endpoint(self) -> str:
        """The App Service managed identity endpoint: set ``IDENTITY_ENDPOINT`` to this and
        ``IDENTITY_HEADER`` to :attr:`identity_header` for azure-identity."""
        return f"{self.authority_host}/msi/token"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    @property
    def graph_url(self) -> str:
        """``https://localhost:PORT/v1.0``, the simulated ``https://graph.microsoft.com/v1.0``."""
        return f"{self.authority_host}/v1.0"

    def make_session(self) -> requests.Session:
        """A ``requests.Session`` that trusts only the simulator's CA and ignores proxy/CA env."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path)
        return session

    # ------------------------------------------------------------------ state

    def add_user(self, user: SimUser) -> None:
        with self._lock:
            self.users[user.id] = user
            self._by_key[user.id.lower()] = user
            self._by_key[user.user_principal_name.lower()] = user

    def find_user(self, key: str) -> SimUser | None:
        """The user with this object id or userPrincipalName (case-insensitive), if any: from
        the index kept by add_user, else by looking through them all (users added otherwise)."""
        wanted = key.lower()
        with self._lock:
            hit = self._by_key.get(wanted)
            if (
                hit is not None
                and self.users.get(hit.id) is hit
                and wanted in (hit.id.lower(), hit.user_principal_name.lower())
            ):
                return hit
            for user in self.users.values():
                if user.id.lower() == wanted or user.user_principal_name.lower() == wanted:
                    return user
        return None

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every recorded request, oldest first."""
        with self._lock:
            return list(self._requests)

    def graph_requests(self, *, include_batch_items: bool = True) -> list[RecordedRequest]:
        """Recorded requests under ``/v1.0`` (optionally without ``$batch`` sub-requests)."""
        return [
            r
            for r in self.requests
            if r.path.startswith("/v1.0") and (include_batch_items or not r.via_batch)
        ]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        """Accepted ``sendMail`` calls: ``{"sender", "sender_id", "message", "saveToSentItems"}``
        (or ``"mime"`` instead of ``"message"`` for the MIME variant)."""
        with self._lock:
            return list(self._sent_mail)

    @property
    def token_requests(self) -> int:
        """How many access tokens the token endpoint issued."""
        with self._lock:
            return self._token_count

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token the token endpoint issued (for tests that look for leaks)."""
        with self._lock:
            return list(self._tokens)

    def invalidate_tokens(self) -> None:
        """Make every issued token fail with 401 (as if expired); new tokens work."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    def add_client_certificate(self, certificate_pem: str | bytes) -> None:
        """Accept client assertions whose ``x5t#S256``/``x5t`` header matches this certificate."""
        pem = (
            certificate_pem.decode("ascii")
            if isinstance(certificate_pem, bytes)
            else (certificate_pem)
        )
        der = ssl.PEM_cert_to_DER_cert(pem)
        with self._lock:
            self._cert_thumbprints.add(_b64url(hashlib.sha256(der).digest()).rstrip("="))
            self._cert_thumbprints.add(_b64url(hashlib.sha1(der).digest()).rstrip("="))  # noqa: S324

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` matching Graph requests with this response instead.

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched (``re.search``) in the
        request path without query, e.g. ``/v1.0/users/<id>/revokeSignInSessions``. ``$batch``
        sub-requests are matched too, with path ``/v1.0/<relative url>``. Faults are checked
        after authentication and before routing, in the order they were injected. Without
        ``body`` a Graph error envelope is generated (e.g. ``TooManyRequests`` for 429);
        ``innerError`` ids are filled in when the body has an ``error`` object without them.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(
                _Fault(
                    method=method.upper(),
                    pattern=re.compile(path_regex),
                    status=status,
                    headers=dict(headers or {}),
                    body=body,
                    remaining=times,
                )
            )

    def limit_identity_protection(self, requests_per_second: float | None = 1.0) -> None:
        """Answer ``riskyUsers`` actions over this rate with 429 and no ``Retry-After``, as Graph
        does (1 request per second per tenant); ``None`` lifts the limit."""
        with self._lock:
            self._risk_interval = None if requests_per_second is None else 1 / requests_per_second
            self._last_risk_call = float("-inf")

    def before_answer(
        self, method: str, path_regex: str, hook: Callable[[RecordedRequest], None]
    ) -> None:
        """Call ``hook`` once, on the next matching top-level request, after Graph has carried
        it out and before the answer is written: a test can stop its client there (the client
        then never sees the answer)."""
        with self._lock:
            self._hooks.append((method.upper(), re.compile(path_regex), hook))

    def sent_items(self, sender: str) -> list[dict[str, Any]]:
        """The messages in this user's Sent Items (``id``, ``internetMessageId``, ``subject``,
        ``toRecipients``), oldest first."""
        user = self.find_user(sender)
        with self._lock:
            return list(self._sent_items.get(user.id, [])) if user else []

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected fault responses are still to be served."""
        with self._lock:
            return sum(f.remaining for f in self._faults)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str], raw: bytes) -> _Wire:
        parts = urlsplit(raw_path)
        path = parts.path
        query = _single_query(parts.query)
        content_type = headers.get("content-type", "")
        request_id = str(uuid.uuid4())
        client_request_id = headers.get("client-request-id") or request_id
        record = RecordedRequest(
            method=method,
            path=path,
            query=query,
            headers=_redact_headers(headers),
            request_id=request_id,
        )
        self._parse_for_record(record, content_type, raw)
        with self._lock:
            self._requests.append(record)

        wire: _Wire
        if path == "/v1.0" or path.startswith("/v1.0/"):
            wire = self._graph_http(
                method, path, query, headers, raw, request_id, client_request_id
            )
        elif path.startswith("/beta/auditLogs/"):  # beta: only the reporting APIs
            wire = self._graph_http(
                method, path, query, headers, raw, request_id, client_request_id, beta=True
            )
        else:
            wire = self._entra_http(
                method, path, headers, raw, request_id, client_request_id, query
            )
        record.status = wire.status
        with self._lock:
            hook = next(
                (h for h in self._hooks if h[0] in ("*", method.upper()) and h[1].search(path)),
                None,
            )
            if hook is not None:
                self._hooks.remove(hook)
        if hook is not None:
            hook[2](record)
        return wire

    @staticmethod
    def _parse_for_record(record: RecordedRequest, content_type: str, raw: bytes) -> None:
        if not raw:
            return
        media = _media_type(content_type)
        text = raw.decode("utf-8", errors="replace")
        if media == "application/json":
            try:
                record.json = json.loads(text)
            except ValueError:
                record.text = text
        elif media == "application/x-www-form-urlencoded":
            form = _single_query(text)
            for secret_field in ("client_secret", "client_assertion"):
                if secret_field in form:
                    form[secret_field] = _REDACTED
            record.form = form
        else:
            record.text = text

    # ------------------------------------------------------------------ Entra ID

    def _entra_http(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        request_id: str,
        client_request_id: str,
        query: dict[str, str] | None = None,
    ) -> _Wire:
        query = query or {}
        extra = {
            "x-ms-request-id": request_id,
            "client-request-id": client_request_id,
            "Cache-Control": "no-store, no-cache",
            "Pragma": "no-cache",
        }
        if m := re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path):
            tenant = unquote(m.group(1))
            if method != "GET":
                return _Wire.json(405, {"error": "invalid_request"}, extra)
            if tenant.lower() != self.tenant_id.lower():
                body = self._entra_error(
                    "invalid_tenant",
                    90002,
                    f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                    "ID and are signing into the correct cloud.",
                    client_request_id,
                )
                return _Wire.json(400, body, extra)
            return _Wire.json(200, self._openid_configuration(), extra)
        if m := re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path):
            if method != "POST":
                return _Wire.json(405, {"error": "invalid_request"}, extra)
            status, body = self._token(unquote(m.group(1)), headers, raw, client_request_id)
            return _Wire.json(status, body, extra)
        if path == "/msi/token":
            return self._managed_identity_token(method, query, headers, extra)
        if re.fullmatch(r"/([^/]+)/discovery/v2\.0/keys", path) and method == "GET":
            return _Wire.json(200, {"keys": []}, extra)
        return _Wire.json(404, {"error": "not_found", "error_description": path}, extra)

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
            "msgraph_host": f"localhost:{self.port}",
            "rbac_url": "https://pas.windows.net",
        }

    def _entra_error(
        self, error: str, code: int, description: str, correlation_id: str
    ) -> dict[str, Any]:
        trace_id = str(uuid.uuid4())
        stamp = _now().strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": error,
            "error_description": (
                f"AADSTS{code}: {description} Trace ID: {trace_id} "
                f"Correlation ID: {correlation_id} Timestamp: {stamp}"
            ),
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.authority_host}/error?code={code}",
        }

    def _token(
        self, tenant: str, headers: dict[str, str], raw: bytes, correlation_id: str
    ) -> tuple[int, dict[str, Any]]:
        def fail(status: int, error: str, code: int, description: str) -> tuple[int, Any]:
            return status, self._entra_error(error, code, description, correlation_id)

        if tenant.lower() != self.tenant_id.lower():
            return fail(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        if _media_type(headers.get("content-type", "")) != "application/x-www-form-urlencoded":
            return fail(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        form = _single_query(raw.decode("utf-8", errors="replace"))
        basic_id, basic_secret = _parse_basic(headers.get("authorization", ""))
        grant_type = form.get("grant_type", "")
        client_id = form.get("client_id") or basic_id or ""
        client_secret = form.get("client_secret") or basic_secret
        assertion = form.get("client_assertion")
        scope = form.get("scope", "")
        if not grant_type:
            return fail(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant_type != "client_credentials":
            return fail(
                400,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type "
                f"'{grant_type}'. This simulator supports only client_credentials.",
            )
        if not client_id:
            return fail(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
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
            return fail(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            )
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
        if resource.lower() not in _GRAPH_RESOURCES:
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
                code, description = problem
                return fail(401, "invalid_client", code, description)
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
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + _TOKEN_LIFETIME
            self._token_count += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": _TOKEN_LIFETIME,
            "ext_expires_in": _TOKEN_LIFETIME,
            "access_token": token,
        }

    def _managed_identity_token(
        self, method: str, query: dict[str, str], headers: dict[str, str], extra: dict[str, str]
    ) -> _Wire:
        """App Service's managed identity endpoint (api-version 2019-08-01)."""
        if method != "GET":
            return _Wire.json(405, {"error": "invalid_request"}, extra)
        offered = headers.get("x-identity-header", "")
        if not secrets.compare_digest(offered, self.identity_header):
            return _Wire.json(
                401, {"error": "unauthorized", "error_description": "bad X-IDENTITY-HEADER"}, extra
            )
        resource = query.get("resource", "").removesuffix("/.default").rstrip("/")
        if resource not in _GRAPH_RESOURCES:
            return _Wire.json(
                400,
                {"error": "invalid_resource", "error_description": f"unknown resource {resource}"},
                extra,
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + _TOKEN_LIFETIME
            self._token_count += 1
        body = {
            "access_token": token,
            "expires_on": str(int(time.time()) + _TOKEN_LIFETIME),
            "resource": query.get("resource", ""),
            "token_type": "Bearer",
            "client_id": query.get("client_id", self.client_id),
        }
        return _Wire.json(200, body, extra)

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

    # ------------------------------------------------------------------ Graph (HTTP level)

    def _graph_http(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        raw: bytes,
        request_id: str,
        client_request_id: str,
        *,
        beta: bool = False,
    ) -> _Wire:
        ids = {"request-id": request_id, "client-request-id": client_request_id}
        auth_error = self._check_bearer(headers.get("authorization", ""))
        if auth_error is not None:
            error_body = self._graph_error(
                "InvalidAuthenticationToken", auth_error, request_id, client_request_id
            )
            www = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                f'oauth2/authorize", client_id="{_GRAPH_APP_ID}"'
            )
            return _Wire.graph(_Result(401, error_body, {"WWW-Authenticate": www}), ids)

        content_type = headers.get("content-type", "")
        media = _media_type(content_type)
        has_body = bool(raw)
        body: Any = None
        if has_body:
            text = raw.decode("utf-8", errors="replace")
            if media == "application/json":
                try:
                    body = json.loads(text)
                except ValueError:
                    error = self._graph_error(
                        "BadRequest", _BAD_JSON, request_id, client_request_id
                    )
                    return _Wire.graph(_Result(400, error), ids)
            else:
                body = text
        call = _Call(
            method=method,
            path=path.removeprefix("/beta" if beta else "/v1.0") or "/",
            query=query,
            headers=headers,
            content_type=media,
            has_body=has_body,
            body=body,
            request_id=request_id,
            client_request_id=client_request_id,
            beta=beta,
        )
        return _Wire.graph(self._graph_call(call, top_level=True), ids)

    def _check_bearer(self, authorization: str) -> str | None:
        if not authorization.strip():
            return "Access token is empty."
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "Access token is empty."
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

    def _graph_error(
        self, code: str, message: str, request_id: str, client_request_id: str
    ) -> dict[str, Any]:
        return {
            "error": {
                "code": code,
                "message": message,
                "innerError": self._inner_error(request_id, client_request_id),
            }
        }

    @staticmethod
    def _inner_error(request_id: str, client_request_id: str) -> dict[str, str]:
        return {
            "date": _now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id,
        }

    # ------------------------------------------------------------------ Graph (routing)

    def _graph_call(self, call: _Call, *, top_level: bool) -> _Result:
        fault = self._take_fault(call.method, ("/beta" if call.beta else "/v1.0") + call.path)
        if fault is not None:
            return self._fault_result(fault, call)
        try:
            return self._route(call, top_level=top_level)
        except _BadRequest as exc:
            return _Result(
                exc.status,
                self._graph_error(exc.code, exc.message, call.request_id, call.client_request_id),
            )

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in ("*", method.upper()) and fault.pattern.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _fault_result(self, fault: _Fault, call: _Call) -> _Result:
        headers = dict(fault.headers)
        if fault.status == 204:
            return _Result(204, None, headers)
        if fault.body is None:
            code, message = _DEFAULT_FAULT_CODES.get(fault.status, ("UnknownError", "Error."))
            body: Any = self._graph_error(code, message, call.request_id, call.client_request_id)
        else:
            body = json.loads(json.dumps(fault.body))  # a private deep copy
            error = body.get("error")
            if isinstance(error, dict) and "innerError" not in error:
                error["innerError"] = self._inner_error(call.request_id, call.client_request_id)
        return _Result(fault.status, body, headers)

    def _route(self, call: _Call, *, top_level: bool) -> _Result:
        segments = [unquote(s) for s in call.path.strip("/").split("/")] if call.path != "/" else []
        method = call.method.upper()
        match segments:
            case ["$batch"] if top_level:
                self._allow(method, "POST")
                return self._batch(call)
            case ["auditLogs", ("signIns" | "directoryAudits") as log] if top_level:
                self._allow(method, "GET")
                return self._audit_log(call, log)
            case _ if call.beta:
                raise _BadRequest(400, "BadRequest", "The simulator serves only auditLogs on beta.")
            case ["users"]:
                self._allow(method, "GET")
                return self._list_users(call)
            case [("users" | "groups") as kind, "delta"]:
                self._allow(method, "GET")
                return self._delta(call, kind)
            case ["users", key]:
                self._allow(method, "GET", "PATCH")
                user = self._require_user(key)
                if method == "GET":
                    return _Result(200, self._user_json(user, call.query.get("$select")))
                return self._patch_user(call, user)
            case ["users", key, "revokeSignInSessions"]:
                self._allow(method, "POST")
                user = self._require_user(key)
                with self._lock:
                    user.sign_in_sessions_valid_from = _now()
                return _Result(
                    200, {"@odata.context": f"{_GRAPH_CONTEXT}#Edm.Boolean", "value": True}
                )
            case ["users", key, "sendMail"]:
                self._allow(method, "POST")
                return self._send_mail(call, key)
            case ["users", key, "mailFolders", folder, "messages"]:
                self._allow(method, "GET")
                return self._folder_messages(call, key, folder)
            case ["identityProtection", "riskyUsers"]:
                self._allow(method, "GET")
                with self._lock:
                    risky = [u for u in self.users.values() if u.risk_state != "none"]
                return _Result(
                    200,
                    {
                        "@odata.context": f"{_GRAPH_CONTEXT}#identityProtection/riskyUsers",
                        "value": [self._risky_user_json(u) for u in risky],
                    },
                )
            case ["identityProtection", "riskyUsers", ("confirmCompromised" | "dismiss") as action]:
                self._allow(method, "POST")
                with self._lock:
                    clock = time.monotonic()
                    interval = self._risk_interval
                    if interval is not None and clock - self._last_risk_call < interval:
                        code, message = _DEFAULT_FAULT_CODES[429]
                        return _Result(  # no Retry-After: Identity Protection sends none
                            429,
                            self._graph_error(
                                code, message, call.request_id, call.client_request_id
                            ),
                        )
                    self._last_risk_call = clock
                return self._risky_action(call, action)
            case ["identityProtection", "riskyUsers", key]:
                self._allow(method, "GET")
                target = self._find_by_id(key)
                if target is None:
                    raise _not_found(key)
                return _Result(200, self._risky_user_json(target))
            case _:
                segment = segments[0] if segments else ""
                raise _BadRequest(
                    400, "BadRequest", f"Resource not found for the segment '{segment}'."
                )

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _BadRequest(
                405,
                "Request_BadRequest",
                "Specified HTTP method is not allowed for the request " "target.",
            )

    def _require_user(self, key: str) -> SimUser:
        user = self.find_user(key)
        if user is None:
            raise _not_found(key)
        return user

    def _find_by_id(self, object_id: str) -> SimUser | None:
        with self._lock:
            for user in self.users.values():
                if user.id.lower() == object_id.lower():
                    return user
        return None

    @staticmethod
    def _require_json(call: _Call) -> Any:
        if not call.has_body or call.content_type != "application/json":
            raise _BadRequest(400, "BadRequest", _BAD_JSON)
        return call.body

    # users ---------------------------------------------------------------

    @staticmethod
    def _user_properties(user: SimUser) -> dict[str, Any]:
        valid_from = user.sign_in_sessions_valid_from
        return {
            "id": user.id,
            "userPrincipalName": user.user_principal_name,
            "mail": user.mail,
            "displayName": user.display_name,
            "accountEnabled": user.account_enabled,
            "onPremisesSyncEnabled": user.on_premises_sync_enabled,
            "signInSessionsValidFromDateTime": _iso(valid_from) if valid_from else None,
        }

    def _select(self, select: str | None) -> list[str]:
        if select is None:
            return list(_DEFAULT_USER_PROPERTIES)
        known = {name.lower(): name for name in self._user_properties(_PROTOTYPE_USER)}
        known.update({name.lower(): name for name in _UNMODELLED_USER_PROPERTIES})
        chosen: list[str] = []
        for raw_name in select.split(","):
            name = raw_name.strip()
            if not name:
                continue
            canonical = known.get(name.lower())
            if canonical is None:
                raise _BadRequest(
                    400,
                    "Request_BadRequest",
                    f"Parsing OData Select and Expand failed: Could not find a property named "
                    f"'{name}' on type 'microsoft.graph.user'.",
                )
            if canonical not in chosen:
                chosen.append(canonical)
        return chosen or list(_DEFAULT_USER_PROPERTIES)

    def _user_json(
        self, user: SimUser, select: str | None, *, entity: bool = True
    ) -> dict[str, Any]:
        names = self._select(select)
        with self._lock:
            props = self._user_properties(user)
        out: dict[str, Any] = {}
        if entity:
            shape = f"users({','.join(names)})" if select else "users"
            out["@odata.context"] = f"{_GRAPH_CONTEXT}#{shape}/$entity"
        for name in names:
            out[name] = props.get(name)
        return out

    def _list_users(self, call: _Call) -> _Result:
        flt = call.query.get("$filter")
        with self._lock:
            candidates = list(self.users.values())
        if flt:
            m = re.fullmatch(r"\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            field_map = {"mail": "mail", "userprincipalname": "user_principal_name", "id": "id"}
            if m is None or m.group(1).lower() not in field_map:
                raise _BadRequest(
                    400,
                    "Request_UnsupportedQuery",
                    f"Unsupported or invalid query filter clause specified: '{flt}'. The "
                    "simulator supports \"mail|userPrincipalName|id eq '...'\".",
                )
            attribute = field_map[m.group(1).lower()]
            wanted = m.group(2).replace("''", "'").lower()
            candidates = [u for u in candidates if str(getattr(u, attribute)).lower() == wanted]
        select = call.query.get("$select")
        shape = f"users({','.join(self._select(select))})" if select else "users"
        return _Result(
            200,
            {
                "@odata.context": f"{_GRAPH_CONTEXT}#{shape}",
                "value": [self._user_json(u, select, entity=False) for u in candidates],
            },
        )

    def _delta(self, call: _Call, kind: str) -> _Result:
        """`/users/delta` and `/groups/delta` (local/sim_users_delta.py)."""
        if kind == "users":
            select = self._select(call.query.get("$select"))
            with self._lock:
                objects = {u.id: self._user_properties(u) for u in self.users.values()}
        else:
            wanted = (call.query.get("$select") or "displayName,members").split(",")
            select = [p for p in ("displayName", "members") if p in wanted]
            objects = self.users_delta.group_objects()
        base = f"{self.authority_host}/v1.0"
        try:
            body = self.users_delta.answer(kind, call.query, objects, select, base)
        except DeltaError as exc:
            ids = (call.request_id, call.client_request_id)
            return _Result(exc.status, self._graph_error(exc.code, exc.message, *ids))
        return _Result(200, body)

    def _audit_log(self, call: _Call, log: str) -> _Result:
        base = f"{self.authority_host}/{'beta' if call.beta else 'v1.0'}"
        try:
            return _Result(200, self.audit_logs.answer(log, call.query, base, call.beta))
        except ReportError as exc:
            ids = (call.request_id, call.client_request_id)
            return _Result(exc.status, self._graph_error(exc.code, exc.message, *ids), exc.headers)

    def _patch_user(self, call: _Call, user: SimUser) -> _Result:
        body = self._require_json(call)
        if not isinstance(body, dict):
            raise _BadRequest(400, "BadRequest", _BAD_JSON)
        updates: dict[str, Any] = {}
        for name, value in body.items():
            if name == "accountEnabled":
                if not isinstance(value, bool):
                    raise _BadRequest(
                        400,
                        "Request_BadRequest",
                        f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.",
                    )
                updates["account_enabled"] = value
            elif name == "displayName":
                if not isinstance(value, str):
                    raise _BadRequest(400, "Request_BadRequest", "Invalid value for displayName.")
                updates["display_name"] = value
            else:
                raise _BadRequest(
                    400,
                    "Request_BadRequest",
                    f"Property '{name}' is read-only or not modelled by the simulator.",
                )
        with self._lock:
            for attribute, value in updates.items():
                setattr(user, attribute, value)
        return _Result(204)

    # mail ----------------------------------------------------------------

    def _send_mail(self, call: _Call, sender_key: str) -> _Result:
        sender = self.find_user(sender_key)
        if sender is None:
            raise _BadRequest(
                404, "ErrorInvalidUser", f"The requested user '{sender_key}' is invalid."
            )
        if call.has_body and call.content_type == "text/plain":
            mime_b64 = call.body if isinstance(call.body, str) else ""
            try:
                mime = base64.b64decode(mime_b64.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                mime = ""
            if not mime:
                raise _BadRequest(
                    400,
                    "ErrorMimeContentInvalidBase64String",
                    "Invalid base64 string for MIME content.",
                )
            entry: dict[str, Any] = {"sender": sender_key, "sender_id": sender.id, "mime": mime}
        else:
            body = self._require_json(call)
            message, save = _validate_send_mail(body)
            entry = {
                "sender": sender_key,
                "sender_id": sender.id,
                "message": message,
                "saveToSentItems": save,
            }
        with self._lock:
            self._sent_mail.append(entry)
            if entry.get("saveToSentItems"):
                message = entry["message"]
                self._sent_items.setdefault(sender.id, []).append(
                    {
                        "id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                        "internetMessageId": message.get("internetMessageId")
                        or f"<{uuid.uuid4().hex}@{sender.user_principal_name.partition('@')[2]}>",
                        "subject": message.get("subject"),
                        "toRecipients": message.get("toRecipients", []),
                        "sentDateTime": _iso(_now()),
                    }
                )
        return _Result(202)

    def _folder_messages(self, call: _Call, user_key: str, folder: str) -> _Result:
        """``GET /users/{id}/mailFolders/sentitems/messages``, with ``$filter`` on
        ``internetMessageId eq '...'`` (the only filter modelled) and ``$select``."""
        user = self.find_user(user_key)
        if user is None:
            raise _BadRequest(
                404, "ErrorInvalidUser", f"The requested user '{user_key}' is invalid."
            )
        if self.mail_read_denied:
            raise _BadRequest(403, "ErrorAccessDenied", "Access is denied. Check credentials.")
        if folder.lower() != "sentitems":
            raise _BadRequest(
                404, "ErrorInvalidIdMalformed", "The simulator models only the sentitems folder."
            )
        with self._lock:
            messages = list(self._sent_items.get(user.id, []))
        flt = call.query.get("$filter")
        if flt:
            m = re.fullmatch(r"\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            if m is None:
                raise _BadRequest(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "The simulator supports \"internetMessageId eq '...'\" only.",
                )
            wanted = m.group(1).replace("''", "'")
            messages = [x for x in messages if x["internetMessageId"] == wanted]
        select = [f.strip() for f in (call.query.get("$select") or "").split(",") if f.strip()]
        value = [{k: v for k, v in x.items() if not select or k in select} for x in messages]
        return _Result(
            200,
            {
                "@odata.context": f"{_GRAPH_CONTEXT}#users('{user_key}')/mailFolders"
                f"('{folder}')/messages",
                "value": value,
            },
        )

    # identity protection ---------------------------------------------------

    def _risky_action(self, call: _Call, action: str) -> _Result:
        body = self._require_json(call)
        ids = body.get("userIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise _BadRequest(
                400, "BadRequest", "The request body must contain a non-empty 'userIds' array."
            )
        users: list[SimUser] = []
        for object_id in ids:
            user = self._find_by_id(object_id)
            if user is None:  # userIds are object ids; a UPN here is a client bug
                raise _not_found(object_id)
            users.append(user)
        state = "confirmedCompromised" if action == "confirmCompromised" else "dismissed"
        with self._lock:
            for user in users:
                user.risk_state = state
        return _Result(204)

    def _risky_user_json(self, user: SimUser) -> dict[str, Any]:
        with self._lock:
            state = user.risk_state
            return {
                "id": user.id,
                "isDeleted": False,
                "isProcessing": False,
                "riskLevel": _RISK_LEVEL.get(state, "none"),
                "riskState": state,
                "riskDetail": _RISK_DETAIL.get(state, "none"),
                "userDisplayName": user.display_name,
                "userPrincipalName": user.user_principal_name,
            }

    # $batch ----------------------------------------------------------------

    def _batch(self, call: _Call) -> _Result:
        body = self._require_json(call)
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise _BadRequest(400, "BadRequest", "Invalid batch payload format.")
        if len(items) > _MAX_BATCH:
            raise _BadRequest(
                400,
                "BadRequest",
                f"The number of requests in the batch ({len(items)}) exceeds the limit of "
                f"{_MAX_BATCH}.",
            )
        parsed = _validate_batch(items)

        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        for item in parsed:
            sub_request_id = str(uuid.uuid4())
            failed = [d for d in item.depends_on if not 200 <= statuses[d.lower()] < 300]
            parts = urlsplit(item.url)
            path = "/" + parts.path.lstrip("/")
            query = _single_query(parts.query)
            media = _media_type(item.headers.get("content-type", ""))
            record = RecordedRequest(
                method=item.method,
                path="/v1.0" + path,
                query=query,
                headers=dict(item.headers),
                json=item.body if item.has_body and media == "application/json" else None,
                text=item.body if item.has_body and isinstance(item.body, str) else None,
                request_id=sub_request_id,
                via_batch=True,
                batch_item_id=item.id,
            )
            if failed:
                result = _Result(
                    424,
                    self._graph_error(
                        "FailedDependency",
                        f"The request depends on request '{failed[0]}', which failed.",
                        sub_request_id,
                        call.client_request_id,
                    ),
                )
            else:
                sub = _Call(
                    method=item.method,
                    path=path,
                    query=query,
                    headers=item.headers,
                    content_type=media,
                    has_body=item.has_body,
                    body=item.body,
                    request_id=sub_request_id,
                    client_request_id=call.client_request_id,
                )
                result = self._graph_call(sub, top_level=False)
            record.status = result.status
            with self._lock:
                self._requests.append(record)
            statuses[item.id.lower()] = result.status
            item_headers = dict(result.headers)
            if result.body is not None:
                item_headers.setdefault("Content-Type", _GRAPH_CONTENT_TYPE)
            responses.append(
                {
                    "id": item.id,
                    "status": result.status,
                    "headers": item_headers,
                    "body": result.body,
                }
            )
        responses.reverse()  # Graph answers in any order; keep clients honest
        return _Result(200, {"responses": responses})


@dataclass
class _BatchItem:
    id: str
    method: str
    url: str
    headers: dict[str, str]
    has_body: bool
    body: Any
    depends_on: list[str]


def _validate_batch(items: list[Any]) -> list[_BatchItem]:
    def bad(message: str) -> _BadRequest:
        return _BadRequest(400, "BadRequest", message)

    seen: set[str] = set()
    parsed: list[_BatchItem] = []
    for item in items:
        if not isinstance(item, dict):
            raise bad("Invalid batch payload format.")
        item_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(item_id, str) or not item_id:
            raise bad("Each batch request must have a non-empty string 'id'.")
        if item_id.lower() in seen:
            raise bad(f"Batch request id '{item_id}' is duplicated; ids must be unique.")
        if not isinstance(method, str) or method.upper() not in {
            "GET",
            "POST",
            "PATCH",
            "PUT",
            "DELETE",
        }:
            raise bad(f"Batch request '{item_id}' has an invalid 'method'.")
        if not isinstance(url, str) or not url or "://" in url:
            raise bad(f"Batch request '{item_id}' must have a relative 'url'.")
        if url.lstrip("/").split("?", 1)[0].strip("/").lower() == "$batch":
            raise bad("Nested $batch requests are not supported.")
        raw_headers = item.get("headers", {})
        if not isinstance(raw_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_headers.items()
        ):
            raise bad(f"Batch request '{item_id}' has invalid 'headers'.")
        headers = {k.lower(): v for k, v in raw_headers.items()}
        has_body = "body" in item and item["body"] is not None
        if has_body and "content-type" not in headers:
            raise bad(f"Write request id : {item_id} does not contain Content-Type header or body.")
        depends_on = item.get("dependsOn", [])
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            raise bad(f"Batch request '{item_id}' has an invalid 'dependsOn'.")
        for dep in depends_on:
            if dep.lower() not in seen:
                raise bad(
                    f"Batch request '{item_id}' depends on '{dep}', which is not an earlier "
                    "request in the batch."
                )
        seen.add(item_id.lower())
        parsed.append(
            _BatchItem(
                id=item_id,
                method=method.upper(),
                url=url,
                headers=headers,
                has_body=has_body,
                body=item.get("body"),
                depends_on=list(depends_on),
            )
        )
    return parsed


def _validate_send_mail(body: Any) -> tuple[dict[str, Any], bool]:
    """Check the documented ``sendMail`` JSON shape; return (message, saveToSentItems)."""

    def bad(message: str, code: str = "ErrorInvalidRequest") -> _BadRequest:
        return _BadRequest(400, code, message)

    if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
        raise bad("The request body must contain a 'message' object.")
    message: dict[str, Any] = body["message"]
    save = body.get("saveToSentItems", True)
    if not isinstance(save, bool):
        raise bad("'saveToSentItems' must be a boolean.")
    if "subject" in message and not isinstance(message["subject"], str | None):
        raise bad("'message.subject' must be a string.")
    content = message.get("body")
    if content is not None and (
        not isinstance(content, dict)
        or str(content.get("contentType", "text")).lower() not in {"text", "html"}
        or not isinstance(content.get("content", ""), str)
    ):
        raise bad('\'message.body\' must be {"contentType": "Text|HTML", "content": str}.')
    recipients = 0
    for key in ("toRecipients", "ccRecipients", "bccRecipients"):
        value = message.get(key, [])
        if not isinstance(value, list):
            raise bad(f"'message.{key}' must be an array of recipients.")
        for recipient in value:
            address = (
                recipient.get("emailAddress", {}).get("address")
                if isinstance(recipient, dict) and isinstance(recipient.get("emailAddress"), dict)
                else None
            )
            if not isinstance(address, str) or "@" not in address:
                raise bad("At least one recipient is not valid.", "ErrorInvalidRecipients")
            recipients += 1
    if recipients == 0:
        raise bad("At least one recipient is not valid.", "ErrorInvalidRecipients")
    message_id = message.get("internetMessageId")
    if message_id is not None and (
        not isinstance(message_id, str) or not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id)
    ):
        raise bad("'message.internetMessageId' must be '<id@domain>' (RFC 5322).")
    return message, save


def _not_found(key: str) -> _BadRequest:
    return _BadRequest(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are "
        "not present.",
    )


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


def _redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = dict(headers)
    if "authorization" in out:
        scheme = out["authorization"].strip().partition(" ")[0]
        out["authorization"] = f"{scheme} {_REDACTED}" if scheme else _REDACTED
    if "x-identity-header" in out:
        out["x-identity-header"] = _REDACTED
    return out


_PROTOTYPE_USER = SimUser(id="", user_principal_name="", mail="")


@dataclass
class _Wire:
    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def json(cls, status: int, body: Any, headers: Mapping[str, str]) -> _Wire:
        return cls(
            status,
            {**headers, "Content-Type": "application/json; charset=utf-8"},
            json.dumps(body).encode("utf-8"),
        )

    @classmethod
    def graph(cls, result: _Result, ids: Mapping[str, str]) -> _Wire:
        headers = {**ids, "Cache-Control": "no-cache", **result.headers}
        if result.body is None:
            return cls(result.status, headers, b"")
        headers["Content-Type"] = _GRAPH_CONTENT_TYPE
        return cls(result.status, headers, json.dumps(result.body).encode("utf-8"))


class _TLSServer(ThreadingHTTPServer):
    """Threading HTTP server that does the TLS handshake in the per-connection thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], context: ssl.SSLContext, sim: SimulatedGraph
    ) -> None:
        self.ssl_context = context
        self.sim = sim
        self._connections: set[ssl.SSLSocket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if not isinstance(request, socket.socket):
            return
        request.settimeout(10)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self._connections_lock:
            self._connections.add(conn)
        try:
            _Handler(conn, client_address, self)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("connection from %s ended: %s", client_address, exc)
        finally:
            with self._connections_lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SimulatedGraph/1.0"
    timeout = 30.0
    server: _TLSServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._write(_Wire.json(411, {"error": "length_required"}, {}))
            self.close_connection = True
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self._write(_Wire.json(400, {"error": "bad_content_length"}, {}))
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            wire = self.server.sim._dispatch(method, self.path, headers, raw)
        except Exception:
            logger.exception("simulated Graph failed on %s %s", method, self.path)
            wire = _Wire.json(
                500, {"error": {"code": "generalException", "message": "Simulator error."}}, {}
            )
        self._write(wire)

    def _write(self, wire: _Wire) -> None:
        try:
            self._write_answer(wire)
        except (BrokenPipeError, ConnectionResetError):  # the client is gone (a killed worker)
            self.close_connection = True

    def _write_answer(self, wire: _Wire) -> None:
        self.send_response(wire.status)
        for name, value in wire.headers.items():
            self.send_header(name, value)
        if wire.status != 204:
            self.send_header("Content-Length", str(len(wire.body)))
        self.end_headers()
        if wire.body and wire.status != 204:
            self.wfile.write(wire.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)
