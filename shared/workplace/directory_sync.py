"""The slower half of sync_timer: each install's directory, read page by page and resumable.

A run snapshots members, former members, admins and groups, then each group's members, into
staging partitions, saving where it stands (edge, group, cursor) after every page; only when all
is read does it diff against the user records, write the changes as activities, then the records
(with their groups) and the groups' names, then mark the snapshot done. A failure at any step
leaves the saved position (or the finished staging) for the next run, and every write is keyed
so doing it twice changes nothing.

Groups are optional: when the install may not read them, or a group vanishes while the snapshot
is read, the sync logs it and goes on (nobody is in that group) rather than stopping the users'
sync, which terminated-user detection needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from shared import storage as st
from shared.activities import ActivityStore
from shared.groups import GroupStore
from shared.installs import InstallStore
from shared.logsafe import quoted
from shared.models import Install
from shared.secrets import SecretStore
from shared.table_tx import submit
from shared.users import UserStore, directory_id
from shared.workplace import directory
from shared.workplace.client import FailureKind, WorkplaceClient, WorkplaceError
from shared.workplace.counts import EventCountStore, new_activities
from shared.workplace.custom_integration import RegistrationDeps, ensure_registered
from shared.workplace.lifecycle import SHUTDOWN_LIKE, after_failure
from shared.workplace.sync_state import SyncState, SyncStateStore
from shared.workplace.tokens import WorkplaceTokens, secret_name

log = logging.getLogger(__name__)
PAGE_LIMIT = 100  # one staging transaction per page


@dataclass(frozen=True)
class DirectorySyncDeps:
    """What the directory sync of every install reads and writes."""

    installs: InstallStore
    sync_states: SyncStateStore
    tokens: WorkplaceTokens
    secrets: Callable[[], SecretStore]  # built on first need
    registration: RegistrationDeps  # the custom integration's community, first
    workplace: Callable[[], WorkplaceClient]  # built on first need
    users: UserStore
    groups: GroupStore
    activities: ActivityStore
    activities_table: TableClient  # which activities are new (counted once)
    staging: TableClient  # snapshots being read
    counts: EventCountStore
    enqueue_detection: Callable[[str], None]
    every: timedelta  # WORKPLACE_DIRECTORY_SYNC_MINUTES
    shutdown_date: date  # WORKPLACE_SHUTDOWN_DATE
    decommission_after: int  # WORKPLACE_DECOMMISSION_AFTER_FAILURES


@dataclass
class InstallSyncResult:
    community_id: str
    outcome: str  # "synced", "not_due", "skipped", "failed"
    status: str
    changes: int = 0
    error: str = ""


GROUP_MEMBERS_EDGE = "group_members"


@dataclass(frozen=True)
class Position:
    """Where reading a snapshot stands: what the next page (or the next run) reads."""

    edge: int  # index into directory.EDGES, or directory.GROUP_MEMBERS, or directory.DONE
    group: str = ""  # at GROUP_MEMBERS: whose members
    cursor: str = ""  # `after` cursor within that edge ("" from its start)


@dataclass(frozen=True)
class PageRead:
    """One page read, and where reading goes on after it."""

    edge: str  # a community edge of directory.EDGES, or GROUP_MEMBERS_EDGE
    rows: list[dict[str, Any]]
    then: Position
    group: str = ""  # GROUP_MEMBERS_EDGE: the group the rows are members of


def _staging_pk(community_id: str, run_id: str, part: str = "") -> str:
    """A run's staging partition: people (no `part`), "groups", or "memberships"."""
    return f"{community_id}_{run_id}" + (f"_{part}" if part else "")


def _upsert(table: TableClient, entities: list[dict[str, Any]]) -> None:
    unique = list({e["RowKey"]: e for e in entities}.values())
    for batch in st.transaction_batches(unique):
        submit(table, [("upsert", e, {"mode": UpdateMode.MERGE}) for e in batch])


