"""Finding an alert (GET/PATCH /api/alerts/{id}, `activities?alert=`) or a governance action
(approve, retry, revert) by its id alone: two point reads through the id index on Azurite,
however many are stored; records stored before the index are found too; a crash between the
index row and the record loses nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from shared import analyst_api as api
from shared import retention
from shared import storage as st
from shared.access import READER, RESPONDER, Principal
from shared.alerts import alert_row_key, to_entity
from shared.governance.records import ActionFilter
from shared.models import Alert
from shared.services import Services
from tests.conftest import KEY
from tests.detect_samples import TENANT
from tests.test_alerts_api import alert
from tests.test_governance_guardrails import http
from tests.test_governance_log import records
from tests.test_retention import NOW

ANALYST = Principal("user", "ana@contoso.com", "ana-id", frozenset({RESPONDER}))


@pytest.fixture
def requests_made() -> Iterator[list[str]]:
    seen: list[str] = []

    def hook(request: Any) -> None:
        made = f"{request.http_request.method} {request.http_request.url}"
        if not made.endswith("/Tables"):  # a table created on first use: not part of a lookup
            seen.append(made)

    st.REQUEST_HOOKS.append(hook)
    yield seen
    st.REQUEST_HOOKS.remove(hook)


def point_read(request: str) -> bool:
    return request.startswith("GET ") and "RowKey=" in request and "$filter" not in request


def store_many(svc: Services, count: int) -> list[Alert]:
    made = [alert(n, tenant=("504942443827307", "700000000000001")[n % 2]) for n in range(count)]
    for a in made:
        svc.alerts.merge(a)
    return made


def legacy(svc: Services, a: Alert) -> None:
    """An alert as stored before the id index existed: its row only."""
    svc.storage.table(st.ALERTS).upsert_entity(to_entity(a))


def backfill(svc: Services) -> None:
    deleted = retention.run(svc.storage, svc.inbox, [], 0, 0, NOW)
    assert deleted.finished and svc.alerts.index.complete() and svc.actions.index.complete()


def test_a_lookup_is_two_point_reads_however_many_alerts(
    svc: Services, requests_made: list[str]
) -> None:
    made = store_many(svc, 60)
    for a in (made[0], made[31], made[-1]):
        requests_made.clear()
        entity = svc.triage.find(a.id)
        assert entity is not None and entity["AlertId"] == a.id
        assert entity["PartitionKey"] == a.tenant_id and entity["RowKey"] == alert_row_key(a)
        assert len(requests_made) == 2 and all(map(point_read, requests_made)), requests_made


def test_an_unknown_id_is_a_404_without_a_scan_once_the_index_is_complete(
    svc: Services, requests_made: list[str]
) -> None:
    store_many(svc, 10)
    requests_made.clear()
    assert svc.triage.find("f" * 32) is None
    assert any("$filter" in r for r in requests_made)  # not yet complete: earlier alerts looked for
    backfill(svc)
    requests_made.clear()
    reply = api.get_alert(svc.analyst_deps, "f" * 32)
    assert reply.status == 404 and json.loads(reply.body)["error"]["message"].startswith("id:")
    assert len(requests_made) == 1 and point_read(requests_made[0]), requests_made


def test_an_alert_stored_before_the_index_is_found_and_indexed(
    svc: Services, requests_made: list[str]
) -> None:
    old, older = alert(1), alert(2)
    legacy(svc, old)
    legacy(svc, older)
    store_many(svc, 5)
    requests_made.clear()
    entity = svc.triage.find(old.id)  # the scan this once, and its index row written
    assert entity is not None and entity["RowKey"] == alert_row_key(old)
    requests_made.clear()
    assert svc.triage.find(old.id) is not None
    assert len(requests_made) == 2 and all(map(point_read, requests_made)), requests_made
    backfill(svc)  # every earlier alert gets its row: `older` too
    requests_made.clear()
    found = svc.triage.find(older.id)
    assert found is not None and found["RowKey"] == alert_row_key(older)
    assert len(requests_made) == 2 and all(map(point_read, requests_made)), requests_made
    assert svc.storage.table(st.ID_INDEX).get_entity(older.id, "alert")["Tenant"] == TENANT


def test_a_crash_between_the_index_row_and_the_alert_loses_nothing(svc: Services) -> None:
    backfill(svc)
    a = alert(3)
    # What a crash right after the index row leaves: the row, and no alert.
    svc.alerts.index.record(a.id, a.tenant_id, alert_row_key(a))
    assert api.get_alert(svc.analyst_deps, a.id).status == 404
    assert svc.alerts.merge(a) == "created"  # the redelivered finding writes both again
    reply = api.get_alert(svc.analyst_deps, a.id)
    assert reply.status == 200 and json.loads(reply.body)["id"] == a.id


def test_patch_finds_the_alert_through_the_index(svc: Services) -> None:
    backfill(svc)
    a = store_many(svc, 4)[2]
    reply = api.patch_alert(svc.analyst_deps, a.id, b'{"status": "inProgress"}', "", ANALYST, NOW)
    assert reply.status == 200 and json.loads(reply.body)["status"] == "inProgress"
    stored = svc.alerts.get(a.tenant_id, alert_row_key(a))
    assert stored is not None and stored.status == "inProgress"


@pytest.mark.parametrize(
    ("alert_id", "status"),
    [
        ("a/b", 400),
        ("a#b", 400),
        ("a?b", 400),
        ("x" * 300, 400),
        ("a\x00b", 400),
        ("a000' or AlertId ne '", 404),  # quotes are data in a key, never OData
        ("a000%27", 404),
        ("other deployment's id", 404),
    ],
)
def test_a_malformed_or_foreign_id_is_a_4xx_naming_id(
    svc: Services, alert_id: str, status: int
) -> None:
    store_many(svc, 3)
    deps = svc.analyst_deps
    got = api.guarded(deps, KEY, READER, lambda _: api.get_alert(deps, alert_id))
    patched = api.guarded(
        deps,
        KEY,
        RESPONDER,
        lambda who: api.patch_alert(deps, alert_id, b'{"status": "new"}', "", who, NOW),
    )
    for reply in (got, patched):
        assert reply.status == status, reply.body
        assert json.loads(reply.body)["error"]["message"].startswith("id:")


def test_an_index_row_naming_another_alert_finds_nothing(svc: Services) -> None:
    a, b = alert(5), alert(6)
    svc.alerts.merge(a)
    svc.alerts.merge(b)
    svc.alerts.index.record(a.id, b.tenant_id, alert_row_key(b))  # a row gone wrong
    assert svc.triage.find(a.id) is None
    assert svc.triage.find(b.id) is not None


def test_retention_deletes_an_expired_alert_and_its_index_row(svc: Services) -> None:
    from tests.test_retention import DAY, alert_at, install

    install(svc, alert(0).tenant_id)
    expired, kept = alert_at("old", NOW - 400 * DAY), alert_at("recent", NOW - 30 * DAY)
    svc.alerts.save(expired)
    svc.alerts.save(kept)
    deleted = retention.run(svc.storage, svc.inbox, [expired.tenant_id], 180, 365, NOW)
    assert deleted.alerts == 1
    ids = {e["PartitionKey"] for e in svc.storage.table(st.ID_INDEX).list_entities()}
    assert ids == {"recent"}
    assert svc.triage.find("old") is None and svc.triage.find("recent") is not None


def test_a_grown_alert_keeps_its_index_row(svc: Services) -> None:
    a = alert(7)
    svc.alerts.merge(a)
    later = replace(a, evidence=replace(a.evidence, activity_ids=("e2",)))
    assert svc.alerts.merge(later) == "merged"
    entity = svc.triage.find(a.id)
    assert entity is not None and json.loads(entity["ActivityIds"]) == ["e1", "e2"]


def test_a_governance_action_is_found_in_two_point_reads(
    svc: Services, requests_made: list[str]
) -> None:
    made = records(svc, 30)
    for r in (made[0], made[17]):
        requests_made.clear()
        found = svc.actions.find(r.id)
        assert found is not None and found[0].id == r.id and found[0].tenant_id == r.tenant_id
        assert len(requests_made) == 2 and all(map(point_read, requests_made)), requests_made


def test_an_action_stored_before_the_index_is_found_then_backfilled(
    svc: Services, requests_made: list[str]
) -> None:
    old, older, *_ = records(svc, 6)
    ids = svc.storage.table(st.ID_INDEX)
    for r in (old, older):  # as stored before the index existed: no row
        ids.delete_entity(r.id, "action")
    assert svc.actions.index.locate(old.id) is None
    found = svc.actions.find(old.id)  # the scan this once, and its row written
    assert found is not None and found[0].id == old.id
    assert svc.actions.index.locate(old.id) is not None
    backfill(svc)
    assert svc.actions.index.complete()
    located = svc.actions.index.locate(older.id)
    assert located is not None and located.tenant_id == older.tenant_id
    assert {e["PartitionKey"] for e in ids.list_entities() if e["RowKey"] == "action"} == {
        r.id for r in svc.actions.query(ActionFilter())
    }  # the records' ids, not their log copies'
    requests_made.clear()
    status, body = http("POST", f"governance/actions/{'e' * 32}/approve")
    assert status == 404 and "no governance action" in body["error"]["message"]
    assert not any("$filter" in r and "Actions" in r for r in requests_made), requests_made


def test_approve_finds_the_action_through_the_index(svc: Services) -> None:
    pending = replace(records(svc, 3)[1], status="pending", approval_required=True)
    svc.actions.save(pending)
    status, body = http("POST", f"governance/actions/{pending.id}/approve")
    assert status == 200 and body["status"] == "approved", body
