"""A local receiver for Vigil's notification webhooks: a Microsoft Teams incoming webhook and a
generic signed webhook, on werkzeug, recording every request, with injectable faults.

* ``POST /teams/<id>``: what a Teams incoming webhook accepts: JSON ``{"type": "message",
  "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content":
  {"type": "AdaptiveCard", "version", "body": [...]}}]}``; answers 200 with the body ``1`` (as
  Teams does), 400 with the reason otherwise.
* ``POST /hooks/<id>``: a generic receiver: JSON body; when the receiver knows the secret it
  checks ``X-Vigil-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (401 when it does not
  match); answers 204.

``fail(status, times, retry_after=...)`` makes the next ``times`` requests answer ``status``
(e.g. 500, or 429 with ``Retry-After``) before any check. Plain HTTP on 127.0.0.1: Vigil allows
webhooks over plain HTTP only to a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
log = logging.getLogger("vigil.run")


class _Quiet(WSGIRequestHandler):
    """No request lines in the log: a webhook's path is its credential."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Received:
    kind: str  # "teams" or "hooks"
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    signature_valid: bool | None = None  # generic hooks, when the receiver knows the secret

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Fault:
    status: int
    retry_after: str | None


def teams_problem(payload: Any) -> str | None:
    """Why a Teams incoming webhook would refuse the payload (None: it accepts it)."""
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return "payload must be an object with type 'message'"
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "attachments must be a non-empty list"
    for a in attachments:
        if not isinstance(a, dict) or a.get("contentType") != ADAPTIVE:
            return f"attachment contentType must be {ADAPTIVE}"
        card = a.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            return "attachment content must be an AdaptiveCard"
        if not isinstance(card.get("body"), list) or not card.get("version"):
            return "an AdaptiveCard needs a version and a body list"
    return None


class WebhookReceiver:
    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        self.secret = secret
        self.teams_path = f"/teams/{secrets.token_hex(8)}"  # its URL is its credential
        self.hooks_path = f"/hooks/{secrets.token_hex(8)}"
        self._received: list[Received] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self._app, threaded=True, request_handler=_Quiet
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def teams_url(self) -> str:
        return self.base_url + self.teams_path

    @property
    def hooks_url(self) -> str:
        return self.base_url + self.hooks_path

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sim-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        with self._lock:
            self._faults += [_Fault(status, retry_after) for _ in range(times)]

    def received(self, kind: str | None = None, *, accepted: bool | None = None) -> list[Received]:
        with self._lock:
            out = list(self._received)
        if kind is not None:
            out = [r for r in out if r.kind == kind]
        if accepted is not None:
            out = [r for r in out if (r.status < 300) == accepted]
        return out

    def _record(self, request: Request, kind: str, status: int, valid: bool | None) -> None:
        log.info("webhook receiver: %s request answered %d", kind, status)  # never the path
        with self._lock:
            self._received.append(
                Received(
                    kind, request.path, dict(request.headers), request.get_data(), status, valid
                )
            )

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._answer(request)
        return response(environ, start_response)

    def _answer(self, request: Request) -> Response:
        kind = request.path.split("/")[1] if request.path.count("/") >= 2 else ""
        if request.path not in (self.teams_path, self.hooks_path):
            return Response("not found", 404)
        if request.method != "POST":
            return Response("method not allowed", 405)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._record(request, kind, fault.status, None)
            return Response("injected fault", fault.status, headers=headers)
        body = request.get_data()
        try:
            payload = json.loads(body)
        except ValueError:
            self._record(request, kind, 400, None)
            return Response("body is not JSON", 400)
        if kind == "teams":
            problem = teams_problem(payload)
            self._record(request, kind, 400 if problem else 200, None)
            return Response(problem or "1", 400 if problem else 200)
        valid: bool | None = None
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            offered = request.headers.get("X-Vigil-Signature-256", "")
            valid = hmac.compare_digest(expected, offered)
        status = 401 if valid is False else 204
        self._record(request, kind, status, valid)
        return Response("bad signature" if valid is False else None, status)
