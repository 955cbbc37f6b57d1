"""LocalFunctionsHost driving real handlers, against real Azurite."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from local.functions_host import (
    HostConfigurationError,
    LocalFunctionsHost,
    QueueOptions,
    next_occurrence,
    parse_timespan,
)

# ---- the app under test -----------------------------------------------------------------------

FUNCTION_KEY = "test-function-key"
ANONYMOUS = func.AuthLevel.ANONYMOUS
PLAIN_TEXT = ("Content-Type", "text/plain; charset=utf-8")


@dataclass
class Recorder:
    requests: list[func.HttpRequest] = field(default_factory=list)
    timers: list[func.TimerRequest] = field(default_factory=list)
    attempts: list[tuple[bytes, int | None]] = field(default_factory=list)
    processed: list[bytes] = field(default_factory=list)
    timer_fired: threading.Event = field(default_factory=threading.Event)
    message_processed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def build_app(rec: Recorder) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    bp = func.Blueprint()

    @bp.function_name("echo")
    @bp.route(route="echo/{name}", methods=["GET", "POST"], auth_level=ANONYMOUS)
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        rec.requests.append(req)
        payload = {
            "name": req.route_params.get("name"),
            "q": req.params.get("q"),
            "body": req.get_body().decode(),
            "header": req.headers.get("x-test"),
            "method": req.method,
            "url": req.url,
        }
        return func.HttpResponse(
            json.dumps(payload),
            status_code=201,
            headers={"X-Reply": "yes"},
            mimetype="application/json",
        )

    @bp.function_name("secret")
    @bp.route(route="secret", methods=["GET"])
    def secret(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("classified")

    @bp.function_name("boom")
    @bp.route(route="boom", methods=["GET"], auth_level=ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("kaboom")

    def route_params(name: str, route: str) -> None:
        def handler(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(json.dumps({"fn": name, **req.route_params}))

        bp.function_name(name)(
            bp.route(route=route, methods=["GET"], auth_level=ANONYMOUS)(handler)
        )

    route_params("by_action", "hooks/{action:regex(^(callback|webhook)$)}")  # like connect_http
    route_params("install", "hooks/install")
    route_params("item", "items/{id}/{verb:regex(^(approve|retry)$)}")  # like governance_http

    @bp.function_name("tick")
    @bp.timer_trigger(arg_name="mytimer", schedule="%TEST_SCHEDULE%")
    def tick(mytimer: func.TimerRequest) -> None:
        rec.timers.append(mytimer)
        rec.timer_fired.set()

    @bp.function_name("work")
    @bp.queue_trigger(arg_name="msg", queue_name="%TEST_QUEUE%", connection="AzureWebJobsStorage")
    def work(msg: func.QueueMessage) -> None:
        body = msg.get_body()
        with rec.lock:
            rec.attempts.append((body, msg.dequeue_count))
        if b"fail" in body:
            raise ValueError("asked to fail")
        with rec.lock:
            rec.processed.append(body)
        rec.message_processed.set()

    app.register_functions(bp)
    return app


def host_json(**queues: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "batchSize": 8,
        "newBatchThreshold": 0,
        "maxDequeueCount": 2,
        "visibilityTimeout": "00:00:00",
        "maxPollingInterval": "00:00:01",
        "messageEncoding": "base64",
        **queues,
    }
    return {"version": "2.0", "functionTimeout": "00:05:00", "extensions": {"queues": options}}


HostFactory = Callable[..., LocalFunctionsHost]
QueueFactory = Callable[..., QueueClient]


@pytest.fixture
def queue_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def make_host(
    azurite_connection_string: str, queue_name: str, rec: Recorder
) -> Iterator[HostFactory]:
    hosts: list[LocalFunctionsHost] = []

    def factory(
        *,
        schedule: str = "0 0 0 1 1 *",
        start: bool = False,
        app: func.FunctionApp | None = None,
        settings: dict[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        **queue_options: Any,
    ) -> LocalFunctionsHost:
        host = LocalFunctionsHost(
            app or build_app(rec),
            host_json=host_json(**queue_options),
            settings={"TEST_SCHEDULE": schedule, "TEST_QUEUE": queue_name, **(settings or {})},
            storage_connection_string=azurite_connection_string,
            function_key=FUNCTION_KEY,
            port=0,
            clock=clock,
        )
        hosts.append(host)
        if start:
            host.start()
        return host

    yield factory
    for host in hosts:
        host.stop()


@pytest.fixture
def queue(azurite_connection_string: str, queue_name: str) -> Iterator[QueueFactory]:
    """Clients of the test's queue (`suffix` "-poison": its poison queue): `raw` ones see the
    message text as stored, the others encode and decode as Vigil's producers do (base64)."""
    clients: list[QueueClient] = []

    def client(suffix: str = "", *, raw: bool = False) -> QueueClient:
        made = QueueClient.from_connection_string(
            azurite_connection_string,
            queue_name + suffix,
            message_encode_policy=None if raw else TextBase64EncodePolicy(),
            message_decode_policy=None if raw else TextBase64DecodePolicy(),
        )
        clients.append(made)
        with contextlib.suppress(ResourceExistsError):
            made.create_queue()
        return made

    yield client
    for made in clients:
        made.close()


