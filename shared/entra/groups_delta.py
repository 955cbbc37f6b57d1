"""The Entra directory's groups: Graph's `/groups/delta` with `members@delta`.

Read like the users (shared/entra/users_delta.py `run_delta`: a full round, then only changes,
the link saved after each page). A group's name goes to the groups table (what a policy names a
group by); its members to the user records' `groups`, as Workplace's directory sync keeps them: a
member added or removed (`members@delta`, `@removed`) adds or removes the group on that user's
record, and a deleted group (`@removed` on the group) is taken off every record and the table.
Members that are not users (devices, service principals, nested groups) are not followed. Doing a
page twice changes nothing. Permission: GroupMember.Read.All (application).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.entra.users_delta import DirectoryDeps, DirectoryState, run_delta
from shared.models import UserRecord
from shared.users import directory_id

log = logging.getLogger(__name__)

SELECT = "displayName,members"
USER_TYPE = "#microsoft.graph.user"


def sync_groups(deps: DirectoryDeps, now: datetime, graph: Any = None) -> DirectoryState:
    """One run of the tenant's groups delta (after its users')."""
    return run_delta(deps, now, "groups", SELECT, apply_page, "GroupMember.Read.All", graph)


def _members(entry: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The user members the entry adds and removes."""
    added: set[str] = set()
    removed: set[str] = set()
    for m in entry.get("members@delta") or ():
        if not isinstance(m, dict) or m.get("@odata.type", USER_TYPE) != USER_TYPE:
            continue
        uid = directory_id(m.get("id"))
        if uid:
            (removed if "@removed" in m else added).add(uid)
    return added, removed


def apply_page(
    deps: DirectoryDeps, s: DirectoryState, entries: list[Any], now: datetime
) -> tuple[int, int]:
    """Merge one page of groups into the groups table and the user records."""
    tenant_id = s.tenant_id
    usable = [e for e in entries if isinstance(e, dict) and directory_id(e.get("id"))]
    skipped = len(entries) - len(usable)
    if skipped:
        log.warning("entra directory: %d group entries without a usable id skipped", skipped)
    changes: dict[str, tuple[set[str], set[str]]] = {}  # user -> groups added, removed
    deleted: set[str] = set()
    for e in usable:
        gid = str(e["id"])
        if "@removed" in e:
            deleted.add(gid)
            deps.groups.delete(tenant_id, gid)
            continue
        deleted.discard(gid)
        name = e.get("displayName")
        if isinstance(name, str):
            deps.groups.save(tenant_id, gid, name)
        added, removed = _members(e)
        for uid in added:
            changes.setdefault(uid, (set(), set()))[0].add(gid)
            changes[uid][1].discard(gid)
        for uid in removed:
            changes.setdefault(uid, (set(), set()))[1].add(gid)
            changes[uid][0].discard(gid)
    records = deps.users.get_many(tenant_id, list(changes)) if changes else {}
    if deleted:  # every record that holds a deleted group
        records.update(
            {u.user_id: u for u in deps.users.for_tenant(tenant_id) if deleted & set(u.groups)}
        )
    after: list[UserRecord] = []
    for uid in set(changes) | set(records):
        before = records.get(uid) or UserRecord(tenant_id, uid, "")
        plus, minus = changes.get(uid, (set(), set()))
        groups = tuple(sorted((set(before.groups) | plus) - minus - deleted))
        if groups != before.groups or uid not in records:
            after.append(replace(before, groups=groups))
    if after:
        deps.users.save_many(after)
    return len(usable), skipped
