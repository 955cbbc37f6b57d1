"""A local stand-in for the Azure Functions host (Core Tools cannot be installed here).

``LocalFunctionsHost`` indexes a v2 ``func.FunctionApp`` as the Python worker does and drives the
real user functions, for what Vigil's functions use (anything else is refused when indexing):

* **HTTP** at ``/api/<route>``: literal segments, ``{name}`` and ``{name:regex(...)}``, matched
  case-insensitively as ASP.NET does; unknown path 404, another method 405 (the real host says
  404, azure-functions-host#10098); ``FUNCTION`` needs the key in ``?code=`` or
  ``x-functions-key`` (401); a handler exception is 500. The query string is never logged. App
  Service Authentication is played (``sign_ins``): a known ``Authorization: Bearer`` token, or
  the ``AppServiceAuthSession`` cookie set by ``/.auth/login/aad`` (choose a person, no password),
  reaches the function as that person's ``X-MS-CLIENT-PRINCIPAL``; such headers a client sends
  itself are removed.
* **Timer**: 6-field NCRONTAB in UTC (day-of-month AND day-of-week, as NCrontab); executions of a
  function never overlap; missed occurrences are skipped; ``past_due`` when over 1 s late.
* **Queue**: a poller per function receives up to ``batchSize`` base64 messages (leased for
  ``functionTimeout`` + 1 min), runs them concurrently and polls again when they are done
  (``newBatchThreshold`` 0, Vigil's; any other is refused). Success deletes; a failure makes the
  message visible again after ``visibilityTimeout``, or at ``maxDequeueCount`` copies its raw text
  to ``<queue>-poison`` and deletes it (a body that is not base64: at once). Empty polls back off
  exponentially from 100 ms to ``maxPollingInterval``.

``%NAME%`` in a binding is the app setting ``NAME``; ``AzureFunctionsJobHost__a__b`` settings
override host.json (both as in the host).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hmac
import html
import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage as _FunctionsQueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageQueueMessage
from croniter import croniter

from local.http import RecordedRequest, Request, Response, Server, raw_target
from shared import storage
from shared.access import decode_principal

_LOG: Final = logging.getLogger(__name__)

# azure.functions.queue.QueueMessage.__init__ has no annotations; give it a typed name.
_make_queue_message: Callable[..., func.QueueMessage] = _FunctionsQueueMessage

_MIN_POLLING_INTERVAL: Final = timedelta(milliseconds=100)
_MAX_VISIBILITY: Final = timedelta(days=7)
_PAST_DUE_TOLERANCE: Final = timedelta(seconds=1)
_SCHEDULER_TICK_SECONDS: Final = 0.5
_STOP_GRACE_SECONDS: Final = 1.5
_HOST_OVERRIDE_PREFIX: Final = "azurefunctionsjobhost__"
_QUEUE_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
_SETTING_REFERENCE: Final = re.compile(r"%([^%]+)%")
_TIMESPAN: Final = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})$")
_ROUTE_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::regex\((.*)\))?\}")
_HOP_BY_HOP: Final = frozenset({"content-length", "transfer-encoding", "connection"})
_SESSION_COOKIE: Final = "AppServiceAuthSession"


class HostConfigurationError(ValueError):
    """The app, ``host.json`` or the settings cannot be run (the host would fail to index)."""


def parse_timespan(value: str) -> timedelta:
    """A host.json TimeSpan (``"00:00:30"``, ``"1.02:00:00"``)."""
    match = _TIMESPAN.fullmatch(str(value).strip())
    if match is None:
        raise HostConfigurationError(f"not a TimeSpan ('[d.]hh:mm:ss'): {value!r}")
    days, hours, minutes, seconds = (int(match[k] or 0) for k in ("days", "h", "m", "s"))
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def next_occurrence(schedule: str, after: datetime) -> datetime:
    """The first occurrence of a 6-field NCRONTAB ``schedule`` strictly after ``after``, in UTC."""
    expression = schedule.strip()
    if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
        raise HostConfigurationError(
            f"invalid NCRONTAB schedule {schedule!r}: it needs 6 fields ('{{second}} {{minute}} "
            "{hour} {day} {month} {day-of-week}', e.g. '0 */15 * * * *')"
        )
    # NCrontab matches a day only if day-of-month AND day-of-week match (unlike Vixie cron).
    cron = croniter(expression, _utc(after), second_at_beginning=True, day_or=False)
    occurrence: datetime = cron.get_next(datetime)
    return occurrence.astimezone(UTC)


def _lower(value: Any) -> Any:
    """host.json with its keys lower-cased (the host reads them case-insensitively)."""
    return {k.lower(): _lower(v) for k, v in value.items()} if isinstance(value, dict) else value


def _host_config(host_json: Mapping[str, Any], settings: Mapping[str, str]) -> dict[str, Any]:
    """host.json (keys lower-cased) with the ``AzureFunctionsJobHost__a__b=value`` settings."""
    merged: dict[str, Any] = _lower(dict(host_json))
    for name, value in settings.items():
        path = name.lower().removeprefix(_HOST_OVERRIDE_PREFIX).split("__")
        if not name.lower().startswith(_HOST_OVERRIDE_PREFIX) or not all(path):
            continue
        node = merged
        for part in path[:-1]:
            node[part] = node[part] if isinstance(node.get(part), dict) else {}
            node = node[part]
        node[path[-1]] = value
    return merged


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with the host's defaults (base64 messages only)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        queues = _lower(dict(host_json)).get("extensions", {}).get("queues", {})
        if str(queues.get("messageencoding", "base64")).lower() != "base64":
            raise HostConfigurationError("extensions.queues.messageEncoding must be 'base64'")
        try:
            batch_size = int(queues.get("batchsize", 16))
            options = cls(
                batch_size,
                int(queues.get("newbatchthreshold", batch_size // 2)),
                int(queues.get("maxdequeuecount", 5)),
                parse_timespan(queues.get("visibilitytimeout", "00:00:00")),
                parse_timespan(queues.get("maxpollinginterval", "00:01:00")),
            )
        except ValueError as error:
            raise HostConfigurationError(f"extensions.queues: {error}") from None
        if not (1 <= options.batch_size <= 32 and options.max_dequeue_count >= 1):
            raise HostConfigurationError("extensions.queues: batchSize 1..32, maxDequeueCount >= 1")
        return options


def _resolve(binding: Mapping[str, Any], settings: Mapping[str, str], where: str) -> dict[str, Any]:
    """The binding with each ``%NAME%`` replaced by the app setting ``NAME``."""

    def replace(match: re.Match[str]) -> str:
        if match[1] not in settings:
            raise HostConfigurationError(f"{where}: app setting {match[1]!r} is not defined")
        return settings[match[1]]

    return {
        k: _SETTING_REFERENCE.sub(replace, v) if isinstance(v, str) else v
        for k, v in binding.items()
    }


@dataclass(frozen=True)
class _Function:
    name: str
    trigger: Mapping[str, Any]  # the trigger binding, settings resolved
    run: Callable[..., Any]


@dataclass(frozen=True)
class _HttpRoute:
    function: _Function
    template: str
    pattern: re.Pattern[str]
    checks: Mapping[str, re.Pattern[str]]  # {name:regex(...)} constraints, searched in the value
    methods: frozenset[str]
    auth_level: str

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        values = {k: unquote(v) for k, v in found.groupdict().items()} if found else None
        if values is None or any(not c.search(values[k]) for k, c in self.checks.items()):
            return None  # a constraint rejects the value: the route does not match
        return values


@dataclass
class _Timer:
    function: _Function
    schedule: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: datetime | None = None


@dataclass(frozen=True)
class _Queue:
    function: _Function
    name: str
    poison: str  # "<name>-poison"


def _compile_route(template: str, where: str) -> tuple[re.Pattern[str], dict[str, re.Pattern[str]]]:
    """A route template as a case-insensitive regex (literals, ``{name}``) and the constraints
    of its ``{name:regex(...)}`` parameters (case-insensitive ``Regex.IsMatch``, as ASP.NET)."""
    regex, checks, position, stripped = "", {}, 0, template.strip("/")
    for match in [*_ROUTE_PARAM.finditer(stripped), None]:
        literal = stripped[position : match.start() if match else None]
        if "{" in literal or "}" in literal:
            raise HostConfigurationError(f"{where}: route syntax the local host does not support")
        regex += re.escape(literal)
        if match is not None:
            regex += f"(?P<{match.group(1)}>[^/]+)"
            if match.group(2) is not None:
                checks[match.group(1)] = re.compile(match.group(2), re.IGNORECASE)
            position = match.end()
    return re.compile(regex, re.IGNORECASE), checks


def _text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(text, status, headers, mimetype="text/plain")


def _local_path(target: str) -> bool:
    """Whether a redirect target stays on this host: a path, never `//host` or `/\\host`
    (browsers read a backslash as a slash), and nothing a header cannot carry."""
    return target.startswith("/") and target[1:2] not in ("/", "\\") and target.isprintable()


def _principal_label(encoded: str) -> str:
    """ "name (roles)" of an `X-MS-CLIENT-PRINCIPAL` the host signs in with."""
    who = decode_principal(encoded)
    return f"{who.name} ({', '.join(sorted(who.roles))})" if who else "?"


def _http_response(value: Any) -> Response:
    """What an HTTP function returned, as the worker's ``HttpResponseConverter`` answers it."""
    if not isinstance(value, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(value).__name__}, not func.HttpResponse")
    headers = [(str(k), str(v)) for k, v in value.headers.items() if k.lower() not in _HOP_BY_HOP]
    if not any(name.lower() == "content-type" for name, _ in headers):
        mimetype = str(value.mimetype)
        text = mimetype.startswith("text/")
        headers.append(
            ("Content-Type", f"{mimetype}; charset={value.charset}" if text else mimetype)
        )
    return Response(value.get_body() or b"", int(value.status_code), headers)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


