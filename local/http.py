"""The local stack's one HTTP serving layer (werkzeug), shared by every simulator and the host.

`Simulator` serves `_answer(request, record)` on a threaded werkzeug server on an ephemeral port,
over TLS when given a certificate (a throw-away CA from `TestCA`). Every request is recorded as a
`RecordedRequest` on arrival (status 0 until answered) with the secrets the simulator redacts;
`before_answer` hooks run after a request was carried out and before its answer is written (a test
can stop its client there); `faults` holds scripted answers (status, headers such as Retry-After,
body, delay) that a simulator consumes in order and shapes into its own error envelope.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import requests
import trustme
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request as Request  # re-exported: the simulators answer with them
from werkzeug.wrappers import Response as Response

logger = logging.getLogger(__name__)


@dataclass
class RecordedRequest:
    """One request a simulator received, its secrets redacted by that simulator.

    `path` is as sent, without the query; `endpoint` is what the simulator routes and hooks on
    (Workplace: the path without its version prefix, e.g. "/community/members"); `query` holds the
    last value of each parameter and `query_lists` all of them; header names are lower-case.
    `json`, `form` and `text` are the parsed body where the simulator parses it; `status` is the
    status answered (0 until then). Graph records `$batch` items too (`via_batch`).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    query_lists: dict[str, list[str]] = field(default_factory=dict)
    endpoint: str = ""
    version: str | None = None
    body: bytes = b""
    json: Any = None
    form: dict[str, str] | None = None
    text: str | None = None
    status: int = 0
    at: float = 0.0
    request_id: str = ""
    via_batch: bool = False
    batch_item_id: str | None = None

    @classmethod
    def of(cls, request: Request) -> RecordedRequest:
        """A request as it arrived: path and query as sent (not normalised), headers (lower-case
        names; werkzeug has joined repeated ones), body."""
        split = urlsplit(raw_target(request))
        lists = parse_qs(split.query, keep_blank_values=True)
        return cls(
            method=request.method,
            path=split.path,
            query={k: v[-1] for k, v in lists.items()},
            headers={k.lower(): v for k, v in request.headers.items()},
            query_lists=lists,
            endpoint=split.path,
            body=request.get_data(),
            at=time.time(),
        )


def raw_target(request: Request) -> str:
    """The request target (path and query) as the client sent it."""
    return str(request.environ.get("RAW_URI") or request.full_path)


@dataclass
class Fault:
    """A scripted answer for the next `times` requests whose method matches (or `"*"`) and whose
    path `pattern` is found in. `status` 0 answers as usual after `delay` seconds; otherwise the
    simulator answers `status` with `headers` and `body` (None: its own error envelope, using
    `code`, `subcode` and `message` where it has them)."""

    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    times: int = 1
    code: int | None = None
    subcode: int | None = None
    message: str = ""


def _matches(method: str, pattern: re.Pattern[str], request_method: str, path: str) -> bool:
    """Whether a fault's or hook's `method` (or "*") and path `pattern` match a request."""
    return method in ("*", request_method.upper()) and pattern.search(path) is not None


