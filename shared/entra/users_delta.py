"""The Entra directory: users and `accountEnabled` from Graph's `/users` delta query.

The first round reads every user (`GET /users/delta?$select=...`, following `@odata.nextLink`);
its last page carries an `@odata.deltaLink`, and every later run asks that link for what changed
since (one request when nothing did). Each page's users are merged into the same user records the
Workplace directory sync fills (`shared/users.py`: the tenant id is the partition, the Entra object
id the row), then the link to read next is saved (table `EntraSync`, partition `entra_directory`),
so a run that ends early resumes at that page and re-reading a page changes nothing.

A changed user comes back as its id and the selected properties that changed: what is absent is
kept from the stored record. `accountEnabled: false` makes the record `deactivated` (its
`deactivated_at` the run that first saw it), `true` active again, and `@removed` (deleted) makes
it `deleted`; terminated-user detection reads these records as it reads Workplace's. An expired
delta token (400 `syncStateNotFound` after seven days, or 410) starts a full round again.

A user deleted while no token was valid never comes back as `@removed`: the new round simply
does not list them. So each record carries the number of the last full round that listed it
(`listed_in_round`), and when a full round ends, the tenant's records an earlier round listed
last are made `deleted` as `@removed` would (a re-read page changes nothing; records no round
listed, such as Workplace's, are never touched).

Permission: User.Read.All (application). Groups come the same way (`run_delta`), from
`/groups/delta`: shared/entra/groups_delta.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.config import Settings
from shared.governance.graph import GraphClient
from shared.governance.graph_results import GraphError
from shared.groups import GroupStore
from shared.models import UserRecord, utc
from shared.users import UserStore, directory_id

log = logging.getLogger(__name__)

PARTITION = "entra_directory"
SELECT = "id,userPrincipalName,mail,displayName,accountEnabled"
MAX_PAGES_PER_RUN = 50
EXPIRED = ("syncStateNotFound", "resyncRequired")
FORBIDDEN_RECHECK = timedelta(minutes=15)


@dataclass(frozen=True)
class DirectoryState:
    tenant_id: str
    kind: str = "users"  # users | groups: which delta query
    link: str = ""  # the nextLink of the round being read, or the deltaLink once it is done
    state: str = "not_started"  # not_started | syncing | current | throttled | forbidden | error
    reason: str = ""
    resume_after: datetime | None = None
    synced_at: datetime | None = None  # when a round (full or delta) last completed
    last_run_at: datetime | None = None
    rounds: int = 0  # full rounds started (the first, and one per expired token)
    full: bool = False  # the round being read is a full one (lists every user)
    changes: int = 0  # user entries applied, in all
    skipped: int = 0  # entries Vigil could not read (no usable id), in all


class DirectoryStateStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    @staticmethod
    def _row(tenant_id: str, kind: str) -> str:
        return tenant_id if kind == "users" else f"{tenant_id}_{kind}"

    def get(self, tenant_id: str, kind: str = "users") -> DirectoryState:
        try:
            e = self._table.get_entity(PARTITION, self._row(tenant_id, kind))
        except ResourceNotFoundError:
            return DirectoryState(tenant_id, kind)

        def when(name: str) -> datetime | None:
            return utc(e[name]) if e.get(name) else None

        return DirectoryState(
            tenant_id,
            kind,
            link=str(e.get("Link", "")),
            state=str(e.get("State", "not_started")),
            reason=str(e.get("Reason", "")),
            resume_after=when("ResumeAfter"),
            synced_at=when("SyncedAt"),
            last_run_at=when("LastRunAt"),
            rounds=int(e.get("Rounds", 0)),
            full=bool(e.get("Full", False)),
            changes=int(e.get("Changes", 0)),
            skipped=int(e.get("Skipped", 0)),
        )

    def save(self, s: DirectoryState) -> None:
        def when(value: datetime | None) -> Any:
            return utc(value) if value else ""

        self._table.upsert_entity(
            {
                "PartitionKey": PARTITION,
                "RowKey": self._row(s.tenant_id, s.kind),
                "Link": s.link,
                "State": s.state,
                "Reason": s.reason,
                "ResumeAfter": when(s.resume_after),
                "SyncedAt": when(s.synced_at),
                "LastRunAt": when(s.last_run_at),
                "Rounds": s.rounds,
                "Full": s.full,
                "Changes": s.changes,
                "Skipped": s.skipped,
            }
        )


def merge(
    tenant_id: str, before: UserRecord | None, entry: dict[str, Any], now: datetime
) -> UserRecord:
    """The user's record after one delta entry (pure): absent properties keep their value."""
    uid = str(entry["id"])
    record = before or UserRecord(tenant_id, uid, "")
    upn = entry.get("userPrincipalName")
    if isinstance(upn, str) and upn:
        record = replace(record, email=upn)
    if "@removed" in entry:
        if record.status == "deleted":
            return record
        off = record.deactivated_at if record.status == "deactivated" else None
        return replace(record, status="deleted", deactivated_at=off or now)
    enabled = entry.get("accountEnabled")
    if record.status == "deleted" and enabled is None:  # restored, as it was
        enabled = True
    if enabled is False and record.status != "deactivated":
        return replace(record, status="deactivated", deactivated_at=now)
    if enabled is True and record.status != "active":
        return replace(record, status="active", deactivated_at=None)
    return record


