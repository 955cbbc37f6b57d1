"""The Entra directory from Graph's `/users` delta query, on the simulated Graph and Azurite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local.sim_graph import SimGroup, SimulatedGraph, SimUser
from shared import storage as st
from shared.entra import users_delta
from shared.entra.groups_delta import sync_groups
from shared.entra.users_delta import DirectoryStateStore, sync_users
from shared.models import UserRecord
from shared.services import Services
from tests.conftest import use_simulated_graph


@pytest.fixture
def graph(vigil_env: dict[str, str]) -> Iterator[SimulatedGraph]:
    with SimulatedGraph() as sim:
        for i in range(5):
            sim.add_user(
                SimUser(str(uuid.UUID(int=i + 1)), f"user{i}@contoso.example", f"u{i}@c.example")
            )
        yield sim


@pytest.fixture
def entra(graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("VIGIL_SOURCES", "entra")
    return use_simulated_graph(monkeypatch, graph)


def delta_requests(graph: SimulatedGraph) -> list[dict[str, str]]:
    return [r.query for r in graph.requests if r.path == "/v1.0/users/delta"]


def test_a_full_round_then_only_changes_land_in_the_user_records(
    graph: SimulatedGraph, entra: Services
) -> None:
    graph.users_delta.page_size = 2
    tenant = graph.tenant_id
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    state = sync_users(entra.entra_directory_deps, t0)
    assert state.state == "current" and state.synced_at == t0
    assert len(delta_requests(graph)) == 3  # 5 users, 2 a page
    assert "accountEnabled" in delta_requests(graph)[0]["$select"]
    records = {u.user_id: u for u in entra.users.for_tenant(tenant)}
    assert {u.email for u in records.values()} == {f"user{i}@contoso.example" for i in range(5)}
    assert {u.status for u in records.values()} == {"active"}

    ids = sorted(graph.users)
    graph.users[ids[0]].account_enabled = False
    del graph.users[ids[1]]
    graph.users[ids[2]].user_principal_name = "renamed@contoso.example"
    graph.users[ids[3]].display_name = "Renamed"  # a change Vigil does not keep
    graph.clear_requests()
    t1 = t0 + timedelta(minutes=5)
    state = sync_users(entra.entra_directory_deps, t1)
    assert state.state == "current"
    asked = delta_requests(graph)  # four changed users, two a page
    assert len(asked) == 2 and "$deltatoken" in asked[0] and "$skiptoken" in asked[1]
    after = {u.user_id: u for u in entra.users.for_tenant(tenant)}
    assert (after[ids[0]].status, after[ids[0]].deactivated_at) == ("deactivated", t1)
    assert after[ids[0]].email == "user0@contoso.example"  # absent from the change: kept
    assert (after[ids[1]].status, after[ids[1]].deactivated_at) == ("deleted", t1)
    assert (after[ids[2]].status, after[ids[2]].email) == ("active", "renamed@contoso.example")
    assert after[ids[3]] == records[ids[3]] and after[ids[4]] == records[ids[4]]

    # Nothing changed: one request, nothing written differently; re-enabled: active again.
    t2 = t1 + timedelta(minutes=5)
    assert sync_users(entra.entra_directory_deps, t2).changes == state.changes
    assert {u.user_id: u for u in entra.users.for_tenant(tenant)} == after
    graph.users[ids[0]].account_enabled = True
    sync_users(entra.entra_directory_deps, t2 + timedelta(minutes=5))
    back = entra.users.get(tenant, ids[0])
    assert back is not None and (back.status, back.deactivated_at) == ("active", None)


def test_a_round_cut_short_resumes_at_its_saved_page_and_rereading_changes_nothing(
    graph: SimulatedGraph, entra: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph.users_delta.page_size = 2
    monkeypatch.setattr(users_delta, "MAX_PAGES_PER_RUN", 1)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    first = sync_users(entra.entra_directory_deps, t0)
    assert first.state == "syncing" and first.synced_at is None
    assert len(entra.users.for_tenant(graph.tenant_id)) == 2
    store = DirectoryStateStore(entra.storage.table(st.ENTRA_SYNC))
    saved = store.get(graph.tenant_id)
    assert "$skiptoken" in saved.link
    second = sync_users(entra.entra_directory_deps, t0 + timedelta(minutes=1))
    assert "$skiptoken" in delta_requests(graph)[-1]
    # A crash after the page was applied but before its link was saved reads it again.
    store.save(saved)
    again = sync_users(entra.entra_directory_deps, t0 + timedelta(minutes=2))
    assert again.link == second.link
    assert len(entra.users.for_tenant(graph.tenant_id)) == 4
    last = sync_users(entra.entra_directory_deps, t0 + timedelta(minutes=3))
    assert last.state == "current" and "$deltatoken" in last.link
    assert len(entra.users.for_tenant(graph.tenant_id)) == 5
    assert last.rounds == 1


def test_an_expired_delta_token_starts_a_full_round_again(
    graph: SimulatedGraph, entra: Services
) -> None:
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    sync_users(entra.entra_directory_deps, t0)
    graph.users_delta.expire_tokens()
    ids = sorted(graph.users)
    graph.users[ids[0]].account_enabled = False
    state = sync_users(entra.entra_directory_deps, t0 + timedelta(days=8))
    assert state.state == "current" and state.rounds == 2
    record = entra.users.get(graph.tenant_id, ids[0])
    assert record is not None and record.status == "deactivated"
    statuses = [r.status for r in graph.requests if r.path == "/v1.0/users/delta"]
    assert statuses == [200, 400, 200]


def test_users_deleted_while_no_token_was_valid_are_deleted_when_the_full_round_ends(
    graph: SimulatedGraph, entra: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph.users_delta.page_size = 2
    tenant, ids = graph.tenant_id, sorted(graph.users)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    sync_users(entra.entra_directory_deps, t0)
    # Records no users round wrote: a Workplace community's user, and a member the groups
    # delta met first, in the Entra tenant's own partition.
    workplace = UserRecord("1000123", ids[3], "w@contoso.example")
    member = UserRecord(tenant, str(uuid.UUID(int=99)), "")
    entra.users.save_many([workplace])
    entra.users.save_many([member])
    graph.users_delta.expire_tokens()  # a week without a run, meanwhile:
    del graph.users[ids[3]]  # deleted: the new round will not list them
    graph.users[ids[0]].account_enabled = False

    monkeypatch.setattr(users_delta, "MAX_PAGES_PER_RUN", 1)
    graph.users_delta.page_size = 1  # the new round: four pages, one a run
    t1 = t0 + timedelta(days=8)
    runs = [sync_users(entra.entra_directory_deps, t1 + timedelta(minutes=m)) for m in range(4)]
    assert [(r.rounds, r.full, r.state) for r in runs] == [(1, False, "current")] + [
        (2, True, "syncing")
    ] * 3  # the expired token, then the new round's first three pages
    midway = {u.user_id: u for u in entra.users.for_tenant(tenant)}
    assert (midway[ids[3]].status, midway[ids[4]].listed_in_round) == ("active", 1)  # not judged
    store = DirectoryStateStore(entra.storage.table(st.ENTRA_SYNC))
    before_last = store.get(tenant)
    t_end = t1 + timedelta(minutes=4)
    last = sync_users(entra.entra_directory_deps, t_end)
    assert (last.rounds, last.full, last.state) == (2, False, "current")

    after = {u.user_id: u for u in entra.users.for_tenant(tenant)}
    assert (after[ids[3]].status, after[ids[3]].deactivated_at) == ("deleted", t_end)
    assert after[ids[0]].status == "deactivated"
    assert {after[i].status for i in (ids[1], ids[2], ids[4])} == {"active"}
    assert after[member.user_id] == member  # no round listed it: left alone
    assert entra.users.get("1000123", ids[3]) == workplace
    # The round's end done again (a crash before its link was saved) changes nothing.
    store.save(before_last)
    sync_users(entra.entra_directory_deps, t_end + timedelta(minutes=1))
    assert {u.user_id: u for u in entra.users.for_tenant(tenant)} == after


def test_a_refused_delta_query_is_a_clear_state_and_not_asked_again_at_once(
    graph: SimulatedGraph, entra: Services
) -> None:
    graph.inject_fault("GET", "/v1.0/users/delta", 403)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    state = sync_users(entra.entra_directory_deps, t0)
    assert state.state == "forbidden" and "User.Read.All" in state.reason
    sync_users(entra.entra_directory_deps, t0 + timedelta(minutes=5))
    assert len(delta_requests(graph)) == 1
    assert sync_users(entra.entra_directory_deps, t0 + timedelta(minutes=16)).state == "current"
    assert len(entra.users.for_tenant(graph.tenant_id)) == 5


def test_groups_and_their_members_come_from_the_groups_delta(
    graph: SimulatedGraph, entra: Services
) -> None:
    tenant, ids = graph.tenant_id, sorted(graph.users)
    finance, sales = str(uuid.UUID(int=101)), str(uuid.UUID(int=102))
    graph.users_delta.groups[finance] = SimGroup("Finance", {ids[0], ids[1]})
    graph.users_delta.groups[sales] = SimGroup("Sales", {ids[1], ids[2]})
    graph.users_delta.page_size = 1
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    sync_users(entra.entra_directory_deps, t0)
    state = sync_groups(entra.entra_directory_deps, t0)
    assert state.state == "current" and state.kind == "groups"

    def groups_of() -> dict[str, tuple[str, ...]]:
        return {u.user_id: u.groups for u in entra.users.for_tenant(tenant) if u.groups}

    assert groups_of() == {ids[0]: (finance,), ids[1]: (finance, sales), ids[2]: (sales,)}
    assert entra.groups.names(tenant) == {finance: "Finance", sales: "Sales"}
    seen = entra.directory.lookup_many(tenant, {ids[1]: ""}, entra=False)[ids[1]]
    assert {"finance", "sales"} <= seen.groups  # what a policy's group scope matches

    graph.users_delta.groups[finance].members = {ids[1], ids[3]}  # ids[0] out, ids[3] in
    graph.users_delta.groups[finance].display_name = "Finance EMEA"
    del graph.users_delta.groups[sales]
    graph.clear_requests()
    sync_groups(entra.entra_directory_deps, t0 + timedelta(minutes=5))
    asked = [r.query for r in graph.requests if r.path == "/v1.0/groups/delta"]
    assert "$deltatoken" in asked[0]
    assert groups_of() == {ids[1]: (finance,), ids[3]: (finance,)}
    assert entra.groups.names(tenant) == {finance: "Finance EMEA"}
    users = {u.user_id: u for u in entra.users.for_tenant(tenant)}
    assert users[ids[0]].email == "user0@contoso.example"  # the rest of the record kept


def test_groups_refused_leave_the_users_synced(graph: SimulatedGraph, entra: Services) -> None:
    graph.inject_fault("GET", "/v1.0/groups/delta", 403)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert sync_users(entra.entra_directory_deps, t0).state == "current"
    state = sync_groups(entra.entra_directory_deps, t0)
    assert state.state == "forbidden" and "GroupMember.Read.All" in state.reason
    assert len(entra.users.for_tenant(graph.tenant_id)) == 5
    assert DirectoryStateStore(entra.storage.table(st.ENTRA_SYNC)).get(graph.tenant_id).state == (
        "current"
    )
