"""The simulated Graph's `GET /users/delta`: a directory's users as a delta query serves them.

As documented (learn.microsoft.com/graph/delta-query-users): the first request (with the
`$select` the client tracks) returns every current user, page by page (`@odata.nextLink` with a
`$skiptoken`), the last page carrying an `@odata.deltaLink` (`$deltatoken`). A request with that
deltaLink returns only what changed since: a new user with its selected properties, a changed one
as its `id` and the selected properties that changed (Graph promises "at least" those; a client
must merge), and a deleted one as `{"id": ..., "@removed": {"reason": "changed"}}`. A property
not selected does not make a user appear. An unknown or expired delta token is answered 400
`syncStateNotFound`, as Graph does after the token's seven days.

The directory is the caller's (the simulator's `users`), read as a snapshot at each round's first
request; a round's pages and the next baseline are kept here under an opaque token.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PAGE_SIZE = 200
EXPIRED = "syncStateNotFound"


class DeltaError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class _Round:
    select: list[str]
    entries: list[dict[str, Any]]
    baseline: dict[str, dict[str, Any]]  # user id -> selected properties after this round


class UsersDelta:
    def __init__(self) -> None:
        self.page_size = PAGE_SIZE
        self.requests = 0
        self._rounds: dict[str, _Round] = {}
        self._baselines: dict[str, tuple[list[str], dict[str, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def expire_tokens(self) -> None:
        """Forget every delta token, as Graph does after seven days."""
        with self._lock:
            self._baselines.clear()

    def answer(
        self,
        query: Mapping[str, str],
        users: Mapping[str, dict[str, Any]],
        select: list[str],
        base_url: str,
    ) -> dict[str, Any]:
        """One page. `users`: id -> every property of each current user; `select`: the
        properties the first request asked for (already validated)."""
        with self._lock:
            self.requests += 1
            if "$skiptoken" in query:
                ref, offset = _decode(query["$skiptoken"])
                if ref not in self._rounds:
                    raise DeltaError(400, EXPIRED, "The skip token is not valid.")
                rnd = self._rounds[ref]
            else:
                ref, offset = secrets.token_urlsafe(8), 0
                rnd = self._start(query, users, select)
                self._rounds[ref] = rnd
            page = rnd.entries[offset : offset + self.page_size]
            shape = ",".join(rnd.select)
            body: dict[str, Any] = {
                "@odata.context": f"{base_url}/$metadata#users({shape})",
                "value": page,
            }
            if offset + self.page_size < len(rnd.entries):
                token = _encode(ref, offset + self.page_size)
                body["@odata.nextLink"] = f"{base_url}/users/delta?$skiptoken={token}"
            else:
                delta = secrets.token_urlsafe(12)
                self._baselines[delta] = (rnd.select, rnd.baseline)
                del self._rounds[ref]
                body["@odata.deltaLink"] = f"{base_url}/users/delta?$deltatoken={delta}"
            return body

    def _start(
        self, query: Mapping[str, str], users: Mapping[str, dict[str, Any]], select: list[str]
    ) -> _Round:
        if "$deltatoken" not in query:
            chosen = ["id", *(p for p in select if p != "id")]
            now = {uid: {p: props.get(p) for p in chosen} for uid, props in users.items()}
            return _Round(chosen, [now[uid] for uid in sorted(now)], now)
        known = self._baselines.get(query["$deltatoken"])
        if known is None:
            raise DeltaError(
                400,
                EXPIRED,
                "The sync state generation is not found. The delta token is expired and data "
                "must be synchronized again.",
            )
        chosen, before = known
        now = {uid: {p: props.get(p) for p in chosen} for uid, props in users.items()}
        entries: list[dict[str, Any]] = []
        for uid in sorted(set(before) | set(now)):
            if uid not in now:
                entries.append({"id": uid, "@removed": {"reason": "changed"}})
            elif uid not in before:
                entries.append(now[uid])
            elif changed := {p: v for p, v in now[uid].items() if before[uid].get(p) != v}:
                entries.append({"id": uid, **changed})
        return _Round(chosen, entries, now)


def _encode(ref: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([ref, offset]).encode()).decode()


def _decode(token: str) -> tuple[str, int]:
    try:
        ref, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(ref), int(offset)
    except (ValueError, TypeError) as exc:
        raise DeltaError(400, "Request_BadRequest", "The skip token is malformed.") from exc
