"""A simulated Microsoft Graph over TLS, with its own Entra ID token endpoint beside it.

Microsoft Graph under ``/v1.0``: the calls Vigil's governance needs (see
``graph-governance.md``): user lookup, ``revokeSignInSessions`` (200 with the documented
known-issue body), ``PATCH accountEnabled`` (204), ``sendMail`` (202, kept in the sender's Sent
Items under its ``internetMessageId``), Sent Items listed with ``$filter`` on
``internetMessageId``, ``riskyUsers`` (state, ``confirmCompromised`` / ``dismiss``, 204),
``$batch`` (with ``dependsOn`` and 424s), the reporting APIs (``local/sim_auditlogs.py``) and the
``/users`` and ``/groups`` delta queries (``local/sim_users_delta.py``).

Bearer tokens are those of :attr:`SimulatedGraph.entra`, a :class:`SimulatedEntraToken` on its
own port that this simulator starts and stops with itself, sharing its CA and request log; the
token side's attributes (``authority_host``, ``token_requests``, ``add_client_certificate``...)
are reachable here too. Every request is recorded (Authorization and client secrets redacted) and
tests can script faults (429 with or without ``Retry-After``, 503, 504, 401, 403, 404, delays)
with :meth:`SimulatedGraph.inject_fault`, or stop the client after a call was carried out and
before its answer with :meth:`SimulatedGraph.before_answer`.

Typical use with MSAL::

    with SimulatedGraph() as sim:
        session = sim.make_session()          # trust_env=False, verify=sim.ca_path
        app = msal.ConfidentialClientApplication(
            sim.client_id, authority=sim.authority, client_credential=sim.client_secret,
            instance_discovery=False, http_client=session)
        token = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])["access_token"]
        session.post(f"{sim.graph_url}/users/{uid}/revokeSignInSessions",
                     headers={"Authorization": f"Bearer {token}"})

Simplification (deliberate): the default user representation includes ``accountEnabled`` and
``onPremisesSyncEnabled`` (real Graph returns them only with ``$select``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from local.http import Fault, RecordedRequest, Request, Response, Simulator, TestCA
from local.sim_auditlogs import AuditLogs, ReportError
from local.sim_entra_token import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    GRAPH_APP_ID,
    GRAPH_SCOPE,
    SimulatedEntraToken,
    graph_record,
    media_type,
    single_query,
)
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

_GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata"
_GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
_MAX_BATCH = 20
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
    """businessPhones city companyName country createdDateTime creationType department
    employeeId externalUserState givenName identities jobTitle lastPasswordChangeDateTime
    mailNickname mobilePhone officeLocation onPremisesDistinguishedName onPremisesDomainName
    onPremisesImmutableId onPremisesLastSyncDateTime onPremisesSamAccountName
    onPremisesSecurityIdentifier onPremisesUserPrincipalName otherMails passwordPolicies
    postalCode preferredLanguage proxyAddresses state streetAddress surname usageLocation
    userType""".split()
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


class SimulatedGraph(Simulator):
    """Simulated Microsoft Graph on one HTTPS port, and its Entra ID token endpoint on another.

    The CA certificate is written to :attr:`ca_path` at construction time (under ``state_dir`` or
    a temporary directory that :meth:`stop` removes). URLs are available after :meth:`start`.
    """

    name = "sim-graph"

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
        self._ca = TestCA(None if state_dir is None else Path(state_dir), prefix="sim-graph")
        super().__init__(host=host, port=port, tls=self._ca)
        self.entra = SimulatedEntraToken(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            host=host,
            tls=self._ca,
            records=self,
        )
        self.users: dict[str, SimUser] = {}
        self._by_key: dict[str, SimUser] = {}
        self._sent_mail: list[dict[str, Any]] = []
        self._sent_items: dict[str, list[dict[str, Any]]] = {}  # sender object id -> messages
        # Answer reading mail folders with 403, as without Mail.ReadBasic.All / Mail.Read.
        self.mail_read_denied = False
        self._risk_interval: float | None = None  # Identity Protection throttle, seconds
        self._last_risk_call = float("-inf")
        self.audit_logs = AuditLogs()  # sign-ins and directory audits (local/sim_auditlogs.py)
        self.ca_path: Path = self._ca.ca_path
        self.users_delta = UsersDelta()  # GET /users|groups/delta (local/sim_users_delta.py)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Serve Graph and its token endpoint, each in a daemon thread."""
        self.entra.start()
        super().start()
        self.entra.graph_url = self.graph_url

    def stop(self) -> None:
        """Stop serving both and remove the temporary CA directory."""
        super().stop()
        self.entra.stop()
        self._ca.remove()

    # ------------------------------------------------------------------ URLs and tokens

    @property
    def graph_url(self) -> str:
        """``https://localhost:PORT/v1.0``, the simulated ``https://graph.microsoft.com/v1.0``."""
        return f"https://localhost:{self.port}/v1.0"

    def make_session(self) -> requests.Session:
        """A ``requests.Session`` that trusts only the simulator's CA and ignores proxy/CA env."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path)
        return session

    # The token side's, reachable here (the settings and the tests name them on the Graph).
    tenant_id = property(lambda self: self.entra.tenant_id)
    client_id = property(lambda self: self.entra.client_id)
    client_secret = property(lambda self: self.entra.client_secret)
    identity_header = property(lambda self: self.entra.identity_header)
    authority_host = property(lambda self: self.entra.authority_host)
    authority = property(lambda self: self.entra.authority)
    identity_endpoint = property(lambda self: self.entra.identity_endpoint)
    token_endpoint = property(lambda self: self.entra.token_endpoint)
    token_requests = property(lambda self: self.entra.token_requests)
    issued_tokens = property(lambda self: self.entra.issued_tokens)

    def invalidate_tokens(self) -> None:
        """Make every issued token fail with 401 (as if expired); new tokens work."""
        self.entra.invalidate_tokens()

    def add_client_certificate(self, certificate_pem: str | bytes) -> None:
        self.entra.add_client_certificate(certificate_pem)

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

    def graph_requests(self, *, include_batch_items: bool = True) -> list[RecordedRequest]:
        """Recorded requests under ``/v1.0`` (optionally without ``$batch`` sub-requests)."""
        return [
            r
            for r in self.requests
            if r.path.startswith("/v1.0") and (include_batch_items or not r.via_batch)
        ]

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        """Accepted ``sendMail`` calls: ``{"sender", "sender_id", "message", "saveToSentItems"}``
        (or ``"mime"`` instead of ``"message"`` for the MIME variant)."""
        with self._lock:
            return list(self._sent_mail)

    def inject_fault(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` matching Graph requests with this response instead (after
        ``delay`` seconds; status 0 answers as usual after the delay).

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` is searched (``re.search``) in the
        request path without query, e.g. ``/v1.0/users/<id>/revokeSignInSessions``. ``$batch``
        sub-requests are matched too, with path ``/v1.0/<relative url>``. Faults are checked
        after authentication and before routing, in the order they were injected. Without
        ``body`` a Graph error envelope is generated (e.g. ``TooManyRequests`` for 429);
        ``innerError`` ids are filled in when the body has an ``error`` object without them.
        """
        pattern = re.compile(path_regex)
        self.faults.add(
            Fault(method.upper(), pattern, status, dict(headers or {}), body, delay, times)
        )

    def limit_identity_protection(self, requests_per_second: float | None = 1.0) -> None:
        """Answer ``riskyUsers`` actions over this rate with 429 and no ``Retry-After``, as Graph
        does (1 request per second per tenant); ``None`` lifts the limit."""
        with self._lock:
            self._risk_interval = None if requests_per_second is None else 1 / requests_per_second
            self._last_risk_call = float("-inf")

    def sent_items(self, sender: str) -> list[dict[str, Any]]:
        """The messages in this user's Sent Items (``id``, ``internetMessageId``, ``subject``,
        ``toRecipients``), oldest first."""
        user = self.find_user(sender)
        with self._lock:
            return list(self._sent_items.get(user.id, [])) if user else []

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected fault responses are still to be served."""
        return self.faults.pending

    # ------------------------------------------------------------------ Graph (HTTP level)

    def _record(self, request: Request) -> RecordedRequest:
        return graph_record(super()._record(request))

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        path, request_id = record.path, record.request_id
        client_request_id = record.headers.get("client-request-id") or request_id
        ids = {"request-id": request_id, "client-request-id": client_request_id}
        beta = path.startswith("/beta/auditLogs/")  # beta: only the reporting APIs
        if not (beta or path == "/v1.0" or path.startswith("/v1.0/")):
            return self._reply(_Result(404, {"error": "not_found"}), ids)
        problem = self._check_bearer(request.headers.get("Authorization", ""))
        if problem is not None:
            error_body = self._graph_error(
                "InvalidAuthenticationToken", problem, request_id, client_request_id
            )
            www = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            )
            return self._reply(_Result(401, error_body, {"WWW-Authenticate": www}), ids)
        media = media_type(request.headers.get("Content-Type", ""))
        raw = request.get_data()
        body: Any = None
        if raw:
            text = raw.decode("utf-8", errors="replace")
            if media == "application/json":
                try:
                    body = json.loads(text)
                except ValueError:
                    error = self._graph_error(
                        "BadRequest", _BAD_JSON, request_id, client_request_id
                    )
                    return self._reply(_Result(400, error), ids)
            else:
                body = text
        call = _Call(
            method=request.method,
            path=path.removeprefix("/beta" if beta else "/v1.0") or "/",
            query=record.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            content_type=media,
            has_body=bool(raw),
            body=body,
            request_id=request_id,
            client_request_id=client_request_id,
            beta=beta,
        )
        return self._reply(self._graph_call(call, top_level=True), ids)

    @staticmethod
    def _reply(result: _Result, ids: Mapping[str, str]) -> Response:
        headers = {**ids, "Cache-Control": "no-cache", **result.headers}
        if result.body is None:
            return Response(status=result.status, headers=headers)
        return Response(
            json.dumps(result.body), result.status, headers, content_type=_GRAPH_CONTENT_TYPE
        )

    def _crash(self) -> Response:
        error = {"error": {"code": "generalException", "message": "Simulator error."}}
        return Response(json.dumps(error), 500, content_type="application/json; charset=utf-8")

    def _check_bearer(self, authorization: str) -> str | None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Access token is empty."
        return self.entra.token_problem(token.strip())

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
        fault = self.faults.take(call.method, ("/beta" if call.beta else "/v1.0") + call.path)
        if fault is not None and fault.status:
            return self._fault_result(fault, call)
        try:
            return self._route(call, top_level=top_level)
        except _BadRequest as exc:
            return _Result(
                exc.status,
                self._graph_error(exc.code, exc.message, call.request_id, call.client_request_id),
            )

    def _fault_result(self, fault: Fault, call: _Call) -> _Result:
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
        base = f"https://localhost:{self.port}/v1.0"
        try:
            body = self.users_delta.answer(kind, call.query, objects, select, base)
        except DeltaError as exc:
            ids = (call.request_id, call.client_request_id)
            return _Result(exc.status, self._graph_error(exc.code, exc.message, *ids))
        return _Result(200, body)

    def _audit_log(self, call: _Call, log: str) -> _Result:
        base = f"https://localhost:{self.port}/{'beta' if call.beta else 'v1.0'}"
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
            query = single_query(parts.query)
            media = media_type(item.headers.get("content-type", ""))
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
            self._keep(record)
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


_PROTOTYPE_USER = SimUser(id="", user_principal_name="", mail="")