# ---- pure helpers and configuration ----------------------------------------------------------

AT = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)
QUARTER = "0 */15 * * * *"


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/5 * * * * *", AT, AT.replace(second=5)),
        ("*/5 * * * * *", AT.replace(second=5), AT.replace(second=10)),
        (QUARTER, AT.replace(minute=7), AT.replace(minute=15, second=0)),
        (QUARTER, AT.replace(hour=23, minute=45, second=0), datetime(2024, 5, 2, tzinfo=UTC)),
        (QUARTER, AT.replace(minute=7, tzinfo=None), AT.replace(minute=15, second=0)),  # naive
        # NCrontab: day-of-month AND day-of-week -> the next Friday the 13th.
        ("0 0 9 13 * 5", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 9, 13, 9, tzinfo=UTC)),
    ],
)
def test_next_occurrence_is_utc_and_ncrontab_flavoured(
    schedule: str, after: datetime, expected: datetime
) -> None:
    assert next_occurrence(schedule, after) == expected


def test_timespans_and_queue_defaults() -> None:
    assert parse_timespan("00:00:30") == timedelta(seconds=30)
    assert parse_timespan("1.02:03:04") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    defaults = QueueOptions(16, 8, 5, timedelta(0), timedelta(minutes=1))
    assert QueueOptions.from_host_json({"version": "2.0"}) == defaults


def _only(register: Callable[[func.FunctionApp], Any]) -> Callable[[Recorder], func.FunctionApp]:
    """An app of the one function `register` adds."""

    def build(rec: Recorder) -> func.FunctionApp:
        app = func.FunctionApp(http_auth_level=ANONYMOUS)
        register(app)
        return app

    return build


def _route(route: str) -> Callable[[Recorder], func.FunctionApp]:
    return _only(lambda a: a.function_name("f")(a.route(route=route, methods=["GET"])(lambda r: r)))


def _timer(schedule: str) -> Callable[[Recorder], func.FunctionApp]:
    return _only(lambda a: a.function_name("t")(a.timer_trigger("t", schedule)(lambda t: None)))


def _fanout(app: func.FunctionApp) -> None:
    @app.function_name("fanout")
    @app.queue_trigger(arg_name="msg", queue_name="%TEST_QUEUE%", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="out", connection="AzureWebJobsStorage")
    def fanout(msg: func.QueueMessage, out: func.Out[str]) -> None:
        out.set("x")


