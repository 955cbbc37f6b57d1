"""The simulated Graph's delta queries: `GET /users/delta` and `GET /groups/delta`.

As documented (learn.microsoft.com/graph/delta-query-users, delta-query-groups): the first
request (with the `$select` the client tracks) returns every current object, page by page
(`@odata.nextLink` with a `$skiptoken`), the last page carrying an `@odata.deltaLink`
(`$deltatoken`). A request with that deltaLink returns only what changed since: a new object with
its selected properties, a changed one as its `id` and the selected properties that changed (Graph
promises "at least" those; a client must merge), and a deleted one as
`{"id": ..., "@removed": {"reason": "changed"}}`. A property not selected does not make an object
appear. A group's members come as `members@delta` (with `members` selected): every member in the
first round, then the members added (`{"@odata.type": "#microsoft.graph.user", "id": ...}`) and
removed (`{"id": ..., "@removed": {"reason": "deleted"}}`). An unknown or expired delta token is
answered 400 `syncStateNotFound`, as Graph does after the token's seven days.

Users are the simulator's (`SimulatedGraph.users`); groups live here (`groups`: id -> SimGroup).
Each round reads a snapshot at its first request; its pages and the next baseline are kept under
an opaque token.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PAGE_SIZE = 200
EXPIRED = "syncStateNotFound"
USER_TYPE = "#microsoft.graph.user"


class DeltaError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class SimGroup:
    display_name: str
    members: set[str] = field(default_factory=set)  # user object ids


@dataclass
class _Round:
    select: list[str]
    entries: list[dict[str, Any]]
    baseline: dict[str, dict[str, Any]]  # object id -> selected properties after this round


Baseline = tuple[str, list[str], dict[str, dict[str, Any]]]  # kind, select, objects


class UsersDelta:
    def __init__(self) -> None:
        self.page_size = PAGE_SIZE
        self.requests = 0
        self.groups: dict[str, SimGroup] = {}
        self._rounds: dict[str, _Round] = {}
        self._baselines: dict[str, Baseline] = {}
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
            self.requests += 1
            if "$skiptoken" in query:
                ref, offset = _decode(query["$skiptoken"])
                if ref not in self._rounds:
                    raise DeltaError(400, EXPIRED, "The skip token is not valid.")
                rnd = self._rounds[ref]
            else:
                ref, offset = secrets.token_urlsafe(8), 0
                rnd = self._start(kind, query, objects, select)
                self._rounds[ref] = rnd
            page = rnd.entries[offset : offset + self.page_size]
            body: dict[str, Any] = {
                "@odata.context": f"{base_url}/$metadata#{kind}({','.join(rnd.select)})",
                "value": page,
            }
            if offset + self.page_size < len(rnd.entries):
                token = _encode(ref, offset + self.page_size)
                body["@odata.nextLink"] = f"{base_url}/{kind}/delta?$skiptoken={token}"
            else:
                delta = secrets.token_urlsafe(12)
                self._baselines[delta] = (kind, rnd.select, rnd.baseline)
                del self._rounds[ref]
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
            chosen = ["id", *(p for p in select if p != "id")]
            now = {oid: {p: props.get(p) for p in chosen} for oid, props in objects.items()}
            return _Round(chosen, [_entry(now[oid], {}) for oid in sorted(now)], now)
        known = self._baselines.get(query["$deltatoken"])
        if known is None or known[0] != kind:
            raise DeltaError(
                400,
                EXPIRED,
                "The sync state generation is not found. The delta token is expired and data "
                "must be synchronized again.",
            )
        _, chosen, before = known
        now = {oid: {p: props.get(p) for p in chosen} for oid, props in objects.items()}
        entries: list[dict[str, Any]] = []
        for oid in sorted(set(before) | set(now)):
            if oid not in now:
                entries.append({"id": oid, "@removed": {"reason": "changed"}})
            elif oid not in before:
                entries.append(_entry(now[oid], {}))
            elif changed := {p: v for p, v in now[oid].items() if before[oid].get(p) != v}:
                entries.append(_entry({"id": oid, **changed}, before[oid]))
        return _Round(chosen, entries, now)


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


def _encode(ref: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([ref, offset]).encode()).decode()


def _decode(token: str) -> tuple[str, int]:
    try:
        ref, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(ref), int(offset)
    except (ValueError, TypeError) as exc:
        raise DeltaError(400, "Request_BadRequest", "The skip token is malformed.") from exc
