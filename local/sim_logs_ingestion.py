"""A local Azure Monitor Logs Ingestion endpoint (a data collection endpoint), on werkzeug, with
the App Service managed identity endpoint that signs Vigil in to it.

* ``GET /msi/token?api-version=2019-08-01&resource=https://monitor.azure.com`` with
  ``X-IDENTITY-HEADER``: a bearer token (what azure-identity's ManagedIdentityCredential asks
  when ``IDENTITY_ENDPOINT`` / ``IDENTITY_HEADER`` are set, as on App Service).
* ``POST /dataCollectionRules/{immutable id}/streams/{stream}?api-version=2023-01-01``: needs
  ``Authorization: Bearer <a token it issued>`` (401), the api-version (400), a known rule (404)
  and stream (400 ``InvalidStream``), a JSON array body, gzip when ``Content-Encoding: gzip``
  (400), at most 1 MB uncompressed (413); then keeps the rows and answers 204.

``fail(status, times, retry_after=...)`` answers the next ``times`` uploads with ``status``.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from local.http import Fault, RecordedRequest, Request, Response, Simulator

API_VERSION = "2023-01-01"
RESOURCE = "https://monitor.azure.com"
MAX_BODY = 1024 * 1024
TOKEN_PATH = "/msi/token"


@dataclass(frozen=True)
class Upload:
    stream: str
    rows: list[dict[str, Any]]
    gzipped: bool


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, headers, content_type="application/json")


class SimulatedLogsIngestion(Simulator):
    name = "sim-logs-ingestion"

    def __init__(
        self,
        rule_id: str = "dcr-00000000000000000000000000000001",
        streams: tuple[str, ...] = ("Custom-VigilAlerts_CL", "Custom-VigilActivities_CL"),
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.rule_id, self.streams = rule_id, streams
        self.identity_header = secrets.token_hex(16)
        self._tokens: set[str] = set()
        self._uploads: list[Upload] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def identity_endpoint(self) -> str:
        return self.endpoint + TOKEN_PATH

    @property
    def refused(self) -> list[int]:
        """The statuses of the uploads refused (faults and checks), oldest first."""
        return [r.status for r in self.requests if r.path != TOKEN_PATH and r.status >= 300]

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` uploads that carry a token with `status`."""
        headers = {"Retry-After": retry_after} if retry_after else {}
        self.faults.add(
            Fault("POST", re.compile("^/dataCollectionRules/"), status, headers, times=times)
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def uploads(self, stream: str | None = None) -> list[Upload]:
        with self._lock:
            return [u for u in self._uploads if stream in (None, u.stream)]

    def rows(self, stream: str) -> list[dict[str, Any]]:
        return [r for u in self.uploads(stream) for r in u.rows]

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        return self._token(request) if record.path == TOKEN_PATH else self._upload(request)

    def _token(self, request: Request) -> Response:
        if request.headers.get("X-IDENTITY-HEADER", "") != self.identity_header:
            return _error(401, "unauthorized", "bad X-IDENTITY-HEADER")
        resource = request.args.get("resource", "").removesuffix("/.default").rstrip("/")
        if resource != RESOURCE:
            return _error(400, "invalid_resource", f"unknown resource {resource}")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens.add(token)
        body = {
            "access_token": token,
            "expires_on": str(int(time.time()) + 3600),
            "resource": request.args.get("resource", ""),
            "token_type": "Bearer",
        }
        return Response(json.dumps(body), 200, content_type="application/json")

    def _upload(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "dataCollectionRules" or parts[2] != "streams":
            return _error(404, "NotFound", "no such path")
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "POST only")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            known = scheme == "Bearer" and token in self._tokens
        if not known:
            return _error(401, "InvalidToken", "a bearer token for https://monitor.azure.com")
        fault = self.faults.take(request.method, request.path)
        if fault is not None:
            return _error(fault.status, "InjectedFault", "injected fault", fault.headers)
        if request.args.get("api-version") != API_VERSION:
            return _error(400, "InvalidApiVersion", f"api-version must be {API_VERSION}")
        if parts[1] != self.rule_id:
            return _error(404, "InvalidDcrImmutableId", "no data collection rule with that id")
        if parts[3] not in self.streams:
            return _error(400, "InvalidStream", f"the rule has no stream {parts[3]}")
        gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
        try:
            data = gzip.decompress(request.get_data()) if gzipped else request.get_data()
        except (OSError, EOFError):
            return _error(400, "InvalidContentEncoding", "the body is not gzip")
        if len(data) > MAX_BODY:
            return _error(413, "ContentLengthLimitExceeded", "more than 1 MB")
        try:
            rows = json.loads(data)
        except ValueError:
            return _error(400, "InvalidJson", "the body is not JSON")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return _error(400, "InvalidPayload", "the body must be a JSON array of objects")
        with self._lock:
            self._uploads.append(Upload(parts[3], rows, gzipped))
        return Response(None, 204)
