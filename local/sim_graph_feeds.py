"""The simulated Graph's paged reads: `/auditLogs/{signIns,directoryAudits}` and the
`/users/delta` and `/groups/delta` queries; a page ends with an `@odata.nextLink` (an opaque
`$skiptoken`), a delta round's last page with an `@odata.deltaLink` instead.

Reporting (../shared/reference/entra-signins.md): `$filter` on the time field with `ge`, `le`,
`eq` (on beta, sign-ins also by `signInEventTypes/any(...)`), `$top` up to 1,000, newest first;
v1.0 has only interactive sign-ins and no `signInEventTypes`. Records may come late (`add` at any
time); `licensed = False` is a tenant without P1/P2 (403 on sign-ins).

Delta (learn.microsoft.com/graph/delta-query-users, delta-query-groups): a first round returns
every object with its `$select`ed properties; a later round a new object in full, a changed one
as its `id` and the properties that changed, a deleted one as `@removed`; a group's members as
`members@delta` (added, and removed with `@removed`). A round reads a snapshot at its first
request; an unknown or expired delta token is answered 400 `syncStateNotFound`.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_TOP = 1000
TIME_FIELD = {"signIns": "createdDateTime", "directoryAudits": "activityDateTime"}
EXPIRED = "syncStateNotFound"
USER_TYPE = "#microsoft.graph.user"
_CLAUSE = re.compile(r"(\w+)\s+(ge|le|eq)\s+(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)")
_TYPES = re.compile(r"signInEventTypes/any\(\s*t\s*:\s*(.+?)\)\s*$")
_TYPE_EQ = re.compile(r"t\s+eq\s+'(\w+)'")


class GraphError(Exception):
    """A Graph error answer: `status` and the envelope's `code` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _page(
    context: str, items: list[dict[str, Any]], offset: int, size: int
) -> tuple[dict[str, Any], int | None]:
    """The page of `items` from `offset`, and where the next one starts (None: the last)."""
    end = offset + size
    return {"@odata.context": context, "value": items[offset:end]}, (
        end if end < len(items) else None
    )


