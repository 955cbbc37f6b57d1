"""A community's directory snapshot -> user records, and what changed since the last one (pure).

The changes become activities, so detection sees a deactivation or a new admin even when its
webhook never arrived. Their time is the snapshot's (when Vigil saw the directory change).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from shared.models import Activity, UserRecord, short_hash
from shared.workplace.normalize import SOURCE

# The community edges read for a snapshot (workplace-api.md §7), in order, and the fields asked of
# each; then each group's members (`/{group-id}/members`), group by group in id order.
EDGES = ("members", "former_members", "admins", "groups")
FIELDS = {
    "members": "id,name,email",
    "former_members": "id,name,email",
    "admins": "id,email",
    "groups": "id,name",
}
GROUP_MEMBERS = len(EDGES)  # the sync's edge index while it reads the groups' members
GROUP_MEMBER_FIELDS = "id,email"
DONE = GROUP_MEMBERS + 1  # everything read: the snapshot is ready to apply
CATEGORY = "directory"


@dataclass(frozen=True)
class DirectoryEntry:
    """One person as the snapshot saw them, across the three edges."""

    user_id: str
    email: str = ""
    member: bool = False
    former: bool = False
    admin: bool = False
    groups: tuple[str, ...] = ()  # ids of the groups listing them, sorted


# (activity type, the event name Vigil gives it, administrative)
DEACTIVATED = ("account_deactivated", "DIRECTORY_ACCOUNT_DEACTIVATED", False)
ACTIVATED = ("account_activated", "DIRECTORY_ACCOUNT_ACTIVATED", False)
CREATED = ("account_created", "DIRECTORY_ACCOUNT_CREATED", False)
DELETED = ("account_deleted", "DIRECTORY_ACCOUNT_DELETED", False)
ADMIN_ADDED = ("admin_added", "DIRECTORY_ADMIN_ADDED", True)
ADMIN_REMOVED = ("admin_removed", "DIRECTORY_ADMIN_REMOVED", True)


def status_of(entry: DirectoryEntry) -> str:
    # A person on both edges (a race while paging) is taken as active: the next snapshot settles it.
    return "active" if entry.member or not entry.former else "deactivated"


def records(
    tenant_id: str,
    previous: dict[str, UserRecord],
    snapshot: dict[str, DirectoryEntry],
    seen_at: datetime,
) -> list[UserRecord]:
    """The user records after this snapshot (people no longer listed at all become `deleted`)."""
    out: list[UserRecord] = []
    for user_id, entry in snapshot.items():
        before = previous.get(user_id)
        status = status_of(entry)
        if status == "active":
            deactivated_at = None
        elif before is not None and before.status == "active":
            deactivated_at = seen_at
        else:
            deactivated_at = before.deactivated_at if before else None
        out.append(
            UserRecord(
                tenant_id=tenant_id,
                user_id=user_id,
                email=(entry.email or (before.email if before else "")).lower(),
                status=status,  # type: ignore[arg-type]
                is_admin=entry.admin and status == "active",
                auth_method=before.auth_method if before else "",
                first_seen=before.first_seen if before and before.first_seen else seen_at,
                last_seen=seen_at,
                deactivated_at=deactivated_at,
                groups=entry.groups,
            )
        )
    for user_id, before in previous.items():
        # Only people a snapshot saw can leave it (a login can make a record for anyone).
        if user_id not in snapshot and before.first_seen and before.status != "deleted":
            out.append(replace(before, status="deleted", is_admin=False, groups=()))
    return out


def changes(
    previous: dict[str, UserRecord], after: list[UserRecord]
) -> list[tuple[UserRecord, tuple[str, str, bool]]]:
    """Each person whose status or admin flag changed, with what changed (empty on a first sync)."""
    previous = {k: u for k, u in previous.items() if u.first_seen}  # seen by a snapshot
    if not previous:
        return []  # the first snapshot is the baseline, not a wave of changes
    out: list[tuple[UserRecord, tuple[str, str, bool]]] = []
    for user in after:
        before = previous.get(user.user_id)
        if before is None:
            out.append((user, CREATED))
            if user.is_admin:
                out.append((user, ADMIN_ADDED))
            continue
        if before.status != user.status:
            if user.status == "deactivated":
                out.append((user, DEACTIVATED))
            elif user.status == "deleted":
                out.append((user, DELETED))
            elif user.status == "active":
                out.append((user, ACTIVATED))
        if before.is_admin and not user.is_admin:
            out.append((user, ADMIN_REMOVED))
        elif user.is_admin and not before.is_admin:
            out.append((user, ADMIN_ADDED))
    return out


def activities(
    tenant_id: str,
    run_id: str,
    at: datetime,
    found: list[tuple[UserRecord, tuple[str, str, bool]]],
) -> list[Activity]:
    """Synthetic activities for directory changes; rerunning a snapshot gives the same ids."""
    return [
        Activity(
            source=SOURCE,
            tenant_id=tenant_id,
            event_id=short_hash(CATEGORY, tenant_id, run_id, user.user_id, name, length=40),
            time=at,
            type=kind,
            event_name=name,
            category=CATEGORY,
            outcome="success",
            actor_id=user.user_id,
            actor_email=user.email,
            target_id=user.user_id,
            target_email=user.email,
            interactive=False,
            administrative=administrative,
            raw=json.dumps(
                {
                    "source": "directory_snapshot",
                    "snapshot": run_id,
                    "user_id": user.user_id,
                    "status": user.status,
                    "is_admin": user.is_admin,
                    "change": name,
                }
            ),
        )
        for user, (kind, name, administrative) in found
    ]


def login_methods(activities: list[Activity]) -> dict[tuple[str, str], str]:
    """(tenant, user) -> "sso" or "password", from login events that say how (`login_method`)."""
    found: dict[tuple[str, str], str] = {}
    for a in sorted(activities, key=lambda a: a.time):
        if a.type != "login" or '"login_method"' not in a.raw:
            continue
        method = json.loads(a.raw).get("value", {}).get("login_method")
        if method in ("sso", "password"):
            found[(a.tenant_id, a.actor_id)] = method
    return found