def apply_page(
    deps: DirectoryDeps, s: DirectoryState, entries: list[Any], now: datetime
) -> tuple[int, int]:
    """Merge one page into the user records, each listed in the state's round; (entries
    applied, entries skipped)."""
    tenant_id = s.tenant_id
    usable = [e for e in entries if isinstance(e, dict) and directory_id(e.get("id"))]
    skipped = len(entries) - len(usable)
    if skipped:
        log.warning("entra directory: %d user entries without a usable id skipped", skipped)
    if not usable:
        return 0, skipped
    ids = list(dict.fromkeys(str(e["id"]) for e in usable))
    records = deps.users.get_many(tenant_id, ids)
    for e in usable:  # in page order: a user twice on a page ends in its last state
        uid = str(e["id"])
        after = merge(tenant_id, records.get(uid), e, now)
        records[uid] = replace(after, listed_in_round=s.rounds)
    deps.users.save_many([records[uid] for uid in ids])
    return len(usable), skipped


def delete_unlisted(deps: DirectoryDeps, s: DirectoryState, now: datetime) -> int:
    """At the end of a full round: the users an earlier round listed and this one did not are
    gone from the directory (deleted while no delta token was valid), as `@removed` says."""
    removed = {"@removed": {"reason": "deleted"}}
    gone = [
        merge(s.tenant_id, u, {"id": u.user_id, **removed}, now)
        for u in deps.users.listed_before(s.tenant_id, s.rounds)
    ]
    if gone:
        deps.users.save_many(gone)
        log.warning("entra directory: %d users the full round did not list: deleted", len(gone))
    return len(gone)


def _failed(s: DirectoryState, exc: GraphError, now: datetime, permission: str) -> DirectoryState:
    if exc.status == 429:
        wait = timedelta(seconds=exc.retry_after if exc.retry_after is not None else 60)
        reason = f"Graph answered 429 (Retry-After {wait.total_seconds():.0f} s)"
        return replace(s, state="throttled", reason=reason, resume_after=now + wait)
    if exc.status in (401, 403):
        reason = (
            f"Graph refused ({exc.status} {exc.code}): grant the app {permission} "
            "(application permission, admin consent)"
        )
        return replace(s, state="forbidden", reason=reason, resume_after=now + FORBIDDEN_RECHECK)
    return replace(s, state="error", reason=f"Graph error {exc.status} {exc.code}")


def _expired(exc: GraphError) -> bool:
    return exc.status == 410 or (exc.status == 400 and exc.code in EXPIRED)


@dataclass(frozen=True)
class DirectoryDeps:
    """What the Entra directory's delta queries read and write; Graph reached only when needed."""

    settings: Settings
    states: DirectoryStateStore
    users: UserStore
    groups: GroupStore
    graph: Callable[[], GraphClient]


Apply = Callable[["DirectoryDeps", DirectoryState, list[Any], datetime], tuple[int, int]]
Finish = Callable[["DirectoryDeps", DirectoryState, datetime], int]


def sync_users(deps: DirectoryDeps, now: datetime, graph: Any = None) -> DirectoryState:
    """One run of the tenant's users delta: from the saved link, at most MAX_PAGES_PER_RUN pages."""
    return run_delta(
        deps, now, "users", SELECT, apply_page, "User.Read.All", graph, delete_unlisted
    )


def run_delta(
    deps: DirectoryDeps,
    now: datetime,
    kind: str,
    select: str,
    apply: Apply,
    permission: str,
    graph: Any = None,
    finish_full: Finish | None = None,
) -> DirectoryState:
    """One run of `/{kind}/delta` for the tenant: each page applied, then its link saved;
    `finish_full` when a full round has been read (before its delta link is saved, so a crash
    reads the last page and finishes again)."""
    tenant, _ = deps.settings.graph_app()
    graph = graph if graph is not None else deps.graph()
    store = deps.states
    s = store.get(tenant, kind)
    if s.resume_after is not None and now < s.resume_after:
        return s
    s = replace(s, last_run_at=now, resume_after=None)
    for _ in range(MAX_PAGES_PER_RUN):
        if not s.link:
            s = replace(s, rounds=s.rounds + 1, state="syncing", full=True)
        url, params = (s.link, None) if s.link else (f"/{kind}/delta", {"$select": select})
        try:
            page = graph.report_page(url, params)
        except GraphError as exc:
            if _expired(exc) and s.link:
                log.warning("entra directory: the %s delta token expired; reading all again", kind)
                s = replace(s, link="", reason="the delta token expired: a full round again")
                store.save(s)
                continue
            s = _failed(s, exc, now, permission)
            store.save(s)
            log.warning("entra directory (%s) of tenant %s: %s", kind, tenant, s.reason)
            return s
        values = page.get("value")
        applied, skipped = apply(deps, s, values if isinstance(values, list) else [], now)
        s = replace(s, changes=s.changes + applied, skipped=s.skipped + skipped)
        next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
        if isinstance(next_link, str) and next_link:
            s = replace(s, link=next_link, state="syncing", reason="")
            store.save(s)
            continue
        if not (isinstance(delta_link, str) and delta_link):
            s = replace(s, link="", state="error", reason="a delta page with neither link")
            store.save(s)
            return s
        if s.full and finish_full is not None:
            s = replace(s, changes=s.changes + finish_full(deps, s, now))
        s = replace(s, link=delta_link, state="current", reason="", synced_at=now, full=False)
        store.save(s)
        return s
    return s


def report(s: DirectoryState) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "state": s.state,
        "reason": s.reason,
        "synced_at": iso(s.synced_at),
        "last_run_at": iso(s.last_run_at),
        "resume_after": iso(s.resume_after),
        "full_rounds": s.rounds,
        "changes": s.changes,
        "skipped": s.skipped,
    }