class Faults:
    """Scripted faults, consumed in the order they were added."""

    def __init__(self, stopping: threading.Event) -> None:
        self._items: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = stopping

    def add(self, fault: Fault) -> Fault:
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._items.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request (one of its `times` used), after its delay
        (cut short when the simulator stops); None when no fault matches."""
        with self._lock:
            fault = next(
                (f for f in self._items if _matches(f.method, f.pattern, method, path)), None
            )
            if fault is None:
                return None
            fault.times -= 1
            if fault.times <= 0:
                self._items.remove(fault)
        if fault.delay:
            self._stopping.wait(fault.delay)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    @property
    def pending(self) -> int:
        """How many fault answers are still to be served."""
        with self._lock:
            return sum(f.times for f in self._items)


class TestCA:
    """A throw-away CA and a `localhost` certificate; the CA is written to `ca_path` (under
    `state_dir`, or a temporary directory that `remove()` deletes)."""

    __test__ = False  # not a pytest class

    def __init__(self, state_dir: Path | None = None, prefix: str = "sim") -> None:
        self._ca = trustme.CA()
        self.cert = self._ca.issue_cert("localhost", "127.0.0.1")
        self._own_dir = state_dir is None
        self._dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-")) if state_dir is None else state_dir
        self.ca_path = self._dir / f"{prefix}-ca.pem"
        self.write()

    def write(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._ca.cert_pem.write_to_path(str(self.ca_path))

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.cert.configure_cert(context)
        return context

    def remove(self) -> None:
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


class _QuietHandler(WSGIRequestHandler):
    """No request lines in the log: a query string may carry a key or a token."""

    def log(self, type: str, message: str, *args: Any) -> None:
        logger.debug("http server %s: %s", type, message)


class Server:
    """A threaded werkzeug server for one WSGI app, in a daemon thread; OSError if the port is
    taken (werkzeug itself would exit the process)."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family) as sock:
            self._server: BaseWSGIServer = make_server(
                host,
                sock.getsockname()[1],
                app,
                threaded=True,
                request_handler=_QuietHandler,
                ssl_context=tls,
                fd=sock.fileno(),
            )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{name}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class Simulator:
    """Base of the simulators: lifecycle, recording, hooks and faults; subclasses answer."""

    name = "simulator"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: TestCA | None = None):
        self.host = host
        self._requested_port = port
        self._tls = tls
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._hooks: list[tuple[str, re.Pattern[str], Callable[[RecordedRequest], None]]] = []
        self._stopping = threading.Event()
        self.faults = Faults(self._stopping)
        self._server: Server | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the port and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running; call stop() first")
        self._stopping.clear()
        if self._tls is not None:
            self._tls.write()
        context = self._tls.context() if self._tls is not None else None
        self._server = Server(
            self._wsgi, name=self.name, host=self.host, port=self._requested_port, tls=context
        )

    def stop(self) -> None:
        """Stop serving (ending any fault's delay) and release the port. Safe to call twice."""
        server, self._server = self._server, None
        self._stopping.set()
        if server is not None:
            server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() or use `with`")
        return self._server.port

    # -- recording ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _keep(self, record: RecordedRequest) -> RecordedRequest:
        with self._lock:
            self._requests.append(record)
        return record

    def before_answer(
        self, method: str, path_regex: str, hook: Callable[[RecordedRequest], None]
    ) -> None:
        """Call `hook` once, on the next matching request (`path_regex` searched in its
        `endpoint`), after it was carried out and before the answer is written: a test can stop
        its client there (the client then never sees the answer)."""
        with self._lock:
            self._hooks.append((method.upper(), re.compile(path_regex), hook))

    # -- serving -----------------------------------------------------------------------------

    def _record(self, request: Request) -> RecordedRequest:
        """The record of a request as it arrives (subclasses redact their secrets)."""
        return RecordedRequest.of(request)

    def _answer(self, request: Request, record: RecordedRequest) -> Response:
        raise NotImplementedError

    def _crash(self) -> Response:
        return Response("simulator error", status=500)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        record = self._keep(self._record(request))
        try:
            response = self._answer(request, record)
        except Exception:  # a simulator bug: say so loudly, answer 500
            logger.exception("%s failed on %s %s", self.name, request.method, record.path)
            response = self._crash()
        record.status = response.status_code  # before answering: seen as soon as a call returns
        with self._lock:
            hook = next(
                (h for h in self._hooks if _matches(h[0], h[1], record.method, record.endpoint)),
                None,
            )
            if hook is not None:
                self._hooks.remove(hook)
        if hook is not None:
            hook[2](record)
        return response(environ, start_response)


class TlsSimulator(Simulator):
    """A simulator served over TLS: with the `TestCA` it is given (left to its owner), or with
    one of its own under `state_dir` (or a temporary directory removed on `stop`)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TestCA | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self._own_ca = tls is None
        self.ca = tls or TestCA(None if state_dir is None else Path(state_dir), prefix=self.name)
        self.ca_path: Path = self.ca.ca_path
        super().__init__(host=host, port=port, tls=self.ca)

    def stop(self) -> None:
        super().stop()
        if self._own_ca:
            self.ca.remove()

    def make_session(self) -> requests.Session:
        """A `requests.Session` that trusts only this CA and ignores proxy and CA settings."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path)
        return session
