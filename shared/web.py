"""What an HTTP handler answers, independent of the Functions SDK (handlers map it 1:1)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec

from shared.query_params import BadInput

# Sent with every answer: browsers must not guess another type than the one declared (a JSON
# error quoting a delivery's text is never rendered as HTML), nothing runs, loads or is framed
# in an answer opened as a page (the install callback's pages included), and no cache or proxy
# keeps one (alerts, the audit log, an install's redirect carrying its `state`). The console's
# files relax the policy and caching for themselves (shared/console.py).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: str = ""
    mimetype: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", {**SECURITY_HEADERS, **self.headers})

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload, default=str), "application/json")

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        return cls.json(status, {"error": {"status": status, "message": message}})

    @classmethod
    def redirect(cls, location: str) -> Reply:
        return cls(302, "", "text/plain", {"Location": location})


P = ParamSpec("P")


def refuses_bad_input(fn: Callable[P, Reply]) -> Callable[P, Reply]:
    """The route answers a `BadInput` it raises with a 4xx naming the parameter."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Reply:
        try:
            return fn(*args, **kwargs)
        except BadInput as bad:
            return Reply.error(bad.status, str(bad))

    return wrapper