@pytest.mark.parametrize(
    ("build", "options", "match"),
    [
        (_route("files/{*path}"), {}, "route syntax"),  # route syntax no function uses
        (_route("greet/{name=world}"), {}, "route syntax"),
        (_route("items/{id:int}"), {}, "route syntax"),
        (_only(_fanout), {}, "no other bindings"),  # bindings no function uses
        (_timer("%NOT_SET%"), {}, "app setting 'NOT_SET' is not defined"),
        (build_app, {"newBatchThreshold": 4}, "newBatchThreshold"),
        (build_app, {"messageEncoding": "utf8"}, "messageEncoding"),
        (_timer("*/15 * * * *"), {}, "6 fields"),
    ],
)
def test_what_the_local_host_does_not_run_is_refused(
    make_host: HostFactory,
    rec: Recorder,
    build: Callable[[Recorder], func.FunctionApp],
    options: dict[str, Any],
    match: str,
) -> None:
    with pytest.raises(HostConfigurationError, match=match):
        make_host(app=build(rec), **options)


def test_app_can_be_indexed_more_than_once(make_host: HostFactory, rec: Recorder) -> None:
    app = build_app(rec)
    assert len(app.get_functions()) == 8  # e.g. the bindings contract test, same process
    # azure-functions 1.26 quirk: a second get_functions() on one app raises.
    with pytest.raises(ValueError, match="unique function name"):
        app.get_functions()
    remembered = app.functions_bindings
    make_host(app=app)
    make_host(app=app)
    assert app.functions_bindings == remembered  # the host leaves the app as it found it


# ---- HTTP -----------------------------------------------------------------------------------


def test_http_route_params_query_body_and_headers(make_host: HostFactory, rec: Recorder) -> None:
    host = make_host(start=True)
    url = f"{host.base_url}/api/echo/J%C3%BCrgen?q=search%20me"
    answer = requests.post(url, data=b"hello body", headers={"X-Test": "header-value"}, timeout=10)
    assert (answer.status_code, answer.headers["X-Reply"]) == (201, "yes")
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {
        "name": "Jürgen",
        "q": "search me",
        "body": "hello body",
        "header": "header-value",
        "method": "POST",
        "url": url,
    }
    assert isinstance(rec.requests[0], func.HttpRequest)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "expected"),
    [
        # function keys: `?code=` or `x-functions-key`
        ("GET", "secret", {}, 401, None),
        ("GET", "secret?code=wrong", {}, 401, None),
        ("GET", "secret", {"x-functions-key": "wrong"}, 401, None),
        ("GET", f"secret?code={FUNCTION_KEY}", {}, 200, PLAIN_TEXT),
        ("GET", "secret", {"x-functions-key": FUNCTION_KEY}, 200, b"classified"),
        # not found, method not allowed
        ("GET", "nope", {}, 404, None),
        ("GET", "/elsewhere/echo/x", {}, 404, None),
        ("GET", "echo", {}, 404, None),  # route parameter missing
        ("DELETE", "echo/x", {}, 405, ("Allow", "GET, POST")),
        ("GET", "echo/x/", {}, 201, None),  # trailing slash tolerated
        ("GET", "boom", {}, 500, b"Internal Server Error"),  # the handler raised
        # literal segments, parameters and regex constraints (case-insensitive, like ASP.NET)
        ("GET", "hooks/webhook", {}, 200, {"fn": "by_action", "action": "webhook"}),
        ("GET", "HOOKS/Callback", {}, 200, {"fn": "by_action", "action": "Callback"}),
        ("GET", "hooks/install", {}, 200, {"fn": "install"}),
        ("GET", "hooks/other", {}, 404, None),
        ("GET", "items/a%2Fb/retry", {}, 200, {"fn": "item", "id": "a/b", "verb": "retry"}),
        ("GET", "items/7/revert", {}, 404, None),
    ],
)
def test_http_answers(
    make_host: HostFactory,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    expected: bytes | dict[str, str] | tuple[str, str] | None,
) -> None:
    """`expected`: the body (bytes), its JSON (dict) or a header (name, value)."""
    url = make_host(start=True).base_url + (path if path.startswith("/") else f"/api/{path}")
    answer = requests.request(method, url, headers=headers, timeout=10)
    assert answer.status_code == status
    if isinstance(expected, bytes):
        assert answer.content == expected
    elif isinstance(expected, dict):
        assert answer.json() == expected
    elif expected is not None:
        assert answer.headers[expected[0]] == expected[1]


