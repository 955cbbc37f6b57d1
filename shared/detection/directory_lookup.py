"""What the directories say about a user, looked up before the decisions that need it.

Workplace: the synced user record (status, deactivation time, groups) and the tenant's group
names, for the terminated-user decision and for scopes that name groups. Entra ID:
`GraphClient.get_users` by e-mail/UPN when Graph is configured, only for the terminated-user
decision: the users of a detection batch not in the cache are asked together in Graph `$batch`
requests of 20; answers are cached for a few minutes per process, and a failing Graph is logged
and treated as "not checked" so detection goes on.

Workplace records change when the directory sync completes a snapshot. Given the tenant's
directory `generation` (when that sync last completed: one point read per batch), records are
cached until it changes, and for RECORD_MAX_SECONDS at most (a login merges the user's auth
method in between). Without it, for RECORD_CACHE_SECONDS. All caches are bounded (least recently
used out first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from shared.detection.base import Directory
from shared.lru import Lru
from shared.models import UserRecord

log = logging.getLogger(__name__)
CACHE_SECONDS = 600.0
UNANSWERED_RETRY_SECONDS = 30.0
# Without a generation to check: a minute of caching adds at most a minute to the sync's lag.
RECORD_CACHE_SECONDS = 60.0
RECORD_MAX_SECONDS = 600.0
MAX_CACHED = 50_000  # per cache: users' records, Entra answers (a few hundred bytes each)


class DirectoryLookup:
    def __init__(
        self,
        workplace_user: Callable[[str, str], UserRecord | None],
        workplace_users: Callable[[str, list[str]], dict[str, UserRecord]] | None = None,
        group_names: Callable[[str], dict[str, str]] | None = None,
        entra_users: Callable[[list[str]], dict[str, dict[str, Any] | None]] | None = None,
        generation: Callable[[str], object] | None = None,
        cache_size: int = MAX_CACHED,
    ) -> None:
        self._workplace = workplace_user
        self._workplace_many = workplace_users
        self._group_names = group_names
        self._entra_many = entra_users
        self._generation = generation
        self._cache: Lru[str, tuple[float, str]] = Lru(cache_size)
        self._records: Lru[tuple[str, str], tuple[float, object, UserRecord | None]] = Lru(
            cache_size
        )
        self._names: dict[str, tuple[float, object, dict[str, str]]] = {}

    def _fresh(self, at: float, gen: object, now: float, current: object) -> bool:
        """Is what was read at `at`, in directory generation `gen`, still good?"""
        if self._generation is None:
            return now - at < RECORD_CACHE_SECONDS
        return gen == current and now - at < RECORD_MAX_SECONDS

    def _entra_status(self, upn: str) -> str:
        """enabled | disabled | deleted, or "" when not checked (no Graph, no answer)."""
        if self._entra_many is None or not upn:
            return ""
        self._prefetch_entra([upn])  # nothing to do when lookup_many already asked
        hit = self._cache.get(upn.lower())
        return hit[1] if hit is not None else ""

    def _prefetch_entra(self, upns: list[str]) -> None:
        """Look the uncached addresses up together (Graph `$batch`), not one request each."""
        if self._entra_many is None:
            return
        now = time.monotonic()
        missing = sorted(
            {
                u.lower()
                for u in upns
                if u and not ((hit := self._cache.get(u.lower())) and now - hit[0] < CACHE_SECONDS)
            }
        )
        if not missing:
            return
        try:
            found = self._entra_many(missing)
        except Exception as exc:  # Graph down must not stop detection
            log.warning(
                "entra lookup failed (%s); terminated-user check skipped", type(exc).__name__
            )
            found = {}
        for upn in missing:
            if upn in found:
                self._cache.put(upn, (now, _status(found[upn])))
            else:  # not answered: "not checked", and asked again after UNANSWERED_RETRY_SECONDS
                self._cache.put(upn, (now - CACHE_SECONDS + UNANSWERED_RETRY_SECONDS, ""))

    def _names_of(self, tenant_id: str, gen: object = None) -> dict[str, str]:
        """Group id -> lower-cased name for the tenant, cached like the user records."""
        if self._group_names is None:
            return {}
        now = time.monotonic()
        hit = self._names.get(tenant_id)
        if hit is not None and self._fresh(hit[0], hit[1], now, gen):
            return hit[2]
        names = {k: v.lower() for k, v in self._group_names(tenant_id).items() if v}
        self._names[tenant_id] = (now, gen, names)
        return names

    def lookup_many(
        self,
        tenant_id: str,
        users: dict[str, str],
        *,
        entra: bool = True,
        groups: bool = True,
    ) -> dict[str, Directory]:
        """`lookup` for several users (user id -> e-mail), reading their records together.

        `entra`: ask Entra ID too (only the terminated-user decision needs it); `groups`: resolve
        the users' groups (only group scopes need them)."""
        gen = self._generation(tenant_id) if self._generation is not None else None
        names = self._names_of(tenant_id, gen) if groups else None
        if self._workplace_many is None:
            return {
                u: self._directory(self._workplace(tenant_id, u), email, entra, names)
                for u, email in users.items()
            }
        now = time.monotonic()
        fresh = {
            u: hit[2]
            for u in users
            if (hit := self._records.get((tenant_id, u))) and self._fresh(hit[0], hit[1], now, gen)
        }
        missing = [u for u in users if u not in fresh]
        if missing:
            found = self._workplace_many(tenant_id, missing)
            for u in missing:
                fresh[u] = found.get(u)
                self._records.put((tenant_id, u), (now, gen, fresh[u]))
        if entra:
            self._prefetch_entra(
                [email or (r.email if (r := fresh[u]) else "") for u, email in users.items()]
            )
        return {u: self._directory(fresh[u], email, entra, names) for u, email in users.items()}

    def lookup(self, tenant_id: str, user_id: str, email: str) -> Directory:
        gen = self._generation(tenant_id) if self._generation is not None else None
        names = self._names_of(tenant_id, gen)
        return self._directory(self._workplace(tenant_id, user_id), email, True, names)

    def _directory(
        self, record: UserRecord | None, email: str, entra: bool, names: dict[str, str] | None
    ) -> Directory:
        groups: frozenset[str] = frozenset()
        if record and record.groups and names is not None:
            groups = frozenset(record.groups) | {names[g] for g in record.groups if g in names}
        return Directory(
            workplace_status=record.status if record else "",
            workplace_deactivated_at=record.deactivated_at if record else None,
            is_admin=bool(record and record.is_admin),
            auth_method=record.auth_method if record else "",
            entra=self._entra_status(email or (record.email if record else "")) if entra else "",
            groups=groups,
        )


def _status(user: dict[str, Any] | None) -> str:
    if user is None:
        return "deleted"
    return "disabled" if user.get("accountEnabled") is False else "enabled"
