"""The simulated Graph's reporting APIs: `/auditLogs/signIns` and `/auditLogs/directoryAudits`.

As documented (see ../shared/reference/entra-signins.md): `$filter` on `createdDateTime` /
`activityDateTime` with `ge` / `le` (a beta sign-in filter may add `signInEventTypes/any(...)`),
`$top` up to 1,000, newest first, `@odata.nextLink` carrying a `$skiptoken`. v1.0 returns only
interactive sign-ins and no `signInEventTypes`; beta returns the types the filter asks for.

Records are added by tests at any time, so a record whose time is already behind Vigil's
watermark is a late arrival. Faults: a tenant without P1/P2 (`licensed = False`: 403
`Authorization_RequestFromNonPremiumTenantOrB2CTenant` on sign-ins), and the reporting limit of
5 requests per 10 s per app and tenant (`limit(...)`: 429 with `Retry-After`); any other fault
through `SimulatedGraph.inject_fault`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

MAX_TOP = 1000
TIME_FIELD = {"signIns": "createdDateTime", "directoryAudits": "activityDateTime"}
_CLAUSE = re.compile(r"(\w+)\s+(ge|le|eq)\s+(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")
_TYPES = re.compile(r"signInEventTypes/any\(\s*t\s*:\s*(.+?)\)\s*$")
_TYPE_EQ = re.compile(r"t\s+eq\s+'(\w+)'")
NON_PREMIUM = "Authorization_RequestFromNonPremiumTenantOrB2CTenant"


class ReportError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class AuditLogs:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {"signIns": [], "directoryAudits": []}
        self.licensed = True
        self.page_size = MAX_TOP  # the most a page holds whatever `$top` asks (tests page small)
        self.requests = 0
        self._limit: tuple[int, float] | None = None
        self._seen: deque[float] = deque()
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, log: str, *records: dict[str, Any]) -> None:
        with self._lock:
            self.records[log].extend(json.loads(json.dumps(r)) for r in records)

    def limit(self, requests: int = 5, per_seconds: float = 10.0) -> None:
        """Answer 429 (with Retry-After) beyond `requests` per `per_seconds`, as Graph does."""
        self._limit = (requests, per_seconds)

    def _throttle(self) -> None:
        if self._limit is None:
            return
        n, span = self._limit
        now = self._clock()
        while self._seen and self._seen[0] <= now - span:
            self._seen.popleft()
        if len(self._seen) >= n:
            wait = max(1, int(self._seen[0] + span - now + 0.999))
            raise ReportError(
                429,
                "TooManyRequests",
                "Too many requests.",
                {"Retry-After": str(wait)},
            )
        self._seen.append(now)

    def answer(self, log: str, query: dict[str, str], base_url: str, beta: bool) -> dict[str, Any]:
        with self._lock:
            self.requests += 1
            self._throttle()
            if log == "signIns" and not self.licensed:
                raise ReportError(
                    403,
                    NON_PREMIUM,
                    "Neither tenant is B2C or tenant doesn't have premium license",
                    {},
                )
            if "$skiptoken" in query:
                state = json.loads(base64.urlsafe_b64decode(query["$skiptoken"]).decode())
                flt, top, offset = state["f"], state["t"], state["o"]
            else:
                flt, offset = query.get("$filter", ""), 0
                top = int(query.get("$top") or MAX_TOP)
                if not 1 <= top <= MAX_TOP:
                    raise ReportError(400, "BadRequest", f"$top must be 1-{MAX_TOP}", {})
            found = self._select(log, flt, beta)
            size = min(top, self.page_size)
            page = found[offset : offset + size]
            body: dict[str, Any] = {
                "@odata.context": f"{base_url}/$metadata#auditLogs/{log}",
                "value": page,
            }
            if offset + size < len(found):
                token = json.dumps({"f": flt, "t": top, "o": offset + size}).encode()
                skip = base64.urlsafe_b64encode(token).decode()
                body["@odata.nextLink"] = f"{base_url}/auditLogs/{log}?$top={top}&$skiptoken={skip}"
            return body

    def _select(self, log: str, flt: str, beta: bool) -> list[dict[str, Any]]:
        field = TIME_FIELD[log]
        lo = hi = None
        types = {"interactiveUser"}
        for name, op, value in _CLAUSE.findall(flt):
            if name != field:
                raise ReportError(400, "BadRequest", f"unsupported filter on {name}", {})
            if op in ("ge", "eq"):
                lo = _time(value)
            if op in ("le", "eq"):
                hi = _time(value)
        m = _TYPES.search(flt)
        if m:
            if not beta:
                raise ReportError(
                    400,
                    "BadRequest",
                    "Could not find a property named 'signInEventTypes' on type "
                    "'microsoft.graph.signIn'.",
                    {},
                )
            types = set(_TYPE_EQ.findall(m.group(1)))
        out = []
        for rec in self.records[log]:
            t = _time(rec[field])
            if (lo and t < lo) or (hi and t > hi):
                continue
            if log == "signIns":
                kinds = rec.get("signInEventTypes") or ["interactiveUser"]
                if not types & set(kinds):
                    continue
                if not beta:
                    rec = {k: v for k, v in rec.items() if k != "signInEventTypes"}
            out.append(rec)
        out.sort(key=lambda r: (r[field], r["id"]), reverse=True)  # newest first
        return out