def _stage(table: TableClient, pk: str, edge: str, rows: list[dict[str, Any]]) -> None:
    """Merge one page into the snapshot: each edge sets only its own flag, so re-reading a page
    (after a crash) or a person on several edges comes out the same."""
    flag = {"members": "Member", "former_members": "Former", "admins": "Admin"}[edge]
    entities = []
    for row in rows:
        user_id = directory_id(row.get("id"))
        if not user_id:
            continue
        entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": user_id, flag: True}
        if row.get("email"):
            entity["Email"] = str(row["email"])
        entities.append(entity)
    _upsert(table, entities)


def _stage_groups(table: TableClient, pk: str, rows: list[dict[str, Any]]) -> None:
    entities = [
        {"PartitionKey": pk, "RowKey": group_id, "Name": str(row.get("name") or "")}
        for row in rows
        if (group_id := directory_id(row.get("id")))
    ]
    _upsert(table, entities)


def _stage_memberships(
    table: TableClient, pk: str, group_id: str, rows: list[dict[str, Any]]
) -> None:
    """One row per (group, member): re-reading a page writes the same rows again."""
    entities = [
        {"PartitionKey": pk, "RowKey": f"{group_id}_{user_id}", "Group": group_id, "User": user_id}
        for row in rows
        if (user_id := directory_id(row.get("id")))
    ]
    _upsert(table, entities)


def _staged_groups(table: TableClient, pk: str) -> dict[str, str]:
    rows = table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey", "Name"]
    )
    return {e["RowKey"]: str(e.get("Name", "")) for e in rows}


def _snapshot(
    table: TableClient, pk: str, memberships_pk: str
) -> dict[str, directory.DirectoryEntry]:
    groups: dict[str, set[str]] = {}
    for e in table.query_entities(
        "PartitionKey eq @pk", parameters={"pk": memberships_pk}, select=["Group", "User"]
    ):
        groups.setdefault(str(e["User"]), set()).add(str(e["Group"]))
    return {
        e["RowKey"]: directory.DirectoryEntry(
            user_id=e["RowKey"],
            email=str(e.get("Email", "")),
            member=bool(e.get("Member")),
            former=bool(e.get("Former")),
            admin=bool(e.get("Admin")),
            groups=tuple(sorted(groups.get(e["RowKey"], ()))),
        )
        for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": pk})
    }


def _unreadable_group(exc: WorkplaceError) -> bool:
    """Groups are not for this install to read, or the group was deleted while paging."""
    return exc.kind == FailureKind.PERMISSION or (exc.code == 100 and exc.subcode == 33)


def _drop_staging(table: TableClient, community_id: str, keep: str = "") -> None:
    """Delete the community's staged snapshots (all but the run `keep`)."""
    rows = table.query_entities(
        "PartitionKey ge @lo and PartitionKey lt @hi",
        parameters={"lo": f"{community_id}_", "hi": f"{community_id}`"},  # "`" follows "_"
        select=["PartitionKey", "RowKey"],
    )
    st.delete_rows(table, (e for e in rows if e["PartitionKey"] != keep))