def _skiptoken(state: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


def _unskip(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise GraphError(400, "Request_BadRequest", "The skip token is malformed.") from exc


# ----------------------------------------------------------------------------- audit logs


class AuditLogs:
    def __init__(self) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {"signIns": [], "directoryAudits": []}
        self.licensed = True
        self.page_size = MAX_TOP  # the most a page holds whatever `$top` asks (tests page small)
        self.requests = 0
        self._lock = threading.Lock()

    def add(self, log: str, *records: dict[str, Any]) -> None:
        with self._lock:
            self.records[log].extend(json.loads(json.dumps(r)) for r in records)

    def answer(self, log: str, query: Mapping[str, str], base_url: str, beta: bool) -> Any:
        with self._lock:
            self.requests += 1
            if log == "signIns" and not self.licensed:
                raise GraphError(
                    403,
                    "Authorization_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                )
            if "$skiptoken" in query:
                state = _unskip(query["$skiptoken"])
                flt, top, offset = state["f"], state["t"], state["o"]
            else:
                flt, top, offset = query.get("$filter", ""), int(query.get("$top") or MAX_TOP), 0
                if not 1 <= top <= MAX_TOP:
                    raise GraphError(400, "BadRequest", f"$top must be 1-{MAX_TOP}")
            found = self._select(log, flt, beta)
            context = f"{base_url}/$metadata#auditLogs/{log}"
            body, after = _page(context, found, offset, min(top, self.page_size))
            if after is not None:
                skip = _skiptoken({"f": flt, "t": top, "o": after})
                body["@odata.nextLink"] = f"{base_url}/auditLogs/{log}?$top={top}&$skiptoken={skip}"
            return body

    def _select(self, log: str, flt: str, beta: bool) -> list[dict[str, Any]]:
        time_field = TIME_FIELD[log]
        lo = hi = None
        for name, op, value in _CLAUSE.findall(flt):
            if name != time_field:
                raise GraphError(400, "BadRequest", f"unsupported filter on {name}")
            if op in ("ge", "eq"):
                lo = datetime.fromisoformat(value)
            if op in ("le", "eq"):
                hi = datetime.fromisoformat(value)
        types = {"interactiveUser"}
        if m := _TYPES.search(flt):
            if not beta:
                raise GraphError(
                    400,
                    "BadRequest",
                    "Could not find a property named 'signInEventTypes' on type "
                    "'microsoft.graph.signIn'.",
                )
            types = set(_TYPE_EQ.findall(m.group(1)))
        out = []
        for rec in self.records[log]:
            at = datetime.fromisoformat(rec[time_field])
            if (lo and at < lo) or (hi and at > hi):
                continue
            if log == "signIns":
                if not types & set(rec.get("signInEventTypes") or ["interactiveUser"]):
                    continue
                if not beta:
                    rec = {k: v for k, v in rec.items() if k != "signInEventTypes"}
            out.append(rec)
        out.sort(key=lambda r: (r[time_field], r["id"]), reverse=True)  # newest first
        return out


# ----------------------------------------------------------------------------- delta queries


@dataclass
class SimGroup:
    display_name: str
    members: set[str] = field(default_factory=set)  # user object ids


@dataclass
class _Round:
    kind: str
    select: list[str]
    entries: list[dict[str, Any]]
    baseline: dict[str, dict[str, Any]]  # object id -> selected properties after this round


class UsersDelta:
    """The delta rounds of `/users/delta` (the Graph's users) and `/groups/delta` (`groups`)."""

    def __init__(self) -> None:
        self.page_size = 200
        self.groups: dict[str, SimGroup] = {}
        self._rounds: dict[str, _Round] = {}  # rounds being paged, by reference
        self._baselines: dict[str, _Round] = {}  # finished rounds, by delta token
        self._lock = threading.Lock()

    def expire_tokens(self) -> None:
        """Forget every delta token, as Graph does after seven days."""
        with self._lock:
            self._baselines.clear()

    def group_objects(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                gid: {"id": gid, "displayName": g.display_name, "members": sorted(g.members)}
                for gid, g in self.groups.items()
            }

    def answer(
        self,
        kind: str,
        query: Mapping[str, str],
        objects: Mapping[str, dict[str, Any]],
        select: list[str],
        base_url: str,
    ) -> dict[str, Any]:
        """One page of `/{kind}/delta`. `objects`: id -> every property of each current object;
        `select`: the properties the first request asked for (already validated)."""
        with self._lock:
            if "$skiptoken" in query:
                ref, offset = _unskip(query["$skiptoken"])
                if ref not in self._rounds:
                    raise GraphError(400, EXPIRED, "The skip token is not valid.")
            else:
                ref, offset = secrets.token_urlsafe(8), 0
                self._rounds[ref] = self._start(kind, query, objects, select)
            rnd = self._rounds[ref]
            context = f"{base_url}/$metadata#{kind}({','.join(rnd.select)})"
            body, after = _page(context, rnd.entries, offset, self.page_size)
            if after is not None:
                skip = _skiptoken([ref, after])
                body["@odata.nextLink"] = f"{base_url}/{kind}/delta?$skiptoken={skip}"
            else:
                delta = secrets.token_urlsafe(12)
                self._baselines[delta] = self._rounds.pop(ref)
                body["@odata.deltaLink"] = f"{base_url}/{kind}/delta?$deltatoken={delta}"
            return body

    def _start(
        self,
        kind: str,
        query: Mapping[str, str],
        objects: Mapping[str, dict[str, Any]],
        select: list[str],
    ) -> _Round:
        if "$deltatoken" not in query:
            chosen, before = ["id", *(p for p in select if p != "id")], None
        else:
            known = self._baselines.get(query["$deltatoken"])
            if known is None or known.kind != kind:
                raise GraphError(
                    400,
                    EXPIRED,
                    "The sync state generation is not found. The delta token is expired and "
                    "data must be synchronized again.",
                )
            chosen, before = known.select, known.baseline
        now = {oid: {p: props.get(p) for p in chosen} for oid, props in objects.items()}
        if before is None:
            return _Round(kind, chosen, [_entry(now[oid], {}) for oid in sorted(now)], now)
        entries: list[dict[str, Any]] = []
        for oid in sorted(set(before) | set(now)):
            if oid not in now:
                entries.append({"id": oid, "@removed": {"reason": "changed"}})
            elif oid not in before:
                entries.append(_entry(now[oid], {}))
            elif changed := {p: v for p, v in now[oid].items() if before[oid].get(p) != v}:
                entries.append(_entry({"id": oid, **changed}, before[oid]))
        return _Round(kind, chosen, entries, now)


def _entry(props: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """The wire form: a group's `members` as `members@delta` (added, and removed since)."""
    if "members" not in props:
        return dict(props)
    out = {k: v for k, v in props.items() if k != "members"}
    now, was = set(props["members"] or ()), set(before.get("members") or ())
    out["members@delta"] = [{"@odata.type": USER_TYPE, "id": m} for m in sorted(now - was)] + [
        {"@odata.type": USER_TYPE, "id": m, "@removed": {"reason": "deleted"}}
        for m in sorted(was - now)
    ]
    return out
