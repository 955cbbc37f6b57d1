"""A local stand-in for the Azure Functions host (Core Tools cannot be installed here).

``LocalFunctionsHost`` indexes a v2 ``func.FunctionApp`` the way the Python worker does
(``app.get_functions()`` -> ``get_function_json()``) and drives the *real* user functions:

* **HTTP** (``httpTrigger``): a ``ThreadingHTTPServer`` serving ``/<routePrefix>/<route>``
  (``extensions.http.routePrefix``, default ``api``). Route templates support ``{name}``,
  ``{name?}``, ``{name=default}``, ``{*catchall}`` and the ``int``/``long``/``alpha``/``bool``/
  ``guid``/``double`` constraints (other constraints are accepted and not enforced). Literals are
  case-insensitive. Unknown path -> 404; known path but method not in ``methods`` -> 405 (the real
  host answers 404 there, see azure-functions-host#10098). ``FUNCTION``/``ADMIN`` need the key in
  ``?code=`` or ``x-functions-key`` -> otherwise 401. Handler exception -> 500 (logged). The query
  string is never logged.
  App Service Authentication is played too (``sign_ins``): a request with ``Authorization: Bearer
  <token>`` for a known token reaches the function with that person's ``X-MS-CLIENT-PRINCIPAL``,
  and principal headers a client sends itself are removed, as App Service does. A browser signs
  in at ``/.auth/login/aad`` (choose one of those people; no password) and is then known by its
  ``AppServiceAuthSession`` cookie, as on App Service.
* **Timer** (``timerTrigger``): 6-field NCRONTAB (UTC, day-of-month AND day-of-week like NCrontab)
  or a ``hh:mm:ss`` TimeSpan. One scheduler thread per function; executions of a function never
  overlap (a per-function lock is shared with :meth:`LocalFunctionsHost.run_timer`). Missed
  occurrences are skipped, ``past_due`` is true when an occurrence fires more than 1 s late.
  ``runOnStartup`` is honoured. A function-level ``@retry`` policy (``fixed_delay`` /
  ``exponential_backoff``) is applied to timers, as the host does.
* **Queue** (``queueTrigger``): one poller thread per function. It receives up to ``batchSize``
  messages (leased for ``functionTimeout`` + 1 min, 10 min when unbounded; the lease is not
  renewed) and runs them **concurrently** on a thread pool; a new batch is fetched when the number
  of in-flight messages drops to ``newBatchThreshold`` (so at most ``batchSize +
  newBatchThreshold`` run at once, as in the host). Success -> delete. Failure -> if
  ``dequeue_count >= maxDequeueCount`` the original raw message text is copied to
  ``<queue>-poison`` and the message deleted, else its visibility is set to ``visibilityTimeout``.
  A body that is not valid base64 (with ``messageEncoding: base64``) goes to the poison queue at
  once, like the host's ``MessageDecodingFailed`` handler. Empty polls back off exponentially
  (randomised) from 100 ms to ``maxPollingInterval``.

Queue messages are read and written as *raw* text (no SDK encode/decode policy) and the host's
``messageEncoding`` is applied here. This keeps a non-base64 message from breaking the whole
receive call and lets the poison copy be byte-for-byte the original text.

``queue`` output bindings (``func.Out`` parameters or ``$return``) are written after a successful
invocation with the same encoding; other output bindings get a discarding ``func.Out`` and a
warning at start-up. Non-trigger input bindings are passed as ``None`` (with a warning). A
parameter named ``context`` receives a minimal ``func.Context``. ``async def`` functions are run
with ``asyncio.run`` in the invoking thread. ``functionTimeout`` is not enforced.

``host.json`` values can be overridden with ``AzureFunctionsJobHost__a__b`` settings and a function
is skipped when ``AzureWebJobs.<name>.Disabled`` is ``true``/``1`` (both as in the host).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import functools
import hmac
import html
import inspect
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions import _abc as func_abc
from azure.functions.decorators.function_app import Function
from azure.functions.queue import QueueMessage as _FunctionsQueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageQueueMessage
from croniter import croniter

from shared import storage

__all__ = [
    "HostConfigurationError",
    "HttpRouteInfo",
    "LocalFunctionsHost",
    "QueueOptions",
    "next_occurrence",
    "parse_timespan",
]

_LOG: Final = logging.getLogger(__name__)

# azure.functions.queue.QueueMessage.__init__ has no annotations; give it a typed name.
_make_queue_message: Callable[..., func.QueueMessage] = _FunctionsQueueMessage

_MIN_POLLING_INTERVAL: Final = timedelta(milliseconds=100)
_DEFAULT_LEASE: Final = timedelta(minutes=10)
_MAX_VISIBILITY: Final = timedelta(days=7)
_PAST_DUE_TOLERANCE: Final = timedelta(seconds=1)
_SCHEDULER_TICK_SECONDS: Final = 0.5
_STOP_GRACE_SECONDS: Final = 1.5
_MAX_REQUEST_BODY: Final = 100 * 1024 * 1024
_HOST_OVERRIDE_PREFIX: Final = "AzureFunctionsJobHost__"
_HTTP_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
_QUEUE_NAME: Final = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
_SETTING_REFERENCE: Final = re.compile(r"%([^%]+)%")
_TIMESPAN: Final = re.compile(
    r"^(?P<neg>-)?(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})"
    r"(?:\.(?P<frac>\d{1,7}))?)?$"
)
_ROUTE_TYPE_CONSTRAINTS: Final[Mapping[str, re.Pattern[str]]] = {
    "int": re.compile(r"-?\d+"),
    "long": re.compile(r"-?\d+"),
    "alpha": re.compile(r"[A-Za-z]+"),
    "bool": re.compile(r"true|false", re.IGNORECASE),
    "guid": re.compile(r"\{?[0-9A-Fa-f]{8}(?:-?[0-9A-Fa-f]{4}){3}-?[0-9A-Fa-f]{12}\}?"),
    "double": re.compile(r"-?\d+(?:\.\d+)?"),
    "float": re.compile(r"-?\d+(?:\.\d+)?"),
    "decimal": re.compile(r"-?\d+(?:\.\d+)?"),
}
_HOP_BY_HOP: Final = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class HttpRouteInfo:
    """An indexed HTTP route: function name, route template, methods and auth level."""

    function: str
    template: str
    methods: tuple[str, ...]
    auth_level: str  # ANONYMOUS, FUNCTION or ADMIN


class HostConfigurationError(ValueError):
    """The app, ``host.json`` or the settings cannot be run (the host would fail to index)."""


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------


def parse_timespan(value: str | int | float) -> timedelta:
    """Parse a .NET TimeSpan as used in host.json (``"00:00:30"``, ``"1.02:00:00"``).

    Numbers are taken as seconds.
    """
    if isinstance(value, bool):
        raise HostConfigurationError(f"not a TimeSpan: {value!r}")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _TIMESPAN.fullmatch(value.strip())
    if match is None:
        raise HostConfigurationError(f"not a TimeSpan ('[d.]hh:mm[:ss[.fffffff]]'): {value!r}")
    frac = match["frac"] or "0"
    span = timedelta(
        days=int(match["days"] or 0),
        hours=int(match["h"]),
        minutes=int(match["m"]),
        seconds=int(match["s"] or 0),
        microseconds=int(frac.ljust(7, "0")) // 10,
    )
    return -span if match["neg"] else span


def next_occurrence(schedule: str, after: datetime) -> datetime:
    """Return the first occurrence of ``schedule`` strictly after ``after``, in UTC.

    ``schedule`` is a 6-field NCRONTAB expression ``{second} {minute} {hour} {day} {month}
    {day-of-week}`` or a TimeSpan interval (``"00:05:00"``, occurrence = ``after`` + interval).
    A naive ``after`` is taken as UTC.
    """
    after_utc = after.replace(tzinfo=UTC) if after.tzinfo is None else after.astimezone(UTC)
    expression = schedule.strip()
    if _TIMESPAN.fullmatch(expression):
        interval = parse_timespan(expression)
        if interval <= timedelta(0):
            raise HostConfigurationError(f"timer interval must be positive: {schedule!r}")
        return after_utc + interval
    fields = expression.split()
    if len(fields) != 6:
        raise HostConfigurationError(
            f"NCRONTAB schedule {schedule!r} has {len(fields)} fields; it needs 6 "
            "('{second} {minute} {hour} {day} {month} {day-of-week}', e.g. '0 */15 * * * *')"
        )
    if not croniter.is_valid(expression, second_at_beginning=True):
        raise HostConfigurationError(f"invalid NCRONTAB schedule: {schedule!r}")
    # NCrontab matches a day only if day-of-month AND day-of-week match (unlike Vixie cron).
    itr = croniter(expression, after_utc, second_at_beginning=True, day_or=False)
    occurrence = itr.get_next(datetime)
    if not isinstance(occurrence, datetime):  # pragma: no cover - croniter contract
        raise TypeError("croniter returned a non-datetime")
    return occurrence.astimezone(UTC)


def _get_ci(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Case-insensitive lookup (host.json keys are case-insensitive)."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for name, value in mapping.items():
        if name.lower() == lowered:
            return value
    return default


def _section(root: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    node: Any = root
    for key in path:
        node = _get_ci(node, key, {}) if isinstance(node, Mapping) else {}
    return node if isinstance(node, Mapping) else {}


def _apply_host_overrides(
    host_json: Mapping[str, Any], settings: Mapping[str, str]
) -> dict[str, Any]:
    """Apply ``AzureFunctionsJobHost__a__b=value`` settings to a copy of host.json."""
    merged: dict[str, Any] = copy.deepcopy(dict(host_json))
    for name, value in settings.items():
        if not name.startswith(_HOST_OVERRIDE_PREFIX):
            continue
        path = [part for part in name[len(_HOST_OVERRIDE_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = merged
        for part in path[:-1]:
            key = next((k for k in node if k.lower() == part.lower()), part)
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        leaf = next((k for k in node if k.lower() == path[-1].lower()), path[-1])
        node[leaf] = value
    return merged


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise HostConfigurationError(f"{what} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise HostConfigurationError(f"{what} must be an integer, got {value!r}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _resolve_setting_refs(value: str, settings: Mapping[str, str], where: str) -> str:
    """Replace ``%NAME%`` with the app setting ``NAME`` (the host's binding expressions)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise HostConfigurationError(
                f"{where}: app setting {name!r} (referenced as '%{name}%') is not defined"
            )
        return settings[name]

    return _SETTING_REFERENCE.sub(replace, value)


