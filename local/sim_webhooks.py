"""A local receiver for Vigil's notification webhooks, on `local.http`, recording every request.

* ``POST /teams/<id>``: a Microsoft Teams incoming webhook: an Adaptive Card message (see
  `teams_problem`) is answered 200 ``1``, as Teams does; anything else 400 with the reason.
* ``POST /hooks/<id>``: a generic receiver of JSON; knowing the secret, it checks
  ``X-Vigil-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (401 if not); answers 204.

``fail(status, times, retry_after=...)`` answers the next ``times`` requests ``status`` before
any check. Plain HTTP on 127.0.0.1: Vigil allows it only to a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any

from local.http import Fault, RecordedRequest, Request, Response, Simulator

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
log = logging.getLogger("vigil.run")


@dataclass(frozen=True)
class Received:
    kind: str  # "teams" or "hooks"
    path: str
    headers: dict[str, str]  # as sent (not lower-cased)
    body: bytes
    status: int  # what the receiver answered
    signature_valid: bool | None = None  # generic hooks, when the receiver knows the secret

    def json(self) -> Any:
        return json.loads(self.body)


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


class WebhookReceiver(Simulator):
    name = "sim-webhooks"

    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        super().__init__(port=port)
        self.secret = secret
        self.teams_path = f"/teams/{secrets.token_hex(8)}"  # its URL is its credential
        self.hooks_path = f"/hooks/{secrets.token_hex(8)}"
        self._received: list[Received] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def teams_url(self) -> str:
        return self.base_url + self.teams_path

    @property
    def hooks_url(self) -> str:
        return self.base_url + self.hooks_path

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        headers = {"Retry-After": retry_after} if retry_after else {}
        self.faults.add(Fault("POST", re.compile(""), status, headers, times=times))

    def received(self, kind: str | None = None, *, accepted: bool | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self._received
                if kind in (None, r.kind) and accepted in (None, r.status < 300)
            ]

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        if record.path not in (self.teams_path, self.hooks_path):
            return Response("not found", 404)
        if record.method != "POST":
            return Response("method not allowed", 405)
        kind = record.path.split("/")[1]
        response, valid = self._check(kind, request, record.body)
        log.info("webhook receiver: %s request answered %d", kind, response.status_code)  # no path
        received = Received(
            kind, record.path, dict(request.headers), record.body, response.status_code, valid
        )
        with self._lock:
            self._received.append(received)
        return response

    def _check(self, kind: str, request: Request, body: bytes) -> tuple[Response, bool | None]:
        """The answer (a scripted fault first), and whether the signature held (None: unchecked)."""
        fault = self.faults.take("POST", request.path)
        if fault is not None:
            return Response("injected fault", fault.status, fault.headers), None
        try:
            payload = json.loads(body)
        except ValueError:
            return Response("body is not JSON", 400), None
        if kind == "teams":
            problem = teams_problem(payload)
            return Response(problem or "1", 400 if problem else 200), None
        if self.secret is None:
            return Response(None, 204), None
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(
            f"sha256={digest}", request.headers.get("X-Vigil-Signature-256", "")
        ):
            return Response(None, 204), True
        return Response("bad signature", 401), False