def test_http_log_names_the_path_never_the_key_and_keeps_handler_tracebacks(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="local.functions_host")
    url = f"{make_host(start=True).base_url}/api"
    assert (
        requests.get(f"{url}/secret", params={"code": FUNCTION_KEY}, timeout=10).status_code == 200
    )
    assert requests.get(f"{url}/boom", timeout=10).status_code == 500
    messages = [r.getMessage() for r in caplog.records]
    assert any("GET /api/secret -> 200" in m for m in messages)
    assert not any(FUNCTION_KEY in m or "code=" in m for m in messages)
    failures = [r for r in caplog.records if r.exc_info and "boom" in r.getMessage()]
    assert failures
    assert "kaboom" in str(failures[0].exc_info[1])  # type: ignore[index]


# ---- timers ---------------------------------------------------------------------------------


def test_run_timer_passes_a_timer_request(make_host: HostFactory, rec: Recorder) -> None:
    host = make_host()
    host.run_timer("tick")
    host.run_timer("tick", past_due=True)
    assert [t.past_due for t in rec.timers] == [False, True]
    assert all(isinstance(t, func.TimerRequest) for t in rec.timers)
    assert isinstance(rec.timers[0], TimerRequest)
    assert "Next" in rec.timers[0].schedule_status
    with pytest.raises(KeyError):
        host.run_timer("work")


def test_timer_fires_on_schedule(make_host: HostFactory, rec: Recorder) -> None:
    make_host(schedule="* * * * * *", start=True)
    assert rec.timer_fired.wait(timeout=5)
    assert rec.timers[0].past_due is False


def test_scheduler_follows_the_injected_clock_and_flags_late_runs(
    make_host: HostFactory, rec: Recorder
) -> None:
    now = [datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)]
    make_host(schedule=QUARTER, clock=lambda: now[0], start=True)
    assert not rec.timer_fired.wait(timeout=0.2)  # next occurrence is 12:15:00
    now[0] = datetime(2024, 5, 1, 12, 15, 30, tzinfo=UTC)  # the process "slept" past it
    assert rec.timer_fired.wait(timeout=5)
    fired = rec.timers[0]
    assert isinstance(fired, TimerRequest)
    assert fired.past_due is True
    assert fired.schedule_status["Next"] == "2024-05-01T12:30:00+00:00"


def test_timer_executions_never_overlap(make_host: HostFactory) -> None:
    entered, release = [threading.Event(), threading.Event()], threading.Event()
    calls: list[int] = []
    app = func.FunctionApp()

    @app.function_name("slow")
    @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
    def slow(timer: func.TimerRequest) -> None:
        calls.append(len(calls))
        entered[len(calls) - 1].set()
        release.wait(timeout=10)

    host = make_host(app=app)
    first, second = [threading.Thread(target=host.run_timer, args=("slow",)) for _ in range(2)]
    first.start()
    assert entered[0].wait(timeout=5)
    second.start()
    assert not entered[1].wait(timeout=0.3)  # blocked behind the running execution
    release.set()
    first.join(timeout=5)
    second.join(timeout=5)
    assert calls == [0, 1]


# ---- queues ---------------------------------------------------------------------------------