class DirectorySync:
    """One install's directory sync; each step is a method so a test can fail it in turn."""

    def __init__(self, deps: DirectorySyncDeps) -> None:
        self.deps, self.states = deps, deps.sync_states
        self.staging, self.counts = deps.staging, deps.counts

    def due(self, state: SyncState, now: datetime) -> bool:
        if state.run_id:
            return True  # an unfinished snapshot always resumes
        every = self.deps.every
        return state.directory_synced_at is None or now - state.directory_synced_at >= every

    def run(self, install: Install, token: str, now: datetime) -> int:
        """Read (or resume) the snapshot and apply it; returns the number of changes found."""
        c = install.community_id
        state = self.states.get(c)
        if not state.run_id:
            _drop_staging(self.staging, c)  # what an earlier run could not clean up
            state = SyncState(c, run_id=st.ticks_key(now), run_started_at=now)
            self.states.update(
                c, run_id=state.run_id, run_started_at=now, edge=0, group="", cursor="", pages=0
            )
        for read in self.pages(state, token):
            self.stage(state, read)
            self.advance(state, read.then)
            state = replace(state, pages=state.pages + 1)
        return self.apply(install, state, now)

    def pages(self, state: SyncState, token: str) -> Iterator[PageRead]:
        """The pages still to read, from where `state` stands; each says where reading goes on."""
        edge_index, cursor = state.edge, state.cursor or None
        while edge_index < len(directory.EDGES):
            edge = directory.EDGES[edge_index]
            try:
                page = self.deps.workplace().page(
                    f"/community/{edge}",
                    token,
                    fields=directory.FIELDS[edge],
                    after=cursor,
                    limit=PAGE_LIMIT,
                )
            except WorkplaceError as exc:
                if edge != "groups" or exc.kind != FailureKind.PERMISSION:
                    raise
                log.warning(
                    "community %s: groups cannot be read (%s); group scopes match nobody there",
                    quoted(state.community_id),
                    quoted(exc),
                )
                yield PageRead(edge, [], Position(directory.DONE))
                return
            if page.after is None:
                edge_index, cursor = edge_index + 1, None
            else:
                cursor = page.after
            yield PageRead(edge, page.data, Position(edge_index, cursor=cursor or ""))
        if edge_index == directory.GROUP_MEMBERS:
            yield from self.group_pages(state, token)

    def group_pages(self, state: SyncState, token: str) -> Iterator[PageRead]:
        """Each staged group's members, group by group in id order, from `state.group`."""
        staged = _staged_groups(self.staging, self._pk(state, "groups"))
        todo = [g for g in sorted(staged) if g >= state.group]
        for i, group in enumerate(todo):
            cursor = (state.cursor or None) if group == state.group else None
            done = (
                Position(directory.GROUP_MEMBERS, todo[i + 1])
                if i + 1 < len(todo)
                else Position(directory.DONE)
            )
            while True:
                try:
                    page = self.deps.workplace().page(
                        f"/{group}/members",
                        token,
                        fields=directory.GROUP_MEMBER_FIELDS,
                        after=cursor,
                        limit=PAGE_LIMIT,
                    )
                except WorkplaceError as exc:
                    if not _unreadable_group(exc):
                        raise
                    log.warning(
                        "community %s: members of group %s cannot be read (%s); skipped",
                        quoted(state.community_id),
                        quoted(group),
                        quoted(exc),
                    )
                    yield PageRead(GROUP_MEMBERS_EDGE, [], done, group)
                    break
                if page.after is None:
                    yield PageRead(GROUP_MEMBERS_EDGE, page.data, done, group)
                    break
                cursor = page.after
                then = Position(directory.GROUP_MEMBERS, group, cursor)
                yield PageRead(GROUP_MEMBERS_EDGE, page.data, then, group)

    def _pk(self, state: SyncState, part: str = "") -> str:
        return _staging_pk(state.community_id, state.run_id, part)

    def stage(self, state: SyncState, read: PageRead) -> None:
        if read.edge == "groups":
            _stage_groups(self.staging, self._pk(state, "groups"), read.rows)
        elif read.edge == GROUP_MEMBERS_EDGE:
            _stage_memberships(self.staging, self._pk(state, "memberships"), read.group, read.rows)
        else:
            _stage(self.staging, self._pk(state), read.edge, read.rows)

    def advance(self, state: SyncState, then: Position) -> None:
        """Save the position only after the page is staged: a crash in between re-reads it."""
        self.states.update(
            state.community_id,
            edge=then.edge,
            group=then.group,
            cursor=then.cursor,
            pages=state.pages + 1,
        )

    def apply(self, install: Install, state: SyncState, now: datetime) -> int:
        c, run_id = install.community_id, state.run_id
        at = state.run_started_at or now
        snapshot = _snapshot(self.staging, self._pk(state), self._pk(state, "memberships"))
        groups = _staged_groups(self.staging, self._pk(state, "groups"))
        previous = {u.user_id: u for u in self.deps.users.for_tenant(c)}
        after = directory.records(c, previous, snapshot, at)
        found = directory.changes(previous, after)
        acts = directory.activities(c, run_id, at, found)
        self.write_activities(run_id, acts)
        self.deps.users.save_many(after)  # after the activities: a retry diffs against the old
        self.deps.groups.replace(c, groups)
        self.finish(c, at, len(snapshot))
        _drop_staging(self.staging, c)  # a failure here is cleaned up by the next run
        return len(acts)

    def write_activities(self, run_id: str, acts: list[Any]) -> None:
        if not acts:
            return
        units = [(f"dir_{run_id}", acts)]
        counted = self.counts.counted(units)
        self.counts.record_once(new_activities(self.deps.activities_table, units, counted))
        for batch in self.deps.activities.write(acts):
            self.deps.enqueue_detection(batch.to_message())

    def finish(self, community_id: str, at: datetime, users: int) -> None:
        self.states.update(
            community_id,
            run_id="",
            run_started_at=None,
            edge=0,
            group="",
            cursor="",
            directory_synced_at=at,
            users=users,
            failures=0,
            last_error="",
        )


