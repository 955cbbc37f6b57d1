"""LocalFunctionsHost driving real handlers, against real Azurite."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
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
    @bp.route(route="echo/{name}", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
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
    @bp.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("kaboom")

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
    }
    options.update(queues)
    return {"version": "2.0", "functionTimeout": "00:05:00", "extensions": {"queues": options}}


HostFactory = Callable[..., LocalFunctionsHost]


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


_open_clients: list[QueueClient] = []


@pytest.fixture(autouse=True)
def _close_test_clients() -> Iterator[None]:
    yield
    while _open_clients:
        _open_clients.pop().close()


def producer(connection: str, name: str) -> QueueClient:
    """How Vigil's producers enqueue: the SDK with the base64 policies."""
    client = QueueClient.from_connection_string(
        connection,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    _open_clients.append(client)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def raw_client(connection: str, name: str) -> QueueClient:
    """A client without encoding policies: sees the raw message text."""
    client = QueueClient.from_connection_string(connection, name)
    _open_clients.append(client)
    return client


def call(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


# ---- pure helpers ---------------------------------------------------------------------------


def test_next_occurrence_every_five_seconds() -> None:
    at = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)
    assert next_occurrence("*/5 * * * * *", at) == datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
    on_the_dot = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
    assert next_occurrence("*/5 * * * * *", on_the_dot) == datetime(
        2024, 5, 1, 12, 0, 10, tzinfo=UTC
    )


def test_next_occurrence_every_fifteen_minutes() -> None:
    at = datetime(2024, 5, 1, 12, 7, 3, tzinfo=UTC)
    assert next_occurrence("0 */15 * * * *", at) == datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    at = datetime(2024, 5, 1, 23, 45, 0, tzinfo=UTC)
    assert next_occurrence("0 */15 * * * *", at) == datetime(2024, 5, 2, 0, 0, tzinfo=UTC)


def test_next_occurrence_is_utc_and_ncrontab_flavoured() -> None:
    naive = datetime(2024, 5, 1, 12, 7, 3)
    assert next_occurrence("0 */15 * * * *", naive) == datetime(2024, 5, 1, 12, 15, tzinfo=UTC)
    # NCrontab: day-of-month AND day-of-week -> the next Friday the 13th.
    friday_13th = next_occurrence("0 0 9 13 * 5", datetime(2024, 1, 1, tzinfo=UTC))
    assert friday_13th == datetime(2024, 9, 13, 9, 0, tzinfo=UTC)
    with pytest.raises(HostConfigurationError, match="6"):
        next_occurrence("*/15 * * * *", naive)


def test_parse_timespan_and_queue_defaults() -> None:
    assert parse_timespan("00:00:30") == timedelta(seconds=30)
    assert parse_timespan("1.02:03:04") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    defaults = QueueOptions.from_host_json({"version": "2.0"})
    assert defaults == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_dequeue_count=5,
        visibility_timeout=timedelta(0),
        max_polling_interval=timedelta(minutes=1),
    )
    with pytest.raises(HostConfigurationError, match="messageEncoding"):
        QueueOptions.from_host_json({"extensions": {"queues": {"messageEncoding": "utf8"}}})


def test_missing_setting_is_named(azurite_connection_string: str, rec: Recorder) -> None:
    with pytest.raises(HostConfigurationError, match="TEST_QUEUE"):
        LocalFunctionsHost(
            build_app(rec),
            host_json=host_json(),
            settings={"TEST_SCHEDULE": "0 0 0 1 1 *"},
            storage_connection_string=azurite_connection_string,
            function_key=FUNCTION_KEY,
        )


def test_app_can_be_indexed_more_than_once(make_host: HostFactory, rec: Recorder) -> None:
    app = build_app(rec)
    assert len(app.get_functions()) == 5  # e.g. the bindings contract test, same process
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
    status, headers, body = call(
        "POST",
        f"{host.base_url}/api/echo/J%C3%BCrgen?q=search%20me",
        body=b"hello body",
        headers={"X-Test": "header-value"},
    )
    assert status == 201
    assert headers["X-Reply"] == "yes"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload == {
        "name": "Jürgen",
        "q": "search me",
        "body": "hello body",
        "header": "header-value",
        "method": "POST",
        "url": f"{host.base_url}/api/echo/J%C3%BCrgen?q=search%20me",
    }
    assert isinstance(rec.requests[0], func.HttpRequest)


