"""Directory sync on Azurite against the simulated tenant: snapshots, diffs, and resuming after
a failure at each step in turn without losing or doubling anything."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from local.sim_workplace import SimulatedWorkplace
from shared import storage as st
from shared.services import Services
from shared.workplace import connect, directory_sync
from shared.workplace.client import RetryPolicy
from shared.workplace.counts import EventCountStore
from shared.workplace.directory import GROUP_MEMBERS
from shared.workplace.directory_sync import GROUP_MEMBERS_EDGE, DirectorySync, sync_installs
from shared.workplace.sync_state import SyncStateStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# The simulated tenant's groups: everyone, the IT admins, the frequent travellers.
EVERYONE, IT, TRAVELLERS = "1564880947340001", "1564880947340002", "1564880947340003"


@pytest.fixture
def wp(wp: SimulatedWorkplace, monkeypatch: pytest.MonkeyPatch) -> SimulatedWorkplace:
    """The shared simulated tenant, paged three members at a time (several pages per edge)."""
    monkeypatch.setattr(directory_sync, "PAGE_LIMIT", 3)
    return wp


def install(svc: Services, wp: SimulatedWorkplace, now: datetime = T0) -> None:
    """The real install flow: our redirect, Workplace's dialog, our callback."""
    svc.workplace.retry = RetryPolicy(sleep=lambda s: None)
    location = connect.start_install(svc.connect_deps, now).headers["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    code = wp.issue_install_code(svc.settings.redirect_uri(), state=state)
    assert (
        connect.complete_install(svc.connect_deps, {"code": code, "state": state}, now).status
        == 200
    )


def activity_rows(svc: Services) -> list[dict[str, Any]]:
    return list(svc.storage.table(st.ACTIVITIES).list_entities())


def change_directory(wp: SimulatedWorkplace) -> None:
    wp.member("adele.vance@contoso.com").active = False  # deactivated
    wp.member("alex.wilber@contoso.com").admin = True  # promoted
    wp.member("diego.siciliani@contoso.com").admin = False  # demoted
    wp.member("pradeep.gupta@contoso.com").active = True  # reactivated
    wp.add_member("New Hire", "new.hire@contoso.com", member_id="100064094369999")


def synced_groups(svc: Services, wp: SimulatedWorkplace) -> dict[str, tuple[str, ...]]:
    return {u.email: u.groups for u in svc.users.for_tenant(wp.community_id)}


def tenant_groups(wp: SimulatedWorkplace) -> dict[str, tuple[str, ...]]:
    """What the simulated tenant says: each person's groups (none once deactivated)."""
    return {
        m.email: tuple(sorted(g.id for g in wp.groups if m.active and m.id in g.member_ids))
        for m in wp.members
    }


EXPECTED = {
    ("DIRECTORY_ACCOUNT_DEACTIVATED", "adele.vance@contoso.com"),
    ("DIRECTORY_ADMIN_ADDED", "alex.wilber@contoso.com"),
    ("DIRECTORY_ADMIN_REMOVED", "diego.siciliani@contoso.com"),
    ("DIRECTORY_ACCOUNT_ACTIVATED", "pradeep.gupta@contoso.com"),
    ("DIRECTORY_ACCOUNT_CREATED", "new.hire@contoso.com"),
}


def test_the_first_snapshot_is_a_baseline_and_the_next_one_yields_activities(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert (result.outcome, result.changes) == ("synced", 0)
    users = {u.email: u for u in svc.users.for_tenant(wp.community_id)}
    assert len(users) == len(wp.members)
    assert users["megan.bowen@contoso.com"].is_admin
    assert users["pradeep.gupta@contoso.com"].status == "deactivated"
    assert users["adele.vance@contoso.com"].first_seen == T0
    assert activity_rows(svc) == []
    assert {r.endpoint for r in wp.requests} >= {
        "/community/members",
        "/community/former_members",
        "/community/admins",
    }

    change_directory(wp)
    assert (
        sync_installs(svc.directory_sync_deps, T0 + 30 * timedelta(minutes=1))[0].outcome
        == "not_due"
    )
    (result,) = sync_installs(svc.directory_sync_deps, T0 + HOUR)
    assert result.changes == len(EXPECTED)
    rows = activity_rows(svc)
    assert {(r["event_name"], r["actor_email"]) for r in rows} == EXPECTED
    assert all(r["time"] == T0 + HOUR for r in rows)  # the snapshot's time
    users = {u.email: u for u in svc.users.for_tenant(wp.community_id)}
    assert users["adele.vance@contoso.com"].status == "deactivated"
    assert users["adele.vance@contoso.com"].deactivated_at == T0 + HOUR
    assert users["alex.wilber@contoso.com"].is_admin
    assert not users["diego.siciliani@contoso.com"].is_admin
    assert users["new.hire@contoso.com"].first_seen == T0 + HOUR
    counts = EventCountStore(svc.storage.table(st.EVENT_COUNTS)).totals(wp.community_id)
    assert counts == Counter({name: 1 for name, _ in EXPECTED})
    queue = svc.storage.queue(svc.settings.activity_queue)
    assert int(queue.get_queue_properties().approximate_message_count or 0) == 1
    assert list(svc.storage.table(st.DIRECTORY_SNAPSHOTS).list_entities()) == []


class Boom(RuntimeError):
    pass


STORAGE_STEPS = ["stage", "advance", "write_activities", "finish"]
WORKPLACE_STEPS = [
    "/community/members",
    "/community/former_members",
    "/community/admins",
    "/community/groups",
    f"/{EVERYONE}/members",
]


@pytest.mark.parametrize("step", [*STORAGE_STEPS, "save_many", "drop_staging", *WORKPLACE_STEPS])
def test_a_sync_failing_at_any_step_resumes_without_losing_or_doubling(
    wp: SimulatedWorkplace, svc: Services, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    install(svc, wp)
    sync_installs(svc.directory_sync_deps, T0)
    change_directory(wp)
    for i in range(7):  # more pages
        wp.add_member(f"Temp {i}", f"temp{i}@contoso.com", member_id=f"1000640943700{i:02d}")
    expected = EXPECTED | {("DIRECTORY_ACCOUNT_CREATED", f"temp{i}@contoso.com") for i in range(7)}
    calls = Counter[str]()

    def fail_once(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            # The second call where there is one: some progress was saved before (and the
            # first clean-up is the one before a run, the second the one after it).
            if calls[name] == (2 if name in ("stage", "advance", "drop_staging") else 1):
                raise Boom(f"injected failure in {name}")
            return original(*args, **kwargs)

        return wrapper

    if step in STORAGE_STEPS:
        monkeypatch.setattr(DirectorySync, step, fail_once(step, getattr(DirectorySync, step)))
    elif step == "save_many":
        monkeypatch.setattr(svc.users, "save_many", fail_once(step, svc.users.save_many))
    elif step == "drop_staging":
        monkeypatch.setattr(
            directory_sync, "_drop_staging", fail_once(step, directory_sync._drop_staging)
        )
    else:
        wp.fail(step, status=503, times=10)  # longer than the client's retries

    if step in WORKPLACE_STEPS:
        (failed,) = sync_installs(svc.directory_sync_deps, T0 + HOUR)
        assert failed.outcome == "failed" and "503" in failed.error
    else:
        with pytest.raises(Boom):
            sync_installs(svc.directory_sync_deps, T0 + HOUR)
    monkeypatch.undo()
    monkeypatch.setattr(directory_sync, "PAGE_LIMIT", 3)
    wp.faults.clear()
    state = SyncStateStore(svc.storage.table(st.WORKPLACE_SYNC)).get(wp.community_id)
    assert state.last_error  # recorded for the operator
    # The next due run: it resumes the interrupted snapshot (or, when only the clean-up of a
    # finished one failed, takes a new one and cleans up).
    (result,) = sync_installs(svc.directory_sync_deps, T0 + 2 * HOUR)
    assert result.outcome == "synced"
    rows = activity_rows(svc)
    assert {(r["event_name"], r["actor_email"]) for r in rows} == expected
    assert len(rows) == len(expected)
    assert all(r["time"] == T0 + HOUR for r in rows)  # the interrupted snapshot's time
    counts = EventCountStore(svc.storage.table(st.EVENT_COUNTS)).totals(wp.community_id)
    assert sum(counts.values()) == len(expected)
    users = {u.email: u for u in svc.users.for_tenant(wp.community_id)}
    assert users["adele.vance@contoso.com"].status == "deactivated"
    assert users["alex.wilber@contoso.com"].is_admin
    assert len(users) == len(wp.members)
    assert synced_groups(svc, wp) == tenant_groups(wp)
    assert svc.groups.names(wp.community_id) == {g.id: g.name for g in wp.groups}
    assert list(svc.storage.table(st.DIRECTORY_SNAPSHOTS).list_entities()) == []
    state = SyncStateStore(svc.storage.table(st.WORKPLACE_SYNC)).get(wp.community_id)
    assert (state.run_id, state.last_error) == ("", "")
    assert state.directory_synced_at == (T0 + 2 * HOUR if step == "drop_staging" else T0 + HOUR)


def test_auth_method_comes_from_login_events_and_survives_the_snapshots(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    from shared.workplace.inbox_drain import drain_inbox
    from tests.samples import envelope, value

    install(svc, wp)
    megan = wp.member("megan.bowen@contoso.com")
    login = value("LOGIN", actor=megan.id, email=megan.email, login_method="sso")
    svc.inbox.put("workplace", envelope(("login", login)), T0)
    drain_inbox(svc.inbox_drain_deps, T0)
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert result.changes == 0  # a record made by a login does not spoil the baseline
    change_directory(wp)
    (result,) = sync_installs(svc.directory_sync_deps, T0 + HOUR)
    assert result.changes == len(EXPECTED)
    user = svc.users.get(wp.community_id, megan.id)
    assert user is not None and (user.auth_method, user.first_seen) == ("sso", T0)
    others = [u for u in svc.users.for_tenant(wp.community_id) if u.user_id != megan.id]
    assert {u.auth_method for u in others} == {""}  # unknown where no login said


def test_groups_and_their_members_are_synced_page_by_page_onto_the_user_records(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    for i in range(4):  # seven groups: three pages of three
        wp.add_group(f"Project {i}", ["adele.vance@contoso.com"], group_id=f"15648809473401{i:02d}")
    install(svc, wp)
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert result.outcome == "synced"
    groups = synced_groups(svc, wp)
    assert groups == tenant_groups(wp)
    assert groups["megan.bowen@contoso.com"] == (EVERYONE, IT)
    assert groups["pradeep.gupta@contoso.com"] == ()  # deactivated: in no group's list
    assert svc.groups.names(wp.community_id) == {g.id: g.name for g in wp.groups}
    assert len(wp.requests_to("/community/groups")) == 3
    assert len(wp.requests_to(f"/{EVERYONE}/members")) == 3  # seven active members
    assert all(r.query["fields"] == "id,email" for r in wp.requests_to(f"/{IT}/members"))

    # Joins, leaves, a rename and a deleted group: the next snapshot has them all, and group
    # changes alone are not activities.
    wp.group(TRAVELLERS).member_ids.remove(wp.member("alex.wilber@contoso.com").id)
    wp.group(TRAVELLERS).member_ids.append(wp.member("lynne.robbins@contoso.com").id)
    wp.group(IT).name = "IT Operations"
    wp.groups.remove(wp.group("Project 0"))
    (result,) = sync_installs(svc.directory_sync_deps, T0 + HOUR)
    assert (result.outcome, result.changes) == ("synced", 0)
    assert synced_groups(svc, wp) == tenant_groups(wp)
    assert synced_groups(svc, wp)["alex.wilber@contoso.com"] == (EVERYONE,)
    names = svc.groups.names(wp.community_id)
    assert names[IT] == "IT Operations" and "1564880947340100" not in names
    assert activity_rows(svc) == []


def test_a_sync_crashing_among_the_group_pages_resumes_where_it_stood(
    wp: SimulatedWorkplace, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(svc, wp)
    stage = DirectorySync.stage
    staged_memberships = Counter[str]()

    def crash_on_the_second_members_page(self: DirectorySync, state: Any, read: Any) -> None:
        if read.edge == GROUP_MEMBERS_EDGE:
            staged_memberships[read.group] += 1
            if staged_memberships[read.group] == 2:
                raise Boom("worker died while staging a page of group members")
        stage(self, state, read)

    monkeypatch.setattr(DirectorySync, "stage", crash_on_the_second_members_page)
    with pytest.raises(Boom):
        sync_installs(svc.directory_sync_deps, T0)
    monkeypatch.setattr(DirectorySync, "stage", stage)
    states = SyncStateStore(svc.storage.table(st.WORKPLACE_SYNC))
    state = states.get(wp.community_id)
    assert (state.edge, state.group) == (GROUP_MEMBERS, EVERYONE) and state.cursor
    assert svc.users.for_tenant(wp.community_id) == []  # nothing applied yet

    wp.clear_requests()
    (result,) = sync_installs(svc.directory_sync_deps, T0 + HOUR)
    assert result.outcome == "synced"
    assert wp.requests_to("/community/members") == []  # resumed, not restarted
    assert wp.requests_to("/community/groups") == []
    assert len(wp.requests_to(f"/{EVERYONE}/members")) == 2  # the page that crashed, and the last
    assert synced_groups(svc, wp) == tenant_groups(wp)
    assert svc.groups.names(wp.community_id) == {g.id: g.name for g in wp.groups}
    users = {u.email: u for u in svc.users.for_tenant(wp.community_id)}
    assert all(u.first_seen == T0 for u in users.values())  # the interrupted snapshot's time
    state = states.get(wp.community_id)
    assert (state.run_id, state.edge, state.group, state.cursor) == ("", 0, "", "")


def test_groups_the_install_may_not_read_leave_everyone_in_no_group(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    wp.app_permissions = tuple(p for p in wp.app_permissions if p != "READ_GROUP_CONTENT")
    install(svc, wp)
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert result.outcome == "synced"
    assert set(synced_groups(svc, wp).values()) == {()}
    assert svc.groups.names(wp.community_id) == {}
    assert len(svc.users.for_tenant(wp.community_id)) == len(wp.members)


def test_a_group_deleted_while_the_snapshot_is_read_is_skipped(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    wp.fail(f"/{IT}/members", status=400, code=100, subcode=33)  # "does not exist"
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert result.outcome == "synced"
    groups = synced_groups(svc, wp)
    assert groups["megan.bowen@contoso.com"] == (EVERYONE,)
    assert groups["alex.wilber@contoso.com"] == (EVERYONE, TRAVELLERS)
    state = SyncStateStore(svc.storage.table(st.WORKPLACE_SYNC)).get(wp.community_id)
    assert (state.run_id, state.last_error) == ("", "")
