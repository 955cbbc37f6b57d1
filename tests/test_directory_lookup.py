"""DirectoryLookup's caches: Workplace records until the tenant's directory sync completes again,
and bounded (least recently used out first)."""

from __future__ import annotations

from datetime import timedelta

from shared import storage as st
from shared.detection.directory_lookup import DirectoryLookup
from shared.models import UserRecord
from shared.services import Services
from shared.workplace.sync_state import SyncStateStore
from tests.detect_samples import T0, TENANT


def test_records_are_read_again_when_the_directory_sync_completes(svc: Services) -> None:
    users, lookup = svc.users, svc.directory
    users.save_many([UserRecord(TENANT, "7", "u7@contoso.com")])
    states = SyncStateStore(svc.storage.table(st.WORKPLACE_SYNC))
    states.update(TENANT, directory_synced_at=T0)
    reads: list[str] = []

    def count(request: object) -> None:
        http = request.http_request  # type: ignore[attr-defined]
        if http.method == "GET" and st.USERS in http.url:
            reads.append(http.url)

    st.REQUEST_HOOKS.append(count)
    try:
        assert lookup.lookup_many(TENANT, {"7": ""}, entra=False)["7"].workplace_status == "active"
        deactivated = UserRecord(
            TENANT, "7", "u7@contoso.com", status="deactivated", deactivated_at=T0
        )
        users.save_many([deactivated])  # written by a directory sync still in progress
        again = lookup.lookup_many(TENANT, {"7": ""}, entra=False)["7"]
        assert again.workplace_status == "active" and len(reads) == 1  # from the cache
        states.update(TENANT, directory_synced_at=T0 + timedelta(hours=1))  # that sync completes
        now = lookup.lookup_many(TENANT, {"7": ""}, entra=False)["7"]
        assert now.workplace_status == "deactivated" and len(reads) == 2
    finally:
        st.REQUEST_HOOKS.remove(count)


def test_the_caches_are_bounded() -> None:
    asked: list[list[str]] = []

    def records(tenant: str, ids: list[str]) -> dict[str, UserRecord]:
        asked.append(sorted(ids))
        return {i: UserRecord(tenant, i, f"{i}@contoso.com") for i in ids}

    def entra(upns: list[str]) -> dict[str, dict[str, object] | None]:
        return {u: {"accountEnabled": True} for u in upns}

    lookup = DirectoryLookup(
        lambda t, u: None,
        workplace_users=records,
        entra_users=entra,
        generation=lambda t: "same",
        cache_size=2,
    )
    lookup.lookup_many("t", {"1": "", "2": "", "3": ""})
    assert len(lookup._records) == 2 and len(lookup._cache) == 2
    lookup.lookup_many("t", {"3": ""})
    assert asked[-1] == ["1", "2", "3"]  # 3 was kept: nothing asked
    lookup.lookup_many("t", {"1": ""})
    assert asked[-1] == ["1"]  # 1 had gone out first