def test_http_function_key(make_host: HostFactory, caplog: pytest.LogCaptureFixture) -> None:
    host = make_host(start=True)
    url = f"{host.base_url}/api/secret"
    caplog.set_level(logging.DEBUG, logger="local.functions_host")
    assert call("GET", url)[0] == 401
    assert call("GET", f"{url}?code=wrong")[0] == 401
    assert call("GET", url, headers={"x-functions-key": "wrong"})[0] == 401
    status, headers, body = call("GET", f"{url}?code={FUNCTION_KEY}")
    assert (status, body) == (200, b"classified")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert call("GET", url, headers={"x-functions-key": FUNCTION_KEY})[0:3:2] == (
        200,
        b"classified",
    )
    assert any("GET /api/secret -> 200" in r.getMessage() for r in caplog.records)
    assert not any(
        FUNCTION_KEY in r.getMessage() or "code=" in r.getMessage() for r in caplog.records
    )


def test_http_not_found_and_method_not_allowed(make_host: HostFactory) -> None:
    host = make_host(start=True)
    assert call("GET", f"{host.base_url}/api/nope")[0] == 404
    assert call("GET", f"{host.base_url}/elsewhere/echo/x")[0] == 404
    assert call("GET", f"{host.base_url}/api/echo")[0] == 404  # route parameter missing
    status, headers, _ = call("DELETE", f"{host.base_url}/api/echo/x")
    assert status == 405
    assert headers["Allow"] == "GET, POST"
    assert call("GET", f"{host.base_url}/api/echo/x/")[0] == 201  # trailing slash tolerated