def _resolve_binding(
    binding: Mapping[str, Any], settings: Mapping[str, str], where: str
) -> dict[str, Any]:
    return {
        key: _resolve_setting_refs(value, settings, f"{where}, binding property {key!r}")
        if isinstance(value, str)
        else value
        for key, value in binding.items()
    }


def _lease_for(host_json: Mapping[str, Any]) -> timedelta:
    raw = _get_ci(host_json, "functionTimeout")
    if raw is None or str(raw).strip() == "-1":
        return _DEFAULT_LEASE
    timeout = parse_timespan(raw)
    if timeout <= timedelta(0):
        return _DEFAULT_LEASE
    return min(timeout + timedelta(minutes=1), _MAX_VISIBILITY)


# --------------------------------------------------------------------------------------------
# Options and indexed functions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with the host's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        queues = _section(host_json, "extensions", "queues")
        batch_size = _as_int(_get_ci(queues, "batchSize", 16), "extensions.queues.batchSize")
        if not 1 <= batch_size <= 32:
            raise HostConfigurationError("extensions.queues.batchSize must be between 1 and 32")
        threshold = _as_int(
            _get_ci(queues, "newBatchThreshold", batch_size // 2),
            "extensions.queues.newBatchThreshold",
        )
        max_dequeue = _as_int(
            _get_ci(queues, "maxDequeueCount", 5), "extensions.queues.maxDequeueCount"
        )
        if threshold < 0 or max_dequeue < 1:
            raise HostConfigurationError(
                "extensions.queues: newBatchThreshold must be >= 0 and maxDequeueCount >= 1"
            )
        visibility = parse_timespan(_get_ci(queues, "visibilityTimeout", "00:00:00"))
        if not timedelta(0) <= visibility <= _MAX_VISIBILITY:
            raise HostConfigurationError("extensions.queues.visibilityTimeout must be 0..7 days")
        polling = parse_timespan(_get_ci(queues, "maxPollingInterval", "00:01:00"))
        if polling < _MIN_POLLING_INTERVAL:
            raise HostConfigurationError("extensions.queues.maxPollingInterval must be >= 100 ms")
        encoding = str(_get_ci(queues, "messageEncoding", "base64")).strip().lower()
        if encoding not in {"base64", "none"}:
            raise HostConfigurationError(
                f"extensions.queues.messageEncoding must be 'base64' or 'none', got {encoding!r}"
            )
        return cls(batch_size, threshold, max_dequeue, visibility, polling, encoding)


@dataclass(frozen=True)
class _RetryPolicy:
    strategy: str
    max_retry_count: int  # -1: retry forever
    delay_interval: timedelta
    minimum_interval: timedelta
    maximum_interval: timedelta

    @classmethod
    def from_settings(cls, raw: Mapping[str, Any], where: str) -> _RetryPolicy:
        strategy = str(raw.get("strategy", "")).lower()
        count = _as_int(raw.get("max_retry_count", 0), f"{where}: retry max_retry_count")
        if strategy == "fixed_delay":
            delay = parse_timespan(raw.get("delay_interval") or "00:00:00")
            return cls(strategy, count, delay, delay, delay)
        if strategy == "exponential_backoff":
            minimum = parse_timespan(raw.get("minimum_interval") or "00:00:00")
            maximum = parse_timespan(raw.get("maximum_interval") or "00:15:00")
            return cls(strategy, count, minimum, minimum, maximum)
        raise HostConfigurationError(f"{where}: unknown retry strategy {strategy!r}")

    def allows(self, retry_number: int) -> bool:
        return self.max_retry_count < 0 or retry_number <= self.max_retry_count

    def delay_for(self, retry_number: int) -> timedelta:
        if self.strategy == "fixed_delay":
            return self.delay_interval
        return min(self.maximum_interval, self.minimum_interval * (1 << max(retry_number - 1, 0)))


@dataclass(frozen=True)
class _IndexedFunction:
    name: str
    trigger_type: str
    trigger: Mapping[str, Any]
    user_function: Callable[..., Any]
    out_bindings: tuple[Mapping[str, Any], ...]
    null_inputs: tuple[str, ...]
    wants_context: bool
    retry: _RetryPolicy | None


@dataclass(frozen=True)
class _RouteParam:
    name: str
    group: str
    default: str | None
    checks: tuple[Callable[[str], bool], ...] = ()


@dataclass(frozen=True)
class _HttpRoute:
    function: _IndexedFunction
    template: str
    pattern: re.Pattern[str]
    params: tuple[_RouteParam, ...]
    methods: frozenset[str] | None
    auth_level: str
    specificity: tuple[int, int, int, int]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        values: dict[str, str] = {}
        for param in self.params:
            raw = found.group(param.group)
            if raw is None or (raw == "" and param.default is not None):
                if param.default is not None:
                    values[param.name] = param.default
                continue
            value = unquote(raw)
            if not all(check(value) for check in param.checks):
                return None  # a route constraint rejects the value: the route does not match
            values[param.name] = value
        return values


@dataclass
class _TimerFunction:
    function: _IndexedFunction
    schedule: str
    run_on_startup: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: datetime | None = None


@dataclass
class _QueueFunction:
    function: _IndexedFunction
    queue_name: str
    poison_queue_name: str
    wake: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0
    condition: threading.Condition = field(default_factory=threading.Condition)


@dataclass(frozen=True)
class _HttpResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class _Invocation:
    result: Any
    outputs: Mapping[str, _Out]


def _scan_route_segment(segment: str, where: str) -> list[tuple[bool, str]]:
    """Split one route segment into literal text and ``{parameter}`` tokens.

    ``{{`` and ``}}`` are escaped braces, inside and outside tokens (ASP.NET routing syntax).
    """
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if segment.startswith("{{", index) or segment.startswith("}}", index):
            literal.append(char)
            index += 2
        elif char == "{":
            token: list[str] = []
            index += 1
            while True:
                if index >= len(segment):
                    raise HostConfigurationError(f"{where}: unterminated route parameter")
                if segment.startswith("{{", index) or segment.startswith("}}", index):
                    token.append(segment[index])
                    index += 2
                elif segment[index] == "}":
                    index += 1
                    break
                else:
                    token.append(segment[index])
                    index += 1
            if literal:
                parts.append((False, "".join(literal)))
                literal = []
            parts.append((True, "".join(token)))
        elif char == "}":
            raise HostConfigurationError(f"{where}: unbalanced '}}' in route")
        else:
            literal.append(char)
            index += 1
    if literal:
        parts.append((False, "".join(literal)))
    return parts


def _route_constraint(text: str, where: str) -> Callable[[str], bool] | None:
    """A predicate for one inline route constraint (``int``, ``regex(...)``, ``min(1)``...)."""
    match = re.fullmatch(r"([A-Za-z]+)(?:\((.*)\))?", text, re.DOTALL)
    if match is None:
        raise HostConfigurationError(f"{where}: invalid route constraint {text!r}")
    kind, argument = match.group(1).lower(), match.group(2)
    type_pattern = _ROUTE_TYPE_CONSTRAINTS.get(kind)
    if type_pattern is not None and argument is None:
        return lambda value: type_pattern.fullmatch(value) is not None
    if kind == "regex" and argument is not None:
        try:
            # ASP.NET: Regex.IsMatch, case-insensitive, so anchors are the template's business.
            compiled = re.compile(argument, re.IGNORECASE)
        except re.error as exc:
            raise HostConfigurationError(
                f"{where}: invalid route regex {argument!r}: {exc}"
            ) from None
        return lambda value: compiled.search(value) is not None
    numbers = [a.strip() for a in (argument or "").split(",") if a.strip()]
    if kind in {"min", "max", "range", "length", "minlength", "maxlength"} and all(
        re.fullmatch(r"-?\d+", n) for n in numbers
    ):
        bounds = [int(n) for n in numbers]
        if kind in {"min", "max", "range"}:
            low = bounds[0] if kind in {"min", "range"} else None
            high = bounds[-1] if kind in {"max", "range"} else None

            def in_range(value: str) -> bool:
                if not re.fullmatch(r"-?\d+", value):
                    return False
                number = int(value)
                return (low is None or number >= low) and (high is None or number <= high)

            return in_range
        shortest = bounds[0] if kind in {"minlength", "length"} else None
        longest = bounds[-1] if kind in {"maxlength", "length"} else None
        return lambda value: (shortest is None or len(value) >= shortest) and (
            longest is None or len(value) <= longest
        )
    _LOG.warning("%s: route constraint %r is not enforced by the local host", where, text)
    return None


def _split_route_token(body: str) -> tuple[list[str], str | None]:
    """Split ``name:c1:c2(...)=default`` on top-level ``:`` and ``=`` (not inside parentheses)."""
    pieces: list[str] = []
    current: list[str] = []
    depth = 0
    for index, char in enumerate(body):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and char == ":":
            pieces.append("".join(current))
            current = []
            continue
        elif depth == 0 and char == "=":
            pieces.append("".join(current))
            return pieces, body[index + 1 :]
        current.append(char)
    pieces.append("".join(current))
    return pieces, None


def _compile_route(template: str, where: str) -> tuple[re.Pattern[str], tuple[_RouteParam, ...]]:
    """Compile an ASP.NET-style route template into a case-insensitive regex plus checks."""
    params: list[_RouteParam] = []

    def param_regex(token: str, lazy: bool) -> tuple[str, bool]:
        catch_all = token.startswith("*")
        pieces, default = _split_route_token(token.lstrip("*"))
        optional = default is not None
        if default is None and pieces[-1].endswith("?"):
            pieces[-1], optional = pieces[-1][:-1], True
        name, *constraints = pieces
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
            raise HostConfigurationError(f"{where}: invalid route parameter {{{token}}}")
        checks = tuple(
            check for c in constraints if (check := _route_constraint(c, where)) is not None
        )
        group = f"p{len(params)}"
        params.append(_RouteParam(name, group, default, checks))
        inner = ".*" if catch_all else ("[^/]+?" if lazy else "[^/]+")
        return f"(?P<{group}>{inner})", optional or catch_all

    stripped = template.strip("/")
    regex = ""
    for index, segment in enumerate(stripped.split("/") if stripped else []):
        separator = "/" if index else ""
        parts = _scan_route_segment(segment, where)
        if len(parts) == 1 and parts[0][0]:
            group_regex, optional = param_regex(parts[0][1], lazy=False)
            regex += f"(?:{separator}{group_regex})?" if optional else separator + group_regex
            continue
        pieces = [
            param_regex(text, lazy=True)[0] if is_param else re.escape(text)
            for is_param, text in parts
        ]
        regex += separator + "".join(pieces)
    return re.compile(regex, re.IGNORECASE), tuple(params)


def _route_specificity(template: str) -> tuple[int, int, int, int]:
    """Sort key, most specific first: no catch-all, more literals, more constrained parameters."""
    segments = [s for s in template.strip("/").split("/") if s]
    literal = sum(1 for s in segments if "{" not in s.replace("{{", ""))
    catch_all = sum(1 for s in segments if s.startswith("{*"))
    constrained = sum(1 for s in segments if s.startswith("{") and ":" in s)
    optional = sum(1 for s in segments if s.endswith("?}") or (s.startswith("{") and "=" in s))
    return catch_all, -literal, -constrained, optional


def _joined(pairs: Iterable[tuple[str, str]], separator: str, *, lower: bool) -> dict[str, str]:
    merged: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower() if lower else key
        merged[name] = f"{merged[name]}{separator}{value}" if name in merged else value
    return merged


# --------------------------------------------------------------------------------------------
# Minimal implementations of the worker-provided objects
# --------------------------------------------------------------------------------------------


class _Out(func.Out[Any]):
    """Holds the value a function sets on an output binding."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _RpcException(func_abc.RpcException):
    @property
    def source(self) -> str:
        return ""

    @property
    def stack_trace(self) -> str:
        return ""

    @property
    def message(self) -> str:
        return ""


class _TraceContext(func_abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func_abc.RetryContext):
    def __init__(self, retry_count: int, max_retry_count: int) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> func_abc.RpcException:
        return _RpcException()


_THREAD_LOCAL: Final = threading.local()


class _Context(func.Context):
    def __init__(self, invocation_id: str, function_name: str, retry: _RetryContext) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._retry = retry
        self._trace = _TraceContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        # The abstract property is annotated as a type, but the worker returns an instance.
        return cast(type[threading.local], _THREAD_LOCAL)

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> func_abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> func_abc.RetryContext:
        return self._retry


def _run_awaitable(value: Awaitable[Any]) -> Any:
    async def wrapper() -> Any:
        return await value

    return asyncio.run(wrapper())


# --------------------------------------------------------------------------------------------
# HTTP server plumbing
# --------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: LocalFunctionsHost) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.owner = owner
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VigilLocalFunctionsHost/1.0"
    timeout = 60
    # Headers and body go out in separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path  # never log the query string: it may carry a key
        try:
            body = self._read_body()
        except _BadRequest as exc:
            result = _HttpResult(exc.status, [("Content-Type", "text/plain")], str(exc).encode())
            self.close_connection = True
        else:
            owner = cast(_Server, self.server).owner
            try:
                result = owner._dispatch_http(
                    self.command, self.path, list(self.headers.items()), body, self._authority()
                )
            except Exception:
                _LOG.exception("HTTP %s %s: the local host failed", self.command, path)
                result = _text_result(500, "Internal Server Error")
        # Logged before answering, so a caller that has its answer finds the line written.
        _LOG.info(
            "HTTP %s %s -> %d (%.1f ms)",
            self.command,
            path,
            result.status,
            (time.perf_counter() - started) * 1000,
            extra={"http_method": self.command, "http_path": path, "http_status": result.status},
        )
        try:
            self._write(result)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = _serve

    def _authority(self) -> str:
        host = self.headers.get("Host")
        if host:
            return str(host)
        return urlsplit(cast(_Server, self.server).owner.base_url).netloc

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise _BadRequest(400, "bad chunked encoding") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > _MAX_REQUEST_BODY:
                    raise _BadRequest(413, "request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length < 0:
            raise _BadRequest(400, "bad Content-Length")
        if length > _MAX_REQUEST_BODY:
            raise _BadRequest(413, "request body too large")
        return self.rfile.read(length)

    def _write(self, result: _HttpResult) -> None:
        self.send_response(result.status)
        for name, value in result.headers:
            self.send_header(name, value)
        no_body = self.command == "HEAD" or result.status in (204, 304) or result.status < 200
        if result.status not in (204, 304) and result.status >= 200:
            self.send_header("Content-Length", str(len(result.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body:
            self.wfile.write(result.body)
        self.wfile.flush()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: the request line contains the query string. ``_serve`` logs instead."""

    def log_message(self, format: str, *args: Any) -> None:
        # ``args`` may contain the raw request line (and so a key): log the template only.
        _LOG.debug("http server: %s", format)


_SESSION_COOKIE = "AppServiceAuthSession"


def _principal_label(encoded: str) -> str:
    """ "name (roles)" of an `X-MS-CLIENT-PRINCIPAL` the host signs in with."""
    data = json.loads(base64.b64decode(encoded))
    claims = [(c["typ"], c["val"]) for c in data["claims"]]
    name = next((v for t, v in claims if t == "preferred_username"), "?")
    roles = ", ".join(v for t, v in claims if t == "roles")
    return f"{name} ({roles})"


def _text_result(status: int, text: str, extra: Iterable[tuple[str, str]] = ()) -> _HttpResult:
    headers = [("Content-Type", "text/plain; charset=utf-8"), *extra]
    return _HttpResult(status, headers, text.encode())


def _http_result_from(value: Any) -> _HttpResult:
    """Convert what an HTTP function returned, as the worker's ``HttpResponseConverter`` does."""
    if isinstance(value, func.HttpResponse):
        headers: list[tuple[str, str]] = []
        for name, header_value in value.headers.items():
            if str(name).lower() not in _HOP_BY_HOP:
                headers.append((str(name), str(header_value)))
        if not any(name.lower() == "content-type" for name, _ in headers):
            mimetype = str(value.mimetype)
            content_type = (
                f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
            )
            headers.append(("Content-Type", content_type))
        return _HttpResult(int(value.status_code), headers, value.get_body() or b"")
    if isinstance(value, str):
        return _text_result(200, value)
    if value is None:
        return _HttpResult(204, [], b"")
    raise TypeError(f"HTTP function returned an unsupported type: {type(value).__name__}")


def _queue_output_bodies(value: Any) -> list[bytes]:
    """Messages for a ``queue`` output binding value (str, bytes, QueueMessage or a list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, func.QueueMessage):
        return [value.get_body()]
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        bodies: list[bytes] = []
        for item in value:
            if isinstance(item, Iterable) and not isinstance(item, str | bytes | bytearray):
                raise TypeError("nested iterables are not valid queue output messages")
            bodies.extend(_queue_output_bodies(item))
        return bodies
    raise TypeError(f"unsupported queue output value: {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# The host
# --------------------------------------------------------------------------------------------


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
        host: str = "127.0.0.1",
        port: int = 7071,
        clock: Callable[[], datetime] | None = None,
        sign_ins: Mapping[str, str] | None = None,
    ) -> None:
        """`sign_ins` plays App Service Authentication: a request with `Authorization: Bearer
        <token>` for a token in it reaches the function with that `X-MS-CLIENT-PRINCIPAL`;
        principal headers a client sends itself are removed, as App Service does."""
        if not function_key:
            raise HostConfigurationError("function_key must not be empty")
        self._settings: Mapping[str, str] = dict(settings)
        self._host_json = _apply_host_overrides(host_json, self._settings)
        self._connection_string = storage_connection_string
        self._function_key = function_key.encode("utf-8")
        self._sign_ins: Mapping[str, str] = dict(sign_ins or {})
        self._host = host
        self._port = port
        self._clock_source: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._queue_options = QueueOptions.from_host_json(self._host_json)
        self._lease = _lease_for(self._host_json)
        self._route_prefix = str(
            _get_ci(_section(self._host_json, "extensions", "http"), "routePrefix", "api")
        ).strip("/")

        self._routes: list[_HttpRoute] = []
        self._timers: dict[str, _TimerFunction] = {}
        self._queues: dict[str, _QueueFunction] = {}
        self._index(app)

        self._stop_event = threading.Event()
        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._futures: set[Future[None]] = set()
        self._futures_lock = threading.Lock()
        self._clients: dict[str, QueueClient] = {}
        self._created_queues: set[str] = set()
        self._clients_lock = threading.Lock()

    # ---- indexing -------------------------------------------------------------------------

    def _index(self, app: func.FunctionApp) -> None:
        # FunctionApp.get_functions() remembers the names it has seen in ``functions_bindings``
        # and raises "does not have a unique function name" on a second call. Index with a
        # clean slate and put the attribute back, so this host neither fails nor changes the app.
        remembered = app.functions_bindings
        app.functions_bindings = None
        try:
            functions = app.get_functions()
        finally:
            app.functions_bindings = remembered
        for function in functions:
            name = function.get_function_name() or function.get_user_function().__name__
            if _as_bool(self._settings.get(f"AzureWebJobs.{name}.Disabled", "false")):
                _LOG.info("Function '%s' is disabled by app setting", name)
                continue
            indexed = self._index_function(name, function)
            if indexed.trigger_type == "httpTrigger":
                self._routes.append(self._http_route(indexed))
            elif indexed.trigger_type == "timerTrigger":
                schedule = str(indexed.trigger.get("schedule", ""))
                next_occurrence(schedule, datetime.now(UTC))  # validate now, like the host
                run_on_startup = _as_bool(indexed.trigger.get("runOnStartup", False))
                self._timers[name] = _TimerFunction(indexed, schedule, run_on_startup)
            else:
                # The host lower-cases queue names before validating them.
                queue_name = str(indexed.trigger.get("queueName", "")).lower()
                poison = f"{queue_name}-poison"
                for candidate in (queue_name, poison):
                    if not _QUEUE_NAME.fullmatch(candidate):
                        raise HostConfigurationError(
                            f"function '{name}': invalid queue name {candidate!r}"
                        )
                self._queues[name] = _QueueFunction(indexed, queue_name, poison)
        self._routes.sort(key=lambda route: route.specificity)

    def _index_function(self, name: str, function: Function) -> _IndexedFunction:
        where = f"function '{name}'"
        description = function.get_function_json()
        bindings: list[Mapping[str, Any]] = json.loads(description)["bindings"]
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            raise HostConfigurationError(f"{where} must have exactly one trigger")
        trigger_type = str(triggers[0]["type"])
        if trigger_type not in {"httpTrigger", "timerTrigger", "queueTrigger"}:
            raise HostConfigurationError(
                f"{where}: trigger type {trigger_type!r} is not supported by LocalFunctionsHost"
            )
        trigger = _resolve_binding(triggers[0], self._settings, where)
        out_bindings: list[Mapping[str, Any]] = []
        null_inputs: list[str] = []
        for binding in bindings:
            if binding is triggers[0]:
                continue
            binding_type = str(binding.get("type", ""))
            binding_name = str(binding.get("name", ""))
            if str(binding.get("direction", "")).upper() == "OUT":
                resolved = _resolve_binding(binding, self._settings, where)
                out_bindings.append(resolved)
                if binding_type not in {"http", "queue"}:
                    _LOG.warning(
                        "%s: output binding '%s' (type %s) is not emulated; its value is discarded",
                        where,
                        binding_name,
                        binding_type,
                    )
            else:
                null_inputs.append(binding_name)
                _LOG.warning(
                    "%s: input binding '%s' (type %s) is not emulated; the function gets None",
                    where,
                    binding_name,
                    binding_type,
                )
        user_function: Callable[..., Any] = function.get_user_function()
        binding_names = {str(b.get("name")) for b in bindings}
        wants_context = (
            "context" in inspect.signature(user_function).parameters
            and "context" not in binding_names
        )
        retry: _RetryPolicy | None = None
        retry_settings = function.get_settings_dict("retry_policy")
        if retry_settings:
            if trigger_type == "timerTrigger":
                retry = _RetryPolicy.from_settings(retry_settings, where)
            else:
                _LOG.warning("%s: retry policies apply to timer triggers only; ignored", where)
        return _IndexedFunction(
            name=name,
            trigger_type=trigger_type,
            trigger=trigger,
            user_function=user_function,
            out_bindings=tuple(out_bindings),
            null_inputs=tuple(null_inputs),
            wants_context=wants_context,
            retry=retry,
        )

    def _http_route(self, indexed: _IndexedFunction) -> _HttpRoute:
        where = f"function '{indexed.name}'"
        template = str(indexed.trigger.get("route") or indexed.name)
        pattern, params = _compile_route(template, where)
        raw_methods = indexed.trigger.get("methods")
        methods = frozenset(str(m).upper() for m in raw_methods) if raw_methods else None
        auth_level = str(indexed.trigger.get("authLevel", "FUNCTION")).upper()
        return _HttpRoute(
            function=indexed,
            template=template,
            pattern=pattern,
            params=params,
            methods=methods,
            auth_level=auth_level,
            specificity=_route_specificity(template),
        )

    @property
    def http_routes(self) -> list[HttpRouteInfo]:
        """Every HTTP route indexed from the app (what a test can enumerate to cover them all)."""
        return [
            HttpRouteInfo(
                r.function.name,
                r.template,
                tuple(sorted(r.methods or _HTTP_METHODS)),
                r.auth_level,
            )
            for r in self._routes
        ]

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port``; with ``port=0`` the ephemeral port is known after ``start()``."""
        if self._server is not None:
            port = int(self._server.server_address[1])
        elif self._port:
            port = self._port
        else:
            raise RuntimeError("port 0: the port is chosen by start()")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    def start(self, *, triggers: bool = True) -> None:
        """Start the HTTP server, one scheduler thread per timer and one poller per queue.

        With `triggers=False` only HTTP is served: timers and queues then run only when a test
        calls `run_timer()` / `process_queue_once()`, which makes end-to-end tests deterministic.
        """
        with self._lifecycle_lock:
            if self._started or self._stopped:
                raise RuntimeError("LocalFunctionsHost can be started once")
            server = _Server((self._host, self._port), self)  # OSError if the port is taken
            self._server = server
            self._started = True
            self._spawn("http", lambda: server.serve_forever(poll_interval=0.1))
            for name, timer in (self._timers if triggers else {}).items():
                self._spawn(f"timer-{name}", functools.partial(self._timer_loop, timer))
            for name, queue in (self._queues if triggers else {}).items():
                workers = self._queue_options.batch_size + self._queue_options.new_batch_threshold
                self._executors[name] = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix=f"vigil-local-queue-{name}"
                )
                self._spawn(f"queue-{name}", functools.partial(self._queue_loop, queue))
        _LOG.info(
            "Local Functions host started on %s: %d HTTP, %d timer, %d queue function(s)",
            self.base_url,
            len(self._routes),
            len(self._timers),
            len(self._queues),
        )

    def stop(self) -> None:
        """Stop everything; waits at most ~1.5 s for in-flight work, then leaves it behind.

        Idempotent; also closes the storage clients of a host that was never started.
        """
        with self._lifecycle_lock:
            if self._stopped:
                return
            self._stopped = True
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        self._stop_event.set()
        for queue in self._queues.values():
            queue.wake.set()
            with queue.condition:
                queue.condition.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                _LOG.warning("%s is still running after stop(); left behind", thread.name)
        for executor in self._executors.values():
            executor.shutdown(wait=False)
        with self._futures_lock:
            pending = set(self._futures)
        _, not_done = wait_futures(pending, timeout=max(0.0, deadline - time.monotonic()))
        if not_done:
            _LOG.warning("%d queue message(s) still being processed after stop()", len(not_done))
        else:
            with self._clients_lock:
                for client in self._clients.values():
                    client.close()
                self._clients.clear()
        _LOG.info("Local Functions host stopped")

    def __enter__(self) -> LocalFunctionsHost:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _clock(self) -> datetime:
        """The injected clock, as an aware UTC datetime (naive values are taken as UTC)."""
        now = self._clock_source()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"vigil-local-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    # ---- invocation -----------------------------------------------------------------------

    def _invoke(
        self,
        indexed: _IndexedFunction,
        trigger_value: Any,
        reason: str,
        *,
        retry_count: int = 0,
    ) -> _Invocation:
        """Call the user function with its bindings; raises what the function raised."""
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {str(indexed.trigger["name"]): trigger_value}
        outputs: dict[str, _Out] = {}
        for binding in indexed.out_bindings:
            name = str(binding.get("name"))
            if name != "$return":
                outputs[name] = kwargs[name] = _Out()
        for name in indexed.null_inputs:
            kwargs[name] = None
        if indexed.wants_context:
            max_retries = indexed.retry.max_retry_count if indexed.retry else 0
            kwargs["context"] = _Context(
                invocation_id, indexed.name, _RetryContext(retry_count, max_retries)
            )
        extra = {"function_name": indexed.name, "invocation_id": invocation_id}
        _LOG.info(
            "Executing 'Functions.%s' (Reason='%s', Id=%s)",
            indexed.name,
            reason,
            invocation_id,
            extra=extra,
        )
        started = time.perf_counter()
        _THREAD_LOCAL.invocation_id = invocation_id
        try:
            result = indexed.user_function(**kwargs)
            if inspect.isawaitable(result):
                result = _run_awaitable(result)
            self._write_queue_outputs(indexed, outputs, result)
        except Exception:
            _LOG.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                indexed.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
                extra=extra,
            )
            raise
        finally:
            _THREAD_LOCAL.invocation_id = None
        _LOG.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            indexed.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
            extra=extra,
        )
        return _Invocation(result, outputs)

    def _write_queue_outputs(
        self, indexed: _IndexedFunction, outputs: Mapping[str, _Out], result: Any
    ) -> None:
        for binding in indexed.out_bindings:
            if binding.get("type") != "queue":
                continue
            name = str(binding.get("name"))
            value = result if name == "$return" else outputs[name].get()
            bodies = _queue_output_bodies(value)
            if not bodies:
                continue
            queue_name = str(binding.get("queueName", "")).lower()
            client = self._client(queue_name)
            for body in bodies:
                client.send_message(self._encode(body))
            for queue in self._queues.values():
                if queue.queue_name == queue_name:
                    queue.wake.set()  # the host's SharedQueueWatcher: poll that queue now

    # ---- HTTP -----------------------------------------------------------------------------

    def _dispatch_http(
        self,
        method: str,
        raw_path: str,
        headers: list[tuple[str, str]],
        body: bytes,
        authority: str,
    ) -> _HttpResult:
        split = urlsplit(raw_path)
        path = split.path
        if path.lower() == "/.auth/login/aad" and self._sign_ins:
            return self._sign_in(method, split.query, body)
        if path in ("", "/") and method in ("GET", "HEAD"):
            return _text_result(200, "Your Functions app is up and running (local host).")
        route_path = self._strip_route_prefix(path)
        if route_path is None:
            return _text_result(404, "Not Found")
        matches = [(r, p) for r in self._routes if (p := r.match(route_path)) is not None]
        if not matches:
            return _text_result(404, "Not Found")
        allowed = [(r, p) for r, p in matches if r.methods is None or method in r.methods]
        if not allowed:
            methods = sorted(set().union(*(r.methods or _HTTP_METHODS for r, _ in matches)))
            return _text_result(405, "Method Not Allowed", [("Allow", ", ".join(methods))])
        route, route_params = allowed[0]
        query = _joined(parse_qsl(split.query, keep_blank_values=True), ",", lower=False)
        request_headers = self._authenticated(_joined(headers, ", ", lower=True))
        if route.auth_level != "ANONYMOUS" and not self._key_matches(query, request_headers):
            return _HttpResult(401, [], b"")
        request = func.HttpRequest(
            method,
            f"http://{authority}{raw_path}",
            headers=request_headers,
            params=query,
            route_params=route_params,
            body=body,
        )
        indexed = route.function
        try:
            invocation = self._invoke(
                indexed, request, "This function was programmatically called via the host APIs."
            )
        except Exception:  # logged with its traceback by _invoke
            return _text_result(500, "Internal Server Error")
        value = invocation.result
        for binding in indexed.out_bindings:
            name = str(binding.get("name"))
            if binding.get("type") == "http" and name != "$return":
                value = invocation.outputs[name].get()
        try:
            return _http_result_from(value)
        except Exception:
            _LOG.exception("HTTP function '%s' returned an unusable response", indexed.name)
            return _text_result(500, "Internal Server Error")

    def _sign_in(self, method: str, query: str, body: bytes) -> _HttpResult:
        """App Service's `/.auth/login/aad`, played: a page to choose one of the people the host
        signs in (no password: it is the local stand-in for Entra's sign-in), then the session
        cookie and a redirect to `post_login_redirect_uri` (a path on this host only)."""
        people = list(self._sign_ins.items())
        if method == "POST":
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            back = form.get("post_login_redirect_uri", "/")
            if not back.startswith("/") or back.startswith("//"):
                back = "/"
            index = form.get("who", "")
            if not index.isdigit() or int(index) >= len(people):
                return _text_result(400, "choose who signs in")
            cookie = f"{_SESSION_COOKIE}={people[int(index)][0]}; Path=/; HttpOnly; SameSite=Strict"
            return _HttpResult(302, [("Location", back), ("Set-Cookie", cookie)], b"")
        back = html.escape(dict(parse_qsl(query)).get("post_login_redirect_uri", "/"))
        buttons = "".join(
            f'<p><button name="who" value="{i}">{html.escape(_principal_label(p))}</button></p>'
            for i, (_, p) in enumerate(people)
        )
        page = (
            "<!doctype html><title>Sign in (local)</title><h1>Sign in to Vigil (local)</h1>"
            f'<form method="post"><input type="hidden" name="post_login_redirect_uri" '
            f'value="{back}">{buttons}</form>'
        )
        return _HttpResult(200, [("Content-Type", "text/html; charset=utf-8")], page.encode())

    def _authenticated(self, headers: dict[str, str]) -> dict[str, str]:
        kept = {k: v for k, v in headers.items() if not k.startswith("x-ms-client-principal")}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            cookies = SimpleCookie()
            cookies.load(headers.get("cookie", ""))
            session = cookies.get(_SESSION_COOKIE)
            scheme, token = ("bearer", session.value) if session else ("", "")
        principal = self._sign_ins.get(token.strip()) if scheme.lower() == "bearer" else None
        if principal is not None:
            kept["x-ms-client-principal"] = principal
            kept["x-ms-client-principal-idp"] = "aad"
        return kept

    def _strip_route_prefix(self, path: str) -> str | None:
        trimmed = path.rstrip("/")
        if not self._route_prefix:
            return trimmed.lstrip("/")
        prefix = f"/{self._route_prefix}"
        if trimmed.lower() == prefix.lower():
            return ""
        if trimmed.lower().startswith(prefix.lower() + "/"):
            return trimmed[len(prefix) + 1 :]
        return None

    def _key_matches(self, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        for candidate in (query.get("code"), headers.get("x-functions-key")):
            if candidate is not None and hmac.compare_digest(
                candidate.encode("utf-8"), self._function_key
            ):
                return True
        return False

    # ---- timers ---------------------------------------------------------------------------

    def run_timer(self, function_name: str, past_due: bool = False) -> None:
        """Invoke a timer function now (waiting for a running execution of it to finish).

        The retry policy applies; if the function still fails its last exception is raised.
        """
        timer = self._timers.get(function_name)
        if timer is None:
            raise KeyError(f"no timer function named {function_name!r}")
        self._fire_timer(timer, past_due=past_due, reason="This function was called manually.")

    def _fire_timer(
        self,
        timer: _TimerFunction,
        *,
        past_due: bool,
        reason: str,
        scheduled: datetime | None = None,
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
            retry_count = 0
            while True:
                try:
                    self._invoke(timer.function, request, reason, retry_count=retry_count)
                    return
                except Exception:
                    policy = timer.function.retry
                    if policy is None or not policy.allows(retry_count + 1):
                        raise
                    retry_count += 1
                    delay = policy.delay_for(retry_count)
                    _LOG.warning(
                        "Timer function '%s' failed; retry %d in %.1f s",
                        timer.function.name,
                        retry_count,
                        delay.total_seconds(),
                    )
                    if self._stop_event.wait(delay.total_seconds()):
                        raise

    def _timer_loop(self, timer: _TimerFunction) -> None:
        name = timer.function.name
        if timer.run_on_startup:
            self._fire_timer_logged(timer, past_due=False, reason="Timer fired on startup.")
        upcoming = next_occurrence(timer.schedule, self._clock())
        _LOG.info("Timer '%s': next occurrence %s", name, upcoming.isoformat())
        while not self._stop_event.is_set():
            now = self._clock()
            if now < upcoming:
                wait = min((upcoming - now).total_seconds(), _SCHEDULER_TICK_SECONDS)
                self._stop_event.wait(wait)
                continue
            self._fire_timer_logged(
                timer,
                past_due=now - upcoming > _PAST_DUE_TOLERANCE,
                reason=f"Timer fired at {now.isoformat()}",
                scheduled=upcoming,
            )
            upcoming = next_occurrence(timer.schedule, max(self._clock(), upcoming))

    def _fire_timer_logged(
        self,
        timer: _TimerFunction,
        *,
        past_due: bool,
        reason: str,
        scheduled: datetime | None = None,
    ) -> None:
        try:
            self._fire_timer(timer, past_due=past_due, reason=reason, scheduled=scheduled)
        except Exception:  # already logged with its traceback by _invoke
            _LOG.warning("Timer function '%s' failed; the schedule continues", timer.function.name)

    # ---- queues ---------------------------------------------------------------------------

    def process_queue_once(self, function_name: str) -> int:
        """Receive one batch for a queue function and process it synchronously (concurrently).

        Returns the number of messages received and handled (succeeded, retried or poisoned).
        """
        queue = self._queues.get(function_name)
        if queue is None:
            raise KeyError(f"no queue-triggered function named {function_name!r}")
        messages = self._receive(queue, self._queue_options.batch_size)
        if not messages:
            return 0
        with ThreadPoolExecutor(
            max_workers=len(messages), thread_name_prefix=f"vigil-local-once-{function_name}"
        ) as pool:
            list(pool.map(lambda message: self._process_message(queue, message), messages))
        return len(messages)

    def _queue_loop(self, queue: _QueueFunction) -> None:
        options = self._queue_options
        executor = self._executors[queue.function.name]
        failures = 0  # consecutive empty or failed polls
        while not self._stop_event.is_set():
            with queue.condition:
                queue.condition.wait_for(
                    lambda: queue.in_flight <= options.new_batch_threshold
                    or self._stop_event.is_set()
                )
            if self._stop_event.is_set():
                return
            try:
                messages = self._receive(queue, options.batch_size)
            except Exception as exc:  # storage down, bad connection string, ...: keep polling
                _LOG.warning("Polling queue '%s' failed: %s", queue.queue_name, exc)
                messages = []
            if not messages:
                failures += 1
                queue.wake.wait(self._polling_delay(failures))
                queue.wake.clear()
                continue
            failures = 0
            for message in messages:
                with queue.condition:
                    queue.in_flight += 1
                try:
                    future = executor.submit(self._process_message, queue, message)
                except RuntimeError:  # stop() shut the pool down meanwhile
                    with queue.condition:
                        queue.in_flight -= 1
                    return
                with self._futures_lock:
                    self._futures.add(future)
                future.add_done_callback(functools.partial(self._message_done, queue))

    def _message_done(self, queue: _QueueFunction, future: Future[None]) -> None:
        with self._futures_lock:
            self._futures.discard(future)
        with queue.condition:
            queue.in_flight -= 1
            queue.condition.notify_all()

    def _polling_delay(self, empty_polls: int) -> float:
        """Randomised exponential backoff: 100 ms doubling up to maxPollingInterval."""
        maximum = self._queue_options.max_polling_interval.total_seconds()
        base = _MIN_POLLING_INTERVAL.total_seconds() * (1 << min(max(empty_polls - 1, 0), 30))
        return min(maximum, base * random.uniform(0.8, 1.2))

    def _receive(self, queue: _QueueFunction, count: int) -> list[StorageQueueMessage]:
        client = self._client(queue.queue_name)
        pages = client.receive_messages(
            messages_per_page=count, visibility_timeout=int(self._lease.total_seconds())
        ).by_page()
        first = next(pages, None)
        return list(first) if first is not None else []

    def _process_message(self, queue: _QueueFunction, message: StorageQueueMessage) -> None:
        """Run the function for one message and settle it; never raises."""
        try:
            self._settle(queue, message)
        except Exception:
            _LOG.exception("Settling message %s of queue '%s' failed", message.id, queue.queue_name)

    def _settle(self, queue: _QueueFunction, message: StorageQueueMessage) -> None:
        client = self._client(queue.queue_name)
        raw = str(message.content or "")
        if self._stop_event.is_set():  # shutting down: give the message back right away
            client.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=0)
            return
        try:
            body = self._decode(raw)
        except (binascii.Error, ValueError):
            _LOG.warning(
                "Message decoding has failed! Check MessageEncoding settings. MessageId=%s. "
                "Moving message to queue '%s'.",
                message.id,
                queue.poison_queue_name,
            )
            self._client(queue.poison_queue_name).send_message(raw)
            client.delete_message(message.id, message.pop_receipt)
            return
        functions_message = _make_queue_message(
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            self._invoke(
                queue.function,
                functions_message,
                f"New queue message detected on '{queue.queue_name}'.",
            )
        except Exception:
            dequeue_count = message.dequeue_count or 1
            if dequeue_count >= self._queue_options.max_dequeue_count:
                _LOG.warning(
                    "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
                    self._queue_options.max_dequeue_count,
                    queue.poison_queue_name,
                )
                self._client(queue.poison_queue_name).send_message(raw)
                client.delete_message(message.id, message.pop_receipt)
            else:
                client.update_message(
                    message.id,
                    pop_receipt=message.pop_receipt,
                    visibility_timeout=int(self._queue_options.visibility_timeout.total_seconds()),
                )
            return
        client.delete_message(message.id, message.pop_receipt)

    def _decode(self, raw: str) -> bytes:
        if self._queue_options.message_encoding == "none":
            return raw.encode("utf-8")
        return base64.b64decode("".join(raw.split()), validate=True)

    def _encode(self, body: bytes) -> str:
        if self._queue_options.message_encoding == "none":
            return body.decode("utf-8")
        return base64.b64encode(body).decode("ascii")

    def _client(self, queue_name: str) -> QueueClient:
        """A raw-text client for ``queue_name``; the queue is created the first time."""
        with self._clients_lock:
            client = self._clients.get(queue_name)
            if client is None:
                client = QueueClient.from_connection_string(
                    self._connection_string,
                    queue_name,
                    raw_request_hook=storage.on_request,
                )
                self._clients[queue_name] = client
            created = queue_name in self._created_queues
        if not created:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            with self._clients_lock:
                self._created_queues.add(queue_name)
        return client