def test_a_batch_of_base64_messages_is_decoded_processed_together_and_deleted(
    make_host: HostFactory, rec: Recorder, queue: QueueFactory
) -> None:
    host, sender = make_host(), queue()
    for body in ("m1", "m2", '{"pk": "p1", "rk": "r1"}'):
        sender.send_message(body)
    assert host.process_queue_once("work") == 3
    assert sorted(rec.processed) == [b"m1", b"m2", b'{"pk": "p1", "rk": "r1"}']
    assert sorted(rec.attempts) == [(b"m1", 1), (b"m2", 1), (b'{"pk": "p1", "rk": "r1"}', 1)]
    assert list(sender.peek_messages(max_messages=32)) == []
    assert host.process_queue_once("work") == 0


OVERRIDE = {"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "1"}


@pytest.mark.parametrize(
    ("options", "text", "encoded", "attempts"),
    [
        ({"maxDequeueCount": 2}, "please fail", True, 2),  # retried at once, then poisoned
        ({"maxDequeueCount": 5, "settings": OVERRIDE}, "fail now", True, 1),  # settings win
        # not base64 (the trap of the reference, section 3.2): poisoned at once, never run
        ({}, '{"not": "base64"}', False, 0),
    ],
)
def test_failing_message_is_retried_then_poisoned_as_sent(
    make_host: HostFactory,
    rec: Recorder,
    queue: QueueFactory,
    options: dict[str, Any],
    text: str,
    encoded: bool,
    attempts: int,
) -> None:
    host, sender, raw = make_host(**options), queue(raw=not encoded), queue(raw=True)
    sender.send_message(text)
    [original] = list(raw.peek_messages())
    assert original.content == (base64.b64encode(text.encode()).decode() if encoded else text)
    for attempt in range(1, max(attempts, 1) + 1):
        assert host.process_queue_once("work") == 1
        if attempt < attempts:  # made visible again at once (visibilityTimeout 0), counted
            [still_there] = list(sender.peek_messages())
            assert (still_there.content, still_there.dequeue_count) == (text, attempt)
    assert rec.attempts == [(text.encode(), n) for n in range(1, attempts + 1)]
    assert (rec.processed, list(raw.peek_messages())) == ([], [])
    [poisoned_raw] = list(queue("-poison", raw=True).peek_messages())
    assert poisoned_raw.content == original.content  # the raw text, as sent
    if encoded:
        [poisoned] = list(queue("-poison").peek_messages())
        assert poisoned.content == text


def test_failed_message_waits_for_the_visibility_timeout(
    make_host: HostFactory, queue: QueueFactory
) -> None:
    host = make_host(maxDequeueCount=5, visibilityTimeout="00:01:00")
    queue().send_message("fail later")
    assert host.process_queue_once("work") == 1
    assert host.process_queue_once("work") == 0  # invisible for a minute: the host's retry spacing
    assert queue(raw=True).get_queue_properties().approximate_message_count == 1


def test_background_poller_processes_messages(
    make_host: HostFactory, rec: Recorder, queue: QueueFactory
) -> None:
    host = make_host(start=True)
    queue().send_message("in the background")
    assert rec.message_processed.wait(timeout=10)
    assert rec.processed == [b"in the background"]
    host.stop()
    assert not any(thread.is_alive() for thread in host._threads)  # stopped, none left behind


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/console/", "/console/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/console/\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_the_played_sign_in_redirects_only_to_a_path_on_this_host(
    azurite_connection_string: str, rec: Recorder, target: str, location: str
) -> None:
    host = LocalFunctionsHost(
        build_app(rec),
        host_json=host_json(),
        settings={"TEST_SCHEDULE": "0 0 0 1 1 *", "TEST_QUEUE": "unused"},
        storage_connection_string=azurite_connection_string,
        function_key=FUNCTION_KEY,
        port=0,
        sign_ins={"token": "principal"},
    )
    host.start(triggers=False)
    try:
        answer = requests.post(
            f"{host.base_url}/.auth/login/aad",
            data={"who": "0", "post_login_redirect_uri": target},
            allow_redirects=False,
            timeout=10,
        )
    finally:
        host.stop()
    assert answer.status_code == 302 and answer.headers["Location"] == location
