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
import secrets
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API_VERSION = "2023-01-01"
RESOURCE = "https://monitor.azure.com"
MAX_BODY = 1024 * 1024


class _Quiet(WSGIRequestHandler):
    """No request lines in the log: a webhook's path is its credential."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass(frozen=True)
class Upload:
    stream: str
    rows: list[dict[str, Any]]
    gzipped: bool
    request_id: str


def _error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status, content_type="application/json")


class SimulatedLogsIngestion:
    def __init__(
        self,
        rule_id: str = "dcr-00000000000000000000000000000001",
        streams: tuple[str, ...] = ("Custom-VigilAlerts_CL", "Custom-VigilActivities_CL"),
        port: int = 0,
    ) -> None:
        self.rule_id, self.streams = rule_id, streams
        self.identity_header = secrets.token_hex(16)
        self._tokens: set[str] = set()
        self._uploads: list[Upload] = []
        self._faults: list[tuple[int, str | None]] = []
        self.refused: list[int] = []  # statuses of requests refused (faults and checks)
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self._app, threaded=True, request_handler=_Quiet
        )
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def identity_endpoint(self) -> str:
        return f"{self.endpoint}/msi/token"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sim-logs-ingestion", daemon=True
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
            self._faults += [(status, retry_after)] * times

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def uploads(self, stream: str | None = None) -> list[Upload]:
        with self._lock:
            return [u for u in self._uploads if stream is None or u.stream == stream]

    def rows(self, stream: str) -> list[dict[str, Any]]:
        return [r for u in self.uploads(stream) for r in u.rows]

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/msi/token":
            response = self._token(request)
        else:
            response = self._upload(request)
            if response.status_code >= 300:
                with self._lock:
                    self.refused.append(response.status_code)
        return response(environ, start_response)

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
        auth = request.headers.get("Authorization", "")
        with self._lock:
            known = auth.startswith("Bearer ") and auth[7:] in self._tokens
            fault = self._faults.pop(0) if self._faults and known else None
        if not known:
            return _error(401, "InvalidToken", "a bearer token for https://monitor.azure.com")
        if fault is not None:
            response = _error(fault[0], "InjectedFault", "injected fault")
            if fault[1]:
                response.headers["Retry-After"] = fault[1]
            return response
        if request.args.get("api-version") != API_VERSION:
            return _error(400, "InvalidApiVersion", f"api-version must be {API_VERSION}")
        if parts[1] != self.rule_id:
            return _error(404, "InvalidDcrImmutableId", "no data collection rule with that id")
        if parts[3] not in self.streams:
            return _error(400, "InvalidStream", f"the rule has no stream {parts[3]}")
        raw = request.get_data()
        gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
        try:
            data = gzip.decompress(raw) if gzipped else raw
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
        request_id = secrets.token_hex(8)
        with self._lock:
            self._uploads.append(Upload(parts[3], rows, gzipped, request_id))
        return Response(None, 204)
