"""Reading an HTTP request's inputs: each problem is a `BadInput` whose message names the
parameter, which the route answers with a 4xx (`shared.web.refuses_bad_input`).

Every route reads its query (and a JSON body) through these functions, so a malformed value,
an out-of-range date or an unknown name is refused here, never a 500 from deeper down.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

MAX_TEXT = 200  # characters in a filter value, id or token from a query string
MAX_JSON_BODY = 64 * 1024  # bytes in an API command's JSON body
# Dates an API accepts: none of Vigil's data is older than Workplace itself, and a date beyond
# the end of the century is a typo (either would also overflow the keys' tick arithmetic).
EARLIEST = datetime(2004, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
KEY_FORBIDDEN = "/\\#?"  # characters a table key may not hold
EXAMPLE_TIME = "an ISO 8601 time such as 2026-03-02T09:00:00Z"


class BadInput(ValueError):
    """A request input is wrong; the message names it and says what is expected (a 400, or
    `status`)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def known(params: Mapping[str, str], allowed: Iterable[str]) -> None:
    """Refuse a parameter the route does not take (the function key's `code` is always taken)."""
    names = tuple(allowed)
    unknown = sorted(set(params) - set(names) - {"code"})
    if unknown:
        use = f"use {', '.join(names)}" if names else "this route takes none"
        raise BadInput(f"unknown query parameter {unknown[0]!r}: {use}")


def checked(name: str, value: str, *, max_len: int = MAX_TEXT, key: bool = False) -> str:
    """One value: at most `max_len` characters, printable; `key`: also fit a table key."""
    if len(value) > max_len:
        raise BadInput(f"{name}: at most {max_len} characters")
    if not value.isprintable():
        raise BadInput(f"{name}: may not contain control characters")
    if key and any(c in value for c in KEY_FORBIDDEN):
        raise BadInput(f"{name}: may not contain / \\ # or ?")
    return value


def text(
    params: Mapping[str, str], name: str, max_len: int = MAX_TEXT, *, key: bool = False
) -> str:
    return checked(name, params.get(name, "").strip(), max_len=max_len, key=key)


def time(params: Mapping[str, str], name: str, *, required: bool = False) -> datetime | None:
    """An ISO 8601 time (`Z`, `+01:00`, or none: UTC) from EARLIEST to before LATEST."""
    raw = text(params, name)
    if not raw:
        if required:
            raise BadInput(f"{name}: required, {EXAMPLE_TIME}")
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"{name}: expected {EXAMPLE_TIME}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Compared before converting: 0001-01-01T00:00:00+01:00 has no UTC value.
    if not EARLIEST <= value < LATEST:
        raise BadInput(
            f"{name}: expected a time from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}, "
            f"{EXAMPLE_TIME}"
        )
    return value.astimezone(UTC)


def integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip() or str(default)
    # Length first: int() of thousands of digits raises (ValueError) or is slow.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or not low <= int(raw) <= high:
        raise BadInput(f"{name}: expected an integer from {low} to {high}")
    return int(raw)


def choice(params: Mapping[str, str], name: str, allowed: Iterable[str]) -> str:
    raw = text(params, name)
    options = tuple(allowed)
    if raw and raw not in options:
        raise BadInput(f"{name}: {raw!r} is not one of {', '.join(options)}")
    return raw


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the name {key[:40]!r} appears twice in one object")
        found[key] = value
    return found


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON value")


def strict_json(body: bytes | str) -> Any:
    """JSON as RFC 8259 defines it: no NaN or Infinity, no number beyond a double, no name twice
    in one object (parsers disagree on which one wins); ValueError naming the problem otherwise
    (nesting too deep for the parser included)."""
    try:
        return json.loads(
            body,
            object_pairs_hook=_unique_keys,
            parse_float=_finite,
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def json_object(
    body: bytes,
    name: str = "body",
    max_bytes: int = MAX_JSON_BODY,
    example: str = '{"status": "inProgress"}',
) -> dict[str, Any]:
    """A JSON object body (empty: {}); anything else is BadInput naming it (413: too large)."""
    if len(body) > max_bytes:
        raise BadInput(f"{name}: at most {max_bytes} bytes", status=413)
    if not body.strip():
        return {}
    try:
        payload = strict_json(body)
    except ValueError as bad:
        raise BadInput(f"{name}: not JSON ({bad}); send an object such as {example}") from None
    if not isinstance(payload, dict):
        raise BadInput(f"{name}: expected a JSON object such as {example}")
    return payload


def network(params: Mapping[str, str], name: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    raw = params.get(name, "").strip()
    try:
        return ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise BadInput(
            f"{name}: expected an IP address or a CIDR range such as 203.0.113.0/24"
        ) from None