class LocalFunctionsHost:
    """Runs the functions of a ``func.FunctionApp`` locally, like the Functions host would."""

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        host_json: dict[str, Any],
        settings: Mapping[str, str],
        storage_connection_string: str,
        function_key: str,
        port: int = 7071,
        clock: Callable[[], datetime] | None = None,
        sign_ins: Mapping[str, str] | None = None,
    ) -> None:
        """`sign_ins`: the `X-MS-CLIENT-PRINCIPAL` of each bearer token App Service would accept."""
        if not function_key:
            raise HostConfigurationError("function_key must not be empty")
        self._settings: Mapping[str, str] = dict(settings)
        config = _host_config(host_json, self._settings)
        self._connection_string = storage_connection_string
        self._function_key = function_key.encode("utf-8")
        self._sign_ins: Mapping[str, str] = dict(sign_ins or {})
        self._port = port
        self._clock_source: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._queue_options = QueueOptions.from_host_json(config)
        if self._queue_options.new_batch_threshold != 0:
            raise HostConfigurationError(
                "extensions.queues.newBatchThreshold: the local host fetches the next batch when "
                "the last is done; set it to 0"
            )
        timeout = parse_timespan(str(config.get("functiontimeout", "00:30:00")))
        self._lease = int(min(timeout + timedelta(minutes=1), _MAX_VISIBILITY).total_seconds())
        self._routes: list[_HttpRoute] = []
        self._timers: dict[str, _Timer] = {}
        self._queues: dict[str, _Queue] = {}
        self._index(app)

        self._stop_event = threading.Event()  # set by stop(): the host runs once
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._clients: dict[str, QueueClient] = {}
        self._clients_lock = threading.Lock()

    # ---- indexing -------------------------------------------------------------------------

    def _index(self, app: func.FunctionApp) -> None:
        # FunctionApp.get_functions() remembers the names it has seen in ``functions_bindings``
        # and raises "does not have a unique function name" on a second call. Index with a
        # clean slate and put the attribute back, so this host neither fails nor changes the app.
        remembered, app.functions_bindings = app.functions_bindings, None
        try:
            functions = app.get_functions()
        finally:
            app.functions_bindings = remembered
        for function in functions:
            name = function.get_function_name() or function.get_user_function().__name__
            where = f"function '{name}'"
            bindings: list[Mapping[str, Any]] = json.loads(function.get_function_json())["bindings"]
            triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
            others = [b for b in bindings if b not in triggers]
            if len(triggers) != 1 or any(
                (b.get("type"), b.get("name")) != ("http", "$return") for b in others
            ):
                raise HostConfigurationError(
                    f"{where}: the local host runs one trigger and an HTTP $return, no other "
                    "bindings"
                )
            trigger = _resolve(triggers[0], self._settings, where)
            indexed = _Function(name, trigger, function.get_user_function())
            if trigger["type"] == "httpTrigger":
                template = str(trigger.get("route") or name)
                methods = frozenset(str(m).upper() for m in trigger.get("methods") or ())
                if not methods:
                    raise HostConfigurationError(f"{where}: list the HTTP methods it answers")
                pattern, checks = _compile_route(template, where)
                level = str(trigger.get("authLevel", "FUNCTION")).upper()
                self._routes.append(_HttpRoute(indexed, template, pattern, checks, methods, level))
            elif trigger["type"] == "timerTrigger" and not trigger.get("runOnStartup"):
                schedule = str(trigger.get("schedule", ""))
                next_occurrence(schedule, datetime.now(UTC))  # validate now, like the host
                self._timers[name] = _Timer(indexed, schedule)
            elif trigger["type"] == "queueTrigger":
                queue_name = str(trigger.get("queueName", "")).lower()  # as the host
                queue = _Queue(indexed, queue_name, f"{queue_name}-poison")
                for candidate in (queue.name, queue.poison):
                    if not _QUEUE_NAME.fullmatch(candidate):
                        raise HostConfigurationError(f"{where}: invalid queue name {candidate!r}")
                self._queues[name] = queue
            else:
                raise HostConfigurationError(f"{where}: not supported by the local host")
        # Literal segments before parameters, as ASP.NET orders them.
        self._routes.sort(key=lambda r: -sum("{" not in s for s in r.template.split("/")))

    @property
    def http_routes(self) -> dict[str, frozenset[str]]:
        """The methods of each HTTP function (what a test can enumerate to cover them all)."""
        return {r.function.name: r.methods for r in self._routes}

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port``; with ``port=0`` the ephemeral port is known after ``start()``."""
        port = self._server.port if self._server is not None else self._port
        if not port:
            raise RuntimeError("port 0: the port is chosen by start()")
        return f"http://127.0.0.1:{port}"

    def start(self, *, triggers: bool = True) -> None:
        """Serve HTTP and, with `triggers`, run a scheduler per timer and a poller per queue
        (without: they run when a test calls `run_timer()` / `process_queue_once()`)."""
        if self._server is not None or self._stop_event.is_set():
            raise RuntimeError("LocalFunctionsHost can be started once")
        self._server = Server(self._wsgi, name="vigil-local-http", port=self._port)
        for name, timer in (self._timers if triggers else {}).items():
            self._spawn(f"timer-{name}", functools.partial(self._timer_loop, timer))
        for name, queue in (self._queues if triggers else {}).items():
            self._spawn(f"queue-{name}", functools.partial(self._queue_loop, queue))
        _LOG.info(
            "Local Functions host started on %s: %d HTTP, %d timer, %d queue function(s)",
            self.base_url,
            len(self._routes),
            len(self._timers),
            len(self._queues),
        )

    def stop(self) -> None:
        """Stop everything (idempotent); in-flight work gets ~1.5 s, then is left behind."""
        if self._stop_event.is_set():
            return
        self._stop_event.set()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        if self._server is not None:
            self._server.stop()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                _LOG.warning("%s is still running after stop(); left behind", thread.name)
        if not any(thread.is_alive() for thread in self._threads):
            with self._clients_lock:
                for client in self._clients.values():
                    client.close()
                self._clients.clear()
        _LOG.info("Local Functions host stopped")

    def _clock(self) -> datetime:
        return _utc(self._clock_source())

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"vigil-local-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _invoke(self, function: _Function, trigger_value: Any, reason: str) -> Any:
        """Call the user function with its trigger; raises what the function raised."""
        name, invocation, started = function.name, str(uuid.uuid4()), time.perf_counter()
        _LOG.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, invocation)
        executed = "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)"
        try:
            result = function.run(**{str(function.trigger["name"]): trigger_value})
        except Exception:
            _LOG.exception(executed, name, "Failed", invocation, _ms(started))
            raise
        _LOG.info(executed, name, "Succeeded", invocation, _ms(started))
        return result

    # ---- HTTP -----------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request, started = Request(environ), time.perf_counter()
        path = request.path  # never log the query string: it may carry a key
        try:
            response = self._dispatch_http(request)
        except Exception:
            _LOG.exception("HTTP %s %s: the local host failed", request.method, path)
            response = _text(500, "Internal Server Error")
        # Logged before answering, so a caller that has its answer finds the line written.
        _LOG.info(
            "HTTP %s %s -> %d (%d ms)", request.method, path, response.status_code, _ms(started)
        )
        return response(environ, start_response)

    def _dispatch_http(self, request: Request) -> Response:
        incoming = RecordedRequest.of(request)
        method, path = incoming.method, incoming.path.rstrip("/")
        if path.lower() == "/.auth/login/aad" and self._sign_ins:
            return self._sign_in(request)
        api = path[5:] if path.lower().startswith("/api/") else None
        matches = [
            (r, m) for r in self._routes if api is not None and (m := r.match(api)) is not None
        ]
        if not matches:
            return _text(404, "Not Found")
        allowed = [(r, m) for r, m in matches if method in r.methods]
        if not allowed:
            methods = ", ".join(sorted(set().union(*(r.methods for r, _ in matches))))
            return _text(405, "Method Not Allowed", {"Allow": methods})
        route, found = allowed[0]
        query = {k: ",".join(v) for k, v in incoming.query_lists.items()}
        headers = self._authenticated(incoming.headers)
        if route.auth_level != "ANONYMOUS" and not self._key_matches(query, headers):
            return Response(status=401)
        http_request = func.HttpRequest(
            method,
            f"http://{request.host}{raw_target(request)}",
            headers=headers,
            params=query,
            route_params=found,
            body=incoming.body,
        )
        reason = "This function was programmatically called via the host APIs."
        try:
            value = self._invoke(route.function, http_request, reason)
        except Exception:  # logged with its traceback by _invoke
            return _text(500, "Internal Server Error")
        return _http_response(value)  # not an HttpResponse: _wsgi logs it and answers 500

    def _sign_in(self, request: Request) -> Response:
        """App Service's `/.auth/login/aad`, played: a page to choose one of the people the host
        signs in (no password: it is the local stand-in for Entra's sign-in), then the session
        cookie and a redirect to `post_login_redirect_uri` (a path on this host only)."""
        people = list(self._sign_ins.items())
        if request.method == "POST":
            form = dict(parse_qsl(request.get_data().decode("utf-8", "replace")))
            back = form.get("post_login_redirect_uri", "/")
            if not _local_path(back):
                back = "/"
            index = form.get("who", "")
            if not index.isdigit() or int(index) >= len(people):
                return _text(400, "choose who signs in")
            cookie = f"{_SESSION_COOKIE}={people[int(index)][0]}; Path=/; HttpOnly; SameSite=Strict"
            return Response(status=302, headers={"Location": back, "Set-Cookie": cookie})
        back = html.escape(request.args.get("post_login_redirect_uri", "/"))
        buttons = "".join(
            f'<p><button name="who" value="{i}">{html.escape(_principal_label(p))}</button></p>'
            for i, (_, p) in enumerate(people)
        )
        page = (
            "<!doctype html><title>Sign in (local)</title><h1>Sign in to Vigil (local)</h1>"
            f'<form method="post"><input type="hidden" name="post_login_redirect_uri" '
            f'value="{back}">{buttons}</form>'
        )
        return Response(page, 200, mimetype="text/html")

    def _authenticated(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers as App Service passes them on: principal headers only of its own making,
        for a known bearer token or session cookie."""
        kept = {k: v for k, v in headers.items() if not k.startswith("x-ms-client-principal")}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            cookies = SimpleCookie()
            cookies.load(headers.get("cookie", ""))
            session = cookies.get(_SESSION_COOKIE)
            token = session.value if session else ""
        principal = self._sign_ins.get(token.strip())
        if principal is not None:
            kept["x-ms-client-principal"] = principal
            kept["x-ms-client-principal-idp"] = "aad"
        return kept

    def _key_matches(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        return any(
            candidate is not None and hmac.compare_digest(candidate.encode(), self._function_key)
            for candidate in (query.get("code"), headers.get("x-functions-key"))
        )

    # ---- timers ---------------------------------------------------------------------------

    def run_timer(self, function_name: str, past_due: bool = False) -> None:
        """Invoke a timer function now, after any running execution of it; raises what it does."""
        timer = self._timers.get(function_name)
        if timer is None:
            raise KeyError(f"no timer function named {function_name!r}")
        self._fire_timer(timer, past_due, "This function was called manually.")

    def _fire_timer(
        self, timer: _Timer, past_due: bool, reason: str, scheduled: datetime | None = None
    ) -> None:
        with timer.lock:  # singleton: executions of one timer function never overlap
            now = self._clock()
            occurrence = scheduled or now
            status = {
                "Last": (timer.last or datetime(1, 1, 1, tzinfo=UTC)).isoformat(),
                "Next": next_occurrence(timer.schedule, max(now, occurrence)).isoformat(),
                "LastUpdated": now.isoformat(),
            }
            request = TimerRequest(
                past_due=past_due, schedule_status=status, schedule={"AdjustForDST": True}
            )
            timer.last = occurrence
            self._invoke(timer.function, request, reason)

    def _timer_loop(self, timer: _Timer) -> None:
        upcoming = next_occurrence(timer.schedule, self._clock())
        _LOG.info("Timer '%s': next occurrence %s", timer.function.name, upcoming.isoformat())
        while not self._stop_event.is_set():
            now = self._clock()
            if now < upcoming:
                wait = min((upcoming - now).total_seconds(), _SCHEDULER_TICK_SECONDS)
                self._stop_event.wait(wait)
                continue
            late = now - upcoming > _PAST_DUE_TOLERANCE
            try:
                self._fire_timer(timer, late, f"Timer fired at {now.isoformat()}", upcoming)
            except Exception:  # already logged with its traceback by _invoke
                _LOG.warning("Timer '%s' failed; the schedule goes on", timer.function.name)
            upcoming = next_occurrence(timer.schedule, max(self._clock(), upcoming))

    # ---- queues ---------------------------------------------------------------------------

    def process_queue_once(self, function_name: str) -> int:
        """Receive one batch for a queue function and process it (concurrently); the number of
        messages received and handled (succeeded, retried or poisoned)."""
        queue = self._queues.get(function_name)
        if queue is None:
            raise KeyError(f"no queue-triggered function named {function_name!r}")
        pages = self._client(queue.name).receive_messages(
            messages_per_page=self._queue_options.batch_size, visibility_timeout=self._lease
        )
        messages = list(next(pages.by_page(), []))
        if messages:
            with ThreadPoolExecutor(len(messages)) as pool:
                list(pool.map(functools.partial(self._process, queue), messages))
        return len(messages)

    def _queue_loop(self, queue: _Queue) -> None:
        idle = 0  # consecutive empty or failed polls
        while not self._stop_event.is_set():
            try:
                handled = self.process_queue_once(queue.function.name)
            except Exception as exc:  # storage down, bad connection string, ...: keep polling
                _LOG.warning("Polling queue '%s' failed: %s", queue.name, exc)
                handled = 0
            idle = 0 if handled else idle + 1
            if idle:  # randomised exponential backoff: 100 ms doubling up to maxPollingInterval
                backoff = _MIN_POLLING_INTERVAL.total_seconds() * (1 << min(idle - 1, 30))
                maximum = self._queue_options.max_polling_interval.total_seconds()
                self._stop_event.wait(min(maximum, backoff * random.uniform(0.8, 1.2)))

    def _process(self, queue: _Queue, message: StorageQueueMessage) -> None:
        """Run the function for one message and settle it; never raises."""
        try:
            self._settle(queue, message)
        except Exception:
            _LOG.exception("Settling message %s of queue '%s' failed", message.id, queue.name)

    def _settle(self, queue: _Queue, message: StorageQueueMessage) -> None:
        client, raw = self._client(queue.name), str(message.content or "")
        if self._stop_event.is_set():  # shutting down: give the message back right away
            client.update_message(message.id, message.pop_receipt, visibility_timeout=0)
            return
        try:
            body = base64.b64decode("".join(raw.split()), validate=True)
        except ValueError:  # binascii.Error
            failed = "Message decoding has failed! Check MessageEncoding settings."
            self._to_poison(queue, message, raw, f"{failed} MessageId={message.id}.")
            return
        value = _make_queue_message(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        try:
            self._invoke(queue.function, value, f"New queue message detected on '{queue.name}'.")
        except Exception:
            limit = self._queue_options.max_dequeue_count
            if (message.dequeue_count or 1) < limit:
                delay = int(self._queue_options.visibility_timeout.total_seconds())
                client.update_message(message.id, message.pop_receipt, visibility_timeout=delay)
                return
            self._to_poison(queue, message, raw, f"Message has reached MaxDequeueCount of {limit}.")
            return
        client.delete_message(message.id, message.pop_receipt)

    def _to_poison(self, queue: _Queue, message: StorageQueueMessage, raw: str, why: str) -> None:
        """The original raw text to `<queue>-poison`, then the message deleted."""
        _LOG.warning("%s Moving message to queue '%s'.", why, queue.poison)
        self._client(queue.poison).send_message(raw)
        self._client(queue.name).delete_message(message.id, message.pop_receipt)

    def _client(self, queue_name: str) -> QueueClient:
        """A raw-text client for ``queue_name``; the queue is created the first time."""
        with self._clients_lock:
            if queue_name not in self._clients:
                client = QueueClient.from_connection_string(
                    self._connection_string, queue_name, raw_request_hook=storage.on_request
                )
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                self._clients[queue_name] = client
            return self._clients[queue_name]
