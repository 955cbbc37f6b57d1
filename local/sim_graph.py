"""A simulated Microsoft Graph over TLS, with its Entra ID token endpoint (:attr:`entra`) beside it.

Under ``/v1.0``, what Vigil calls (``graph-governance.md``): users by id, UPN or ``$filter``;
``PATCH``; ``revokeSignInSessions``; ``sendMail`` (kept in Sent Items, found by
``internetMessageId``); ``riskyUsers``; ``$batch`` (answered in any order); and the paged reads
of ``local/sim_graph_feeds.py``. Errors are Graph's envelope, with ``innerError``. Simplification:
the default user representation includes ``accountEnabled`` and ``onPremisesSyncEnabled``.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from local.http import Fault, RecordedRequest, Request, Response, TlsSimulator
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
from local.sim_graph_feeds import AuditLogs, GraphError, SimGroup, UsersDelta

__all__ = ["GRAPH_SCOPE", "SimGroup", "SimUser", "SimulatedGraph"]

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
_WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    f'authorize", client_id="{GRAPH_APP_ID}"'
)
_FAULT_CODES: dict[int, tuple[str, str]] = {  # an injected fault's envelope, by status
    400: ("Request_BadRequest", "Bad request."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    404: ("Request_ResourceNotFound", "Resource does not exist."),
    429: ("TooManyRequests", "Too many requests."),
    500: ("InternalServerError", "Internal server error."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceNotAvailable", "Service unavailable."),
    504: ("GatewayTimeout", "Gateway timeout."),
}
_USER_PROPERTIES = (  # the modelled ones; the first six are the default representation
    "id",
    "userPrincipalName",
    "mail",
    "displayName",
    "accountEnabled",
    "onPremisesSyncEnabled",
    "signInSessionsValidFromDateTime",
)
_KNOWN_USER_PROPERTIES = {p.lower(): p for p in _USER_PROPERTIES}  # what `$select` may name
_PATCHABLE = {"accountEnabled": ("account_enabled", bool), "displayName": ("display_name", str)}
_EDM_TYPE = {bool: "Edm.Boolean", str: "Edm.String"}
_USER_FILTER = {"mail": "mail", "userprincipalname": "user_principal_name", "id": "id"}
_RISK_STATE_AFTER = {"confirmCompromised": "confirmedCompromised", "dismiss": "dismissed"}
_BATCH_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}


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
    body: Any = None  # None: no body
    headers: dict[str, str] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad(message: str, code: str = "BadRequest", status: int = 400) -> GraphError:
    return GraphError(status, code, message)


def _not_found(key: str) -> GraphError:
    text = "does not exist or one of its queried reference-property objects are not present."
    return GraphError(404, "Request_ResourceNotFound", f"Resource '{key}' {text}")


def _envelope(code: str, message: str, request_id: str, client_request_id: str) -> Any:
    inner = _inner(request_id, client_request_id)
    return {"error": {"code": code, "message": message, "innerError": inner}}


def _inner(request_id: str, client_request_id: str) -> dict[str, str]:
    return {
        "date": _now().strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id,
    }


def _media(call: RecordedRequest) -> str:
    return media_type(call.headers.get("content-type", ""))


def _json(call: RecordedRequest) -> Any:
    """The JSON body of a call that must have one (Content-Type `application/json`)."""
    if _media(call) != "application/json" or call.json is None:
        raise _bad(_BAD_JSON)
    return call.json


class SimulatedGraph(TlsSimulator):
    """Graph on one HTTPS port and its token endpoint on another, sharing the CA and request log."""

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
        super().__init__(host=host, port=port, state_dir=state_dir)
        self.entra = SimulatedEntraToken(
            tenant_id=tenant_id,
            client_id=client_id,
            client_secret=client_secret,
            host=host,
            tls=self.ca,
            records=self,
        )
        self.users: dict[str, SimUser] = {}
        self._by_key: dict[str, SimUser] = {}  # lower-case id and UPN -> user (see find_user)
        self._sent_mail: list[dict[str, Any]] = []
        self._sent_items: dict[str, list[dict[str, Any]]] = {}  # sender object id -> messages
        # Answer reading mail folders with 403, as without Mail.ReadBasic.All / Mail.Read.
        self.mail_read_denied = False
        self._risk_interval: float | None = None  # Identity Protection throttle, seconds
        self._last_risk_call = float("-inf")
        self.audit_logs = AuditLogs()  # sign-ins and directory audits
        self.users_delta = UsersDelta()  # GET /users|groups/delta

    def start(self) -> None:
        self.entra.start()
        super().start()

    def stop(self) -> None:
        super().stop()
        self.entra.stop()

    # ------------------------------------------------------------------ URLs and tokens

    @property
    def graph_url(self) -> str:
        """``https://localhost:PORT/v1.0``, the simulated ``https://graph.microsoft.com/v1.0``."""
        return f"https://localhost:{self.port}/v1.0"

    # The token side's, reachable here (the settings and the tests name them on the Graph).
    tenant_id = property(lambda self: self.entra.tenant_id)
    client_id = property(lambda self: self.entra.client_id)
    client_secret = property(lambda self: self.entra.client_secret)
    identity_header = property(lambda self: self.entra.identity_header)
    authority_host = property(lambda self: self.entra.authority_host)
    identity_endpoint = property(lambda self: self.entra.identity_endpoint)
    token_requests = property(lambda self: self.entra.token_requests)
    issued_tokens = property(lambda self: self.entra.issued_tokens)

    def add_client_certificate(self, certificate_pem: str | bytes) -> None:
        self.entra.add_client_certificate(certificate_pem)

    # ------------------------------------------------------------------ state and faults

    def add_user(self, user: SimUser) -> None:
        with self._lock:
            self.users[user.id] = user
            self._by_key[user.id.lower()] = user
            self._by_key[user.user_principal_name.lower()] = user

    def find_user(self, key: str) -> SimUser | None:
        """The user with this object id or userPrincipalName (case-insensitive), if any: from
        the index kept by add_user while it still holds, else by looking through them all (tests
        also add, rename and delete users in `users` directly)."""
        wanted = key.lower()
        with self._lock:
            hit = self._by_key.get(wanted)
            if hit is None or self.users.get(hit.id) is not hit or not _is(hit, wanted):
                hit = next((u for u in self.users.values() if _is(u, wanted)), None)
            return hit

    def graph_requests(self, *, include_batch_items: bool = True) -> list[RecordedRequest]:
        """Recorded requests under ``/v1.0`` (optionally without ``$batch`` sub-requests)."""
        return [
            r
            for r in self.requests
            if r.path.startswith("/v1.0") and (include_batch_items or not r.via_batch)
        ]

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        """Accepted ``sendMail`` calls: ``{"sender", "message", "saveToSentItems"}``."""
        with self._lock:
            return list(self._sent_mail)

    def sent_items(self, sender: str) -> list[dict[str, Any]]:
        """The messages in this user's Sent Items (``id``, ``internetMessageId``, ``subject``,
        ``toRecipients``, ``sentDateTime``), oldest first."""
        user = self.find_user(sender)
        with self._lock:
            return list(self._sent_items.get(user.id, [])) if user else []

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
        """Answer the next ``times`` requests matching ``method`` (or ``"*"``) and ``path_regex``
        (searched in the path, ``$batch`` items as ``/v1.0/<url>``) with this, after
        authentication. Without ``body``, Graph's envelope for the status (429:
        ``TooManyRequests``); a body's ``error`` gets ``innerError``."""
        pattern = re.compile(path_regex)
        headers = dict(headers or {})
        self.faults.add(Fault(method.upper(), pattern, status, headers, body, delay, times))

    def limit_identity_protection(self, requests_per_second: float | None = 1.0) -> None:
        """Answer ``riskyUsers`` actions over this rate with 429 and no ``Retry-After``, as Graph
        does (1 request per second per tenant); ``None`` lifts the limit."""
        with self._lock:
            self._risk_interval = None if requests_per_second is None else 1 / requests_per_second
            self._last_risk_call = float("-inf")

    @property
    def pending_faults(self) -> int:
        """How many injected fault responses are still to be served."""
        return self.faults.pending

    # ------------------------------------------------------------------ HTTP level

    def _record(self, request: Request) -> RecordedRequest:
        return graph_record(super()._record(request))

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        path, request_id = record.path, record.request_id
        client_request_id = record.headers.get("client-request-id") or request_id
        ids = (request_id, client_request_id)
        if not (
            path.startswith("/beta/auditLogs/") or path == "/v1.0" or path.startswith("/v1.0/")
        ):
            result = _Result(404, {"error": "not_found"})
        elif problem := self._bearer_problem(request.headers.get("Authorization", "")):
            body = _envelope("InvalidAuthenticationToken", problem, *ids)
            result = _Result(401, body, {"WWW-Authenticate": _WWW_AUTHENTICATE})
        elif _media(record) == "application/json" and record.text is not None:
            result = _Result(400, _envelope("BadRequest", _BAD_JSON, *ids))  # unreadable JSON
        else:
            result = self._graph_call(record, client_request_id, top_level=True)
        headers = {"request-id": request_id, "client-request-id": client_request_id}
        headers |= {"Cache-Control": "no-cache", **result.headers}
        if result.body is None:
            return Response(status=result.status, headers=headers)
        body_text = json.dumps(result.body)
        return Response(body_text, result.status, headers, content_type=_GRAPH_CONTENT_TYPE)

    def _crash(self) -> Response:
        error = {"error": {"code": "generalException", "message": "Simulator error."}}
        return Response(json.dumps(error), 500, content_type="application/json; charset=utf-8")

    def _bearer_problem(self, authorization: str) -> str | None:
        """Why the request's own Authorization (the record's is redacted) is refused."""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "Access token is empty."
        return self.entra.token_problem(token.strip())

    def _graph_call(
        self, call: RecordedRequest, client_request_id: str, top_level: bool
    ) -> _Result:
        """Answer one call, top-level or a ``$batch`` item: a fault if one matches, else route."""
        ids = (call.request_id, client_request_id)
        fault = self.faults.take(call.method, call.path)
        if fault is not None and fault.status:
            if fault.status == 204:
                return _Result(204, None, dict(fault.headers))
            if fault.body is None:
                code, message = _FAULT_CODES.get(fault.status, ("UnknownError", "Error."))
                return _Result(fault.status, _envelope(code, message, *ids), dict(fault.headers))
            body = json.loads(json.dumps(fault.body))  # a private deep copy
            if isinstance(body.get("error"), dict):
                body["error"].setdefault("innerError", _inner(*ids))
            return _Result(fault.status, body, dict(fault.headers))
        try:
            return self._route(call, top_level)
        except GraphError as exc:
            return _Result(exc.status, _envelope(exc.code, exc.message, *ids))

    def _route(self, call: RecordedRequest, top_level: bool) -> _Result:
        beta = call.path.startswith("/beta/")  # where only the reporting APIs are served
        relative = call.path.removeprefix("/beta" if beta else "/v1.0") or "/"
        for pattern, methods in _ROUTES.items():
            if (m := re.fullmatch(pattern, relative)) is None:
                continue
            if not top_level and pattern in _TOP_LEVEL_ONLY:
                break
            if call.method not in methods:
                message = "Specified HTTP method is not allowed for the request target."
                raise _bad(message, "Request_BadRequest", 405)
            return methods[call.method](self, call, *(unquote(g) for g in m.groups()))
        if beta:
            raise _bad("The simulator serves only auditLogs on beta.")
        segment = unquote(relative.strip("/").split("/")[0])
        raise _bad(f"Resource not found for the segment '{segment}'.")

    # ------------------------------------------------------------------ users

    def _require_user(self, key: str, *, by_id: bool = False) -> SimUser:
        """`by_id`: Identity Protection takes object ids only (a UPN there is a client bug)."""
        user = self.find_user(key)
        if user is None or (by_id and user.id.lower() != key.lower()):
            raise _not_found(key)
        return user

    def _user_json(self, user: SimUser, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
        with self._lock:
            valid_from = user.sign_in_sessions_valid_from
            props = {
                "id": user.id,
                "userPrincipalName": user.user_principal_name,
                "mail": user.mail,
                "displayName": user.display_name,
                "accountEnabled": user.account_enabled,
                "onPremisesSyncEnabled": user.on_premises_sync_enabled,
                "signInSessionsValidFromDateTime": _iso(valid_from) if valid_from else None,
            }
        return {name: props.get(name) for name in names}

    @staticmethod
    def _select(call: RecordedRequest) -> tuple[list[str], str]:
        """The properties ``$select`` asks for (the default ones without it) and the entity set's
        shape for ``@odata.context``."""
        select = call.query.get("$select")
        chosen: list[str] = []
        for name in filter(None, (n.strip() for n in (select or "").split(","))):
            canonical = _KNOWN_USER_PROPERTIES.get(name.lower())
            if canonical is None:
                raise _bad(
                    "Parsing OData Select and Expand failed: Could not find a property named "
                    f"'{name}' on type 'microsoft.graph.user'.",
                    "Request_BadRequest",
                )
            if canonical not in chosen:
                chosen.append(canonical)
        names = chosen or list(_USER_PROPERTIES[:6])
        return names, f"users({','.join(names)})" if select else "users"

    def _get_user(self, call: RecordedRequest, key: str) -> _Result:
        user = self._require_user(key)
        names, shape = self._select(call)
        body = {"@odata.context": f"{_GRAPH_CONTEXT}#{shape}/$entity"}
        return _Result(200, body | self._user_json(user, names))

    def _list_users(self, call: RecordedRequest) -> _Result:
        names, shape = self._select(call)
        with self._lock:
            users = list(self.users.values())
        if flt := call.query.get("$filter"):
            m = re.fullmatch(r"\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            if m is None or m.group(1).lower() not in _USER_FILTER:
                raise _bad(
                    f"Unsupported or invalid query filter clause specified: '{flt}'. The "
                    "simulator supports \"mail|userPrincipalName|id eq '...'\".",
                    "Request_UnsupportedQuery",
                )
            attribute = _USER_FILTER[m.group(1).lower()]
            wanted = m.group(2).replace("''", "'").lower()
            users = [u for u in users if str(getattr(u, attribute)).lower() == wanted]
        value = [self._user_json(u, names) for u in users]
        return _Result(200, {"@odata.context": f"{_GRAPH_CONTEXT}#{shape}", "value": value})

    def _patch_user(self, call: RecordedRequest, key: str) -> _Result:
        user = self._require_user(key)
        body = _json(call)
        if not isinstance(body, dict):
            raise _bad(_BAD_JSON)
        for name, value in body.items():
            if name not in _PATCHABLE:
                text = f"Property '{name}' is read-only or not modelled by the simulator."
                raise _bad(text, "Request_BadRequest")
            expected = _PATCHABLE[name][1]
            if not isinstance(value, expected):
                text = f"Cannot convert the literal '{value}' to the expected type"
                raise _bad(f"{text} '{_EDM_TYPE[expected]}'.", "Request_BadRequest")
        with self._lock:
            for name, value in body.items():
                setattr(user, _PATCHABLE[name][0], value)
        return _Result(204)

    def _revoke(self, call: RecordedRequest, key: str) -> _Result:
        user = self._require_user(key)
        with self._lock:
            user.sign_in_sessions_valid_from = _now()
        return _Result(200, {"@odata.context": f"{_GRAPH_CONTEXT}#Edm.Boolean", "value": True})

    def _delta(self, call: RecordedRequest, kind: str) -> _Result:
        if kind == "users":
            select = self._select(call)[0]
            with self._lock:
                users = list(self.users.values())
            objects = {u.id: self._user_json(u, _USER_PROPERTIES) for u in users}
        else:
            wanted = (call.query.get("$select") or "displayName,members").split(",")
            select = [p for p in ("displayName", "members") if p in wanted]
            objects = self.users_delta.group_objects()
        base = f"https://localhost:{self.port}/v1.0"
        return _Result(200, self.users_delta.answer(kind, call.query, objects, select, base))

    def _audit_log(self, call: RecordedRequest, log: str) -> _Result:
        beta = call.path.startswith("/beta/")
        base = f"https://localhost:{self.port}/{'beta' if beta else 'v1.0'}"
        return _Result(200, self.audit_logs.answer(log, call.query, base, beta))

    # ------------------------------------------------------------------ mail

    def _mailbox(self, key: str) -> SimUser:
        user = self.find_user(key)
        if user is None:
            raise _bad(f"The requested user '{key}' is invalid.", "ErrorInvalidUser", 404)
        return user

    def _send_mail(self, call: RecordedRequest, sender_key: str) -> _Result:
        """The JSON ``sendMail`` (Vigil sends no MIME)."""
        sender, body = self._mailbox(sender_key), _json(call)
        if problem := _send_mail_problem(body):
            raise _bad(problem[1], problem[0])
        message, save = body["message"], body.get("saveToSentItems", True)
        with self._lock:
            self._sent_mail.append(
                {"sender": sender_key, "message": message, "saveToSentItems": save}
            )
            if save:
                domain = sender.user_principal_name.partition("@")[2]
                message_id = message.get("internetMessageId") or f"<{uuid.uuid4().hex}@{domain}>"
                item_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                kept = {"id": item_id, "internetMessageId": message_id}
                kept |= {"subject": message.get("subject"), "sentDateTime": _iso(_now())}
                kept["toRecipients"] = message.get("toRecipients", [])
                self._sent_items.setdefault(sender.id, []).append(kept)
        return _Result(202)

    def _folder_messages(self, call: RecordedRequest, user_key: str, folder: str) -> _Result:
        """Sent Items only, with ``$filter`` on ``internetMessageId eq '...'`` and ``$select``."""
        user = self._mailbox(user_key)
        if self.mail_read_denied:
            raise _bad("Access is denied. Check credentials.", "ErrorAccessDenied", 403)
        if folder.lower() != "sentitems":
            text = "The simulator models only the sentitems folder."
            raise _bad(text, "ErrorInvalidIdMalformed", 404)
        with self._lock:
            messages = list(self._sent_items.get(user.id, []))
        if flt := call.query.get("$filter"):
            m = re.fullmatch(r"\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            if m is None:
                text = "The simulator supports \"internetMessageId eq '...'\" only."
                raise _bad(text, "ErrorInvalidUrlQueryFilter")
            wanted = m.group(1).replace("''", "'")
            messages = [x for x in messages if x["internetMessageId"] == wanted]
        select = {f.strip() for f in call.query.get("$select", "").split(",")} - {""}
        value = [{k: v for k, v in x.items() if not select or k in select} for x in messages]
        context = f"{_GRAPH_CONTEXT}#users('{user_key}')/mailFolders('{folder}')/messages"
        return _Result(200, {"@odata.context": context, "value": value})

    # ------------------------------------------------------------------ identity protection

    def _risky_user(self, call: RecordedRequest, key: str) -> _Result:
        """The riskyUser as Vigil selects it (``$select=id,riskState``)."""
        user = self._require_user(key, by_id=True)
        with self._lock:
            body = {"id": user.id, "riskState": user.risk_state}
        return _Result(200, {"@odata.context": f"{_GRAPH_CONTEXT}#riskyUsers/$entity", **body})

    def _risky_action(self, call: RecordedRequest, action: str) -> _Result:
        with self._lock:
            clock, interval = time.monotonic(), self._risk_interval
            if interval is not None and clock - self._last_risk_call < interval:
                raise _bad("Too many requests.", "TooManyRequests", 429)  # and no Retry-After
            self._last_risk_call = clock
        body = _json(call)
        ids = body.get("userIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise _bad("The request body must contain a non-empty 'userIds' array.")
        users = [self._require_user(object_id, by_id=True) for object_id in ids]
        with self._lock:
            for user in users:
                user.risk_state = _RISK_STATE_AFTER[action]
        return _Result(204)

    # ------------------------------------------------------------------ $batch

    def _batch(self, call: RecordedRequest) -> _Result:
        client_request_id = call.headers.get("client-request-id") or call.request_id
        statuses: dict[str, int] = {}  # lower-case id -> status
        responses: list[dict[str, Any]] = []
        for item in _batch_items(_json(call)):
            url = urlsplit(item["url"])
            body, headers = item.get("body"), item["headers"]
            is_json = media_type(headers.get("content-type", "")) == "application/json"
            sub = RecordedRequest(
                method=item["method"],
                path="/v1.0/" + url.path.lstrip("/"),
                query=single_query(url.query),
                headers=headers,
                json=body if is_json else None,
                text=body if isinstance(body, str) else None,
                request_id=str(uuid.uuid4()),
                via_batch=True,
                batch_item_id=item["id"],
            )
            failed = [d for d in item["dependsOn"] if not 200 <= statuses[d.lower()] < 300]
            if failed:
                text = f"The request depends on request '{failed[0]}', which failed."
                envelope = _envelope("FailedDependency", text, sub.request_id, client_request_id)
                result = _Result(424, envelope)
            else:
                result = self._graph_call(sub, client_request_id, top_level=False)
            sub.status = statuses[item["id"].lower()] = result.status
            self._keep(sub)
            answered = dict(result.headers)
            if result.body is not None:
                answered.setdefault("Content-Type", _GRAPH_CONTENT_TYPE)
            reply = {"id": item["id"], "status": result.status, "headers": answered}
            responses.append(reply | {"body": result.body})
        responses.reverse()  # Graph answers in any order; keep clients honest
        return _Result(200, {"responses": responses})


def _is(user: SimUser, wanted: str) -> bool:
    return wanted in (user.id.lower(), user.user_principal_name.lower())


_Handler = Callable[..., _Result]
_AUDIT_LOGS = r"/auditLogs/(signIns|directoryAudits)"
_TOP_LEVEL_ONLY = {r"/\$batch", _AUDIT_LOGS}
# Path (under /v1.0) -> method -> handler(self, call, *path parameters); the first path that
# matches decides (405 for another method).
_ROUTES: dict[str, dict[str, _Handler]] = {
    r"/\$batch": {"POST": SimulatedGraph._batch},
    _AUDIT_LOGS: {"GET": SimulatedGraph._audit_log},
    r"/users": {"GET": SimulatedGraph._list_users},
    r"/(users|groups)/delta": {"GET": SimulatedGraph._delta},
    r"/users/([^/]+)": {"GET": SimulatedGraph._get_user, "PATCH": SimulatedGraph._patch_user},
    r"/users/([^/]+)/revokeSignInSessions": {"POST": SimulatedGraph._revoke},
    r"/users/([^/]+)/sendMail": {"POST": SimulatedGraph._send_mail},
    r"/users/([^/]+)/mailFolders/([^/]+)/messages": {"GET": SimulatedGraph._folder_messages},
    r"/identityProtection/riskyUsers/(confirmCompromised|dismiss)": {
        "POST": SimulatedGraph._risky_action
    },
    r"/identityProtection/riskyUsers/([^/]+)": {"GET": SimulatedGraph._risky_user},
}


def _first(rules: list[tuple[bool, str]]) -> str | None:
    """The message of the first rule that failed (rules: (failed, message))."""
    return next((message for failed, message in rules if failed), None)


def _batch_items(body: Any) -> list[dict[str, Any]]:
    """The batch's requests, checked as Graph does (400 for the whole batch on the first
    problem), with lower-case header names and upper-case methods."""
    items = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise _bad("Invalid batch payload format.")
    if len(items) > _MAX_BATCH:
        raise _bad(
            f"The number of requests in the batch ({len(items)}) exceeds the limit of "
            f"{_MAX_BATCH}."
        )
    seen: set[str] = set()
    for item in items:
        item_id, method, url = item.get("id"), item.get("method"), item.get("url")
        headers, depends = item.get("headers", {}), item.get("dependsOn", [])
        named = f"Batch request '{item_id}'"
        problem = _first(
            [
                (not isinstance(item_id, str) or not item_id, "Each batch request must have a "
                 "non-empty string 'id'."),
                (str(item_id).lower() in seen, f"{named} id is duplicated; ids must be unique."),
                (str(method).upper() not in _BATCH_METHODS, f"{named} has an invalid 'method'."),
                (not isinstance(url, str) or not url or "://" in url,
                 f"{named} must have a relative 'url'."),
                (str(url).lstrip("/").split("?")[0].strip("/").lower() == "$batch",
                 "Nested $batch requests are not supported."),
                (not isinstance(headers, dict)
                 or not all(isinstance(v, str) for v in [*headers, *headers.values()]),
                 f"{named} has invalid 'headers'."),
                (item.get("body") is not None
                 and "content-type" not in {str(k).lower() for k in headers or {}},
                 f"Write request id : {item_id} does not contain Content-Type header or body."),
                (not isinstance(depends, list)
                 or not all(isinstance(d, str) and d.lower() in seen for d in depends),
                 f"{named} depends on {depends}, which are not all earlier requests in the batch."),
            ]
        )  # fmt: skip
        if problem:
            raise _bad(problem)
        seen.add(str(item_id).lower())
    return [  # copies: the recorded request keeps what was sent
        i
        | {
            "method": i["method"].upper(),
            "headers": {k.lower(): v for k, v in i.get("headers", {}).items()},
            "dependsOn": i.get("dependsOn", []),
        }
        for i in items
    ]


def _send_mail_problem(body: Any) -> tuple[str, str] | None:
    """(code, message) when a ``sendMail`` JSON body is not of the documented shape."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict):
        return "ErrorInvalidRequest", "The request body must contain a 'message' object."
    content, message_id = message.get("body"), message.get("internetMessageId")
    lists = [message.get(k, []) for k in ("toRecipients", "ccRecipients", "bccRecipients")]
    recipients = [r for value in lists if isinstance(value, list) for r in value]
    invalid = _first(
        [
            (not isinstance(body.get("saveToSentItems", True), bool),
             "'saveToSentItems' must be a boolean."),
            (not isinstance(message.get("subject"), str | None),
             "'message.subject' must be a string."),
            (content is not None and not (
                isinstance(content, dict)
                and str(content.get("contentType", "text")).lower() in {"text", "html"}
                and isinstance(content.get("content", ""), str)),
             '\'message.body\' must be {"contentType": "Text|HTML", "content": str}.'),
            (not all(isinstance(value, list) for value in lists),
             "'message.toRecipients', 'ccRecipients' and 'bccRecipients' must be arrays."),
            (message_id is not None and not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(message_id)),
             "'message.internetMessageId' must be '<id@domain>' (RFC 5322)."),
        ]
    )  # fmt: skip
    if invalid:
        return "ErrorInvalidRequest", invalid
    if not recipients or not all("@" in str(_address(r)) for r in recipients):
        return "ErrorInvalidRecipients", "At least one recipient is not valid."
    return None


def _address(recipient: Any) -> Any:
    email = recipient.get("emailAddress") if isinstance(recipient, dict) else None
    return email.get("address") if isinstance(email, dict) else None