def sync_installs(deps: DirectorySyncDeps, now: datetime) -> list[InstallSyncResult]:
    """Every active install whose directory is due; one install's failure never stops the rest."""
    states = deps.sync_states
    results: list[InstallSyncResult] = []
    unexpected: Exception | None = None
    try:
        ensure_registered(deps.registration, states, now)
    except WorkplaceError as exc:
        results.append(InstallSyncResult("", "failed", "custom_integration", error=str(exc)))
    sync = DirectorySync(deps)
    for install in deps.installs.all():
        c = install.community_id
        if install.status != "active":
            results.append(InstallSyncResult(c, "skipped", install.status))
            continue
        state = states.get(c)
        if not sync.due(state, now):
            results.append(InstallSyncResult(c, "not_due", install.status))
            continue
        token = deps.tokens.token_for(c, install)
        if not token:
            deps.installs.set_status(
                c, "needs_reauth", "No token is stored for this community: reinstall.", now
            )
            results.append(InstallSyncResult(c, "failed", "needs_reauth", error="no token"))
            continue
        states.update(c, last_attempt_at=now)
        try:
            changes = sync.run(install, token, now)
        except WorkplaceError as exc:
            results.append(_failed(deps, states, install, state, exc, now))
            continue
        except Exception as exc:  # storage or a bug: recorded, then raised after the others
            log.exception("directory sync of community %s failed", quoted(c))
            states.update(c, last_error=f"{type(exc).__name__}: {exc}"[:1000], last_error_at=now)
            results.append(InstallSyncResult(c, "failed", install.status, error=str(exc)))
            unexpected = unexpected or exc
            continue
        log.info("directory of community %s synced: %d changes", quoted(c), changes)
        results.append(InstallSyncResult(c, "synced", "active", changes=changes))
    if unexpected is not None:
        raise unexpected
    return results


def _failed(
    deps: DirectorySyncDeps,
    states: SyncStateStore,
    install: Install,
    state: SyncState,
    exc: WorkplaceError,
    now: datetime,
) -> InstallSyncResult:
    c = install.community_id
    failures = state.failures + 1 if exc.kind in SHUTDOWN_LIKE else 0
    states.update(c, last_error=str(exc)[:1000], last_error_at=now, failures=failures)
    transition = after_failure(
        exc,
        shutdown_like_failures=failures,
        now=now,
        shutdown_date=deps.shutdown_date,
        decommission_after=deps.decommission_after,
    )
    log.warning(
        "directory sync of community %s failed (%s): %s",
        quoted(c),
        exc.kind,
        quoted(exc),
        extra={"community_id": c, "code": exc.code, "status": exc.status},
    )
    if transition is None:
        return InstallSyncResult(c, "failed", install.status, error=str(exc))
    if transition.status in ("uninstalled", "decommissioned") and install.mode == "install":
        deps.secrets().delete(secret_name(c))  # a dead token is no use to anyone
    deps.installs.set_status(c, transition.status, transition.reason, now)
    log.warning(
        "community %s is now %s: %s", quoted(c), transition.status, quoted(transition.reason)
    )
    return InstallSyncResult(c, "failed", transition.status, error=str(exc))


def record_login_methods(users_table: TableClient, activities: list[Any]) -> None:
    """Keep each user's auth method where a login event tells it (a merge: nothing else changes)."""
    for (tenant, user_id), method in directory.login_methods(activities).items():
        if any(c in user_id for c in "/\\#?"):
            continue
        users_table.upsert_entity(
            {"PartitionKey": tenant, "RowKey": user_id, "AuthMethod": method},
            mode=UpdateMode.MERGE,
        )