def test_http_handler_exception_is_500(
    make_host: HostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host(start=True)
    status, _, body = call("GET", f"{host.base_url}/api/boom")
    assert status == 500
    assert body == b"Internal Server Error"
    failures = [r for r in caplog.records if r.exc_info and "boom" in r.getMessage()]
    assert failures
    assert "kaboom" in str(failures[0].exc_info[1])  # type: ignore[index]


def test_http_routes_literals_parameters_and_regex_constraints(make_host: HostFactory) -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    def register(name: str, route: str) -> None:
        def handler(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(json.dumps({"fn": name, **req.route_params}))

        app.function_name(name)(app.route(route=route, methods=["GET"])(handler))

    register("by_action", "hooks/{action:regex(^(callback|webhook)$)}")  # like connect_http
    register("install", "hooks/install")
    register("item", "items/{id}/{verb:regex(^(approve|retry)$)}")  # like governance_http
    host = make_host(app=app, start=True)

    def get(path: str) -> tuple[int, Any]:
        status, _, body = call("GET", f"{host.base_url}/api/{path}")
        return status, json.loads(body) if status == 200 else None

    assert get("hooks/webhook") == (200, {"fn": "by_action", "action": "webhook"})
    assert get("HOOKS/Callback") == (200, {"fn": "by_action", "action": "Callback"})
    assert get("hooks/install") == (200, {"fn": "install"})
    assert get("hooks/other")[0] == 404
    assert get("items/a%2Fb/retry") == (200, {"fn": "item", "id": "a/b", "verb": "retry"})
    assert get("items/7/revert")[0] == 404


@pytest.mark.parametrize("route", ["files/{*path}", "greet/{name=world}", "items/{id:int}"])
def test_route_syntax_no_function_uses_is_refused(make_host: HostFactory, route: str) -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.function_name("f")(app.route(route=route, methods=["GET"])(lambda req: req))
    with pytest.raises(HostConfigurationError, match="route syntax"):
        make_host(app=app)


def test_bindings_no_function_uses_are_refused(make_host: HostFactory) -> None:
    app = func.FunctionApp()

    @app.function_name("fanout")
    @app.queue_trigger(arg_name="msg", queue_name="%TEST_QUEUE%", connection="AzureWebJobsStorage")
    @app.queue_output(arg_name="out", queue_name="out", connection="AzureWebJobsStorage")
    def fanout(msg: func.QueueMessage, out: func.Out[str]) -> None:
        out.set("x")

    with pytest.raises(HostConfigurationError, match="no other bindings"):
        make_host(app=app)


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
    make_host(schedule="0 */15 * * * *", clock=lambda: now[0], start=True)
    assert not rec.timer_fired.wait(timeout=0.2)  # next occurrence is 12:15:00
    now[0] = datetime(2024, 5, 1, 12, 15, 30, tzinfo=UTC)  # the process "slept" past it
    assert rec.timer_fired.wait(timeout=5)
    fired = rec.timers[0]
    assert isinstance(fired, TimerRequest)
    assert fired.past_due is True
    assert fired.schedule_status["Next"] == "2024-05-01T12:30:00+00:00"


def test_timer_executions_never_overlap(make_host: HostFactory) -> None:
    entered = [threading.Event(), threading.Event()]
    release = threading.Event()
    calls: list[int] = []
    app = func.FunctionApp()

    @app.function_name("slow")
    @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
    def slow(timer: func.TimerRequest) -> None:
        calls.append(len(calls))
        entered[len(calls) - 1].set()
        release.wait(timeout=10)

    host = make_host(app=app)
    first = threading.Thread(target=host.run_timer, args=("slow",))
    second = threading.Thread(target=host.run_timer, args=("slow",))
    first.start()
    assert entered[0].wait(timeout=5)
    second.start()
    assert not entered[1].wait(timeout=0.3)  # blocked behind the running execution
    release.set()
    first.join(timeout=5)
    second.join(timeout=5)
    assert calls == [0, 1]


# ---- queues ---------------------------------------------------------------------------------


def test_base64_message_is_decoded_processed_and_deleted(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host()
    sender = producer(azurite_connection_string, queue_name)
    sender.send_message('{"pk": "p1", "rk": "r1"}')
    assert host.process_queue_once("work") == 1
    assert rec.processed == [b'{"pk": "p1", "rk": "r1"}']
    assert rec.attempts == [(b'{"pk": "p1", "rk": "r1"}', 1)]
    assert list(sender.peek_messages(max_messages=32)) == []
    assert host.process_queue_once("work") == 0


def test_a_batch_is_received_and_processed_together(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host()
    sender = producer(azurite_connection_string, queue_name)
    for index in range(3):
        sender.send_message(f"m{index}")
    assert host.process_queue_once("work") == 3
    assert sorted(rec.processed) == [b"m0", b"m1", b"m2"]


def test_failing_message_is_retried_then_poisoned(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host(maxDequeueCount=2, visibilityTimeout="00:00:00")
    sender = producer(azurite_connection_string, queue_name)
    sender.send_message("please fail")
    original_raw = next(iter(raw_client(azurite_connection_string, queue_name).peek_messages()))

    assert host.process_queue_once("work") == 1
    assert rec.attempts == [(b"please fail", 1)]
    [still_there] = list(sender.peek_messages())
    assert still_there.content == "please fail"
    assert still_there.dequeue_count == 1

    assert host.process_queue_once("work") == 1
    assert rec.attempts == [(b"please fail", 1), (b"please fail", 2)]
    assert list(sender.peek_messages()) == []
    assert rec.processed == []

    poison = producer(azurite_connection_string, f"{queue_name}-poison")
    [poisoned] = list(poison.peek_messages())
    assert poisoned.content == "please fail"
    [poisoned_raw] = list(
        raw_client(azurite_connection_string, f"{queue_name}-poison").peek_messages()
    )
    assert poisoned_raw.content == original_raw.content == base64.b64encode(b"please fail").decode()


def test_failed_message_waits_for_the_visibility_timeout(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host(maxDequeueCount=5, visibilityTimeout="00:01:00")
    producer(azurite_connection_string, queue_name).send_message("fail later")
    assert host.process_queue_once("work") == 1
    assert host.process_queue_once("work") == 0  # invisible for a minute: the host's retry spacing
    props = raw_client(azurite_connection_string, queue_name).get_queue_properties()
    assert props.approximate_message_count == 1


def test_message_that_is_not_base64_goes_to_poison_at_once(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host()
    raw = raw_client(azurite_connection_string, queue_name)
    raw.create_queue()
    raw.send_message('{"not": "base64"}')  # the base64 trap of the reference, section 3.2
    assert host.process_queue_once("work") == 1
    assert rec.attempts == []
    assert list(raw.peek_messages()) == []
    [poisoned] = list(raw_client(azurite_connection_string, f"{queue_name}-poison").peek_messages())
    assert poisoned.content == '{"not": "base64"}'


def test_host_json_can_be_overridden_by_settings(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host(
        maxDequeueCount=5,
        settings={"AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "1"},
    )
    producer(azurite_connection_string, queue_name).send_message("fail now")
    assert host.process_queue_once("work") == 1
    [poisoned] = list(producer(azurite_connection_string, f"{queue_name}-poison").peek_messages())
    assert poisoned.content == "fail now"


def test_background_poller_processes_messages(
    make_host: HostFactory, rec: Recorder, azurite_connection_string: str, queue_name: str
) -> None:
    host = make_host(start=True)
    producer(azurite_connection_string, queue_name).send_message("in the background")
    assert rec.message_processed.wait(timeout=10)
    assert rec.processed == [b"in the background"]
    host.stop()
    assert not any(thread.is_alive() for thread in host._threads)  # stopped, none left behind
