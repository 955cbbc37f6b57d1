"""The governance log (`GET /api/governance/actions`): newest first across any number of records,
paged with `next`, filters applied before the page is cut. Records are written by the store the
executor uses, in a shuffled order, on Azurite."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import timedelta

from azure.data.tables import UpdateMode

from shared import services
from shared import storage as st
from shared.governance.records import ActionFilter
from shared.models import ActionAttempt, GovernanceAction
from shared.services import Services
from tests.test_governance import NOW
from tests.test_governance_guardrails import http


def records(svc: Services, count: int) -> list[GovernanceAction]:
    """`count` records over two tenants, created a minute apart, saved in random order."""
    made = [
        GovernanceAction(
            GovernanceAction.make_id(uuid.uuid4().hex, "revoke_sessions", f"u{i}@contoso.com"),
            uuid.uuid4().hex,
            ("community1", "community2")[i % 2],
            "revoke_sessions",
            f"u{i}@contoso.com",
            "enforce",
            ("succeeded", "failed")[i % 3 == 0],
            created_at=NOW - timedelta(minutes=i),
        )
        for i in range(count)
    ]
    for record in random.Random(3).sample(made, len(made)):
        svc.actions.save(record, new=True)
    return made  # newest first


def walk(limit: int, **params: str) -> list[list[str]]:
    """Every page of the log over HTTP, following `next`."""
    pages: list[list[str]] = []
    token = ""
    while True:
        query = {**params, "limit": str(limit), **({"next": token} if token else {})}
        status, body = http("GET", "governance/actions", None, **query)
        assert status == 200, body
        assert body["count"] == len(body["actions"]) <= limit
        pages.append([a["id"] for a in body["actions"]])
        if body["next"] is None:
            return pages
        token = body["next"]


def test_the_log_pages_newest_first_across_tenants_and_filters(svc: Services) -> None:
    made = records(svc, 47)
    pages = walk(10)
    assert [len(p) for p in pages] == [10, 10, 10, 10, 7]
    assert [i for p in pages for i in p] == [r.id for r in made]  # complete, in order, no repeat

    one = walk(6, tenant="community2")
    assert [i for p in one for i in p] == [r.id for r in made if r.tenant_id == "community2"]
    failed = walk(4, status="failed")
    assert [i for p in failed for i in p] == [r.id for r in made if r.status == "failed"]
    assert len(failed) > 1


def test_limit_applies_after_ordering(svc: Services) -> None:
    made = records(svc, 30)
    page = svc.actions.page(ActionFilter(), limit=5)
    assert [r.id for r in page.actions] == [r.id for r in made[:5]]  # the newest five
    assert [r.id for r in svc.actions.query(ActionFilter(tenant_id="community1"), limit=3)] == [
        r.id for r in made if r.tenant_id == "community1"
    ][:3]


def test_a_record_updated_later_keeps_its_place_and_shows_its_attempts(svc: Services) -> None:
    made = records(svc, 5)
    oldest = made[-1]
    found = svc.actions.read(oldest.tenant_id, oldest.id)
    assert found is not None
    attempt = ActionAttempt(1, NOW, "succeeded", "req-1", "")
    svc.actions.save(replace(found[0], status="failed", attempt_log=(attempt,)), found[1])
    status, body = http("GET", "governance/actions")
    assert status == 200 and [a["id"] for a in body["actions"]] == [r.id for r in made]
    assert body["actions"][-1]["status"] == "failed"
    assert body["actions"][-1]["attempt_log"] == [
        {
            "number": 1,
            "at": NOW.isoformat(),
            "outcome": "succeeded",
            "request_id": "req-1",
            "note": "",
        }
    ]
    mine = [r.id for r in made if r.tenant_id == oldest.tenant_id]
    assert [r.id for r in svc.actions.for_tenant(oldest.tenant_id)] == mine  # one row each


def test_a_bad_next_token_is_a_400(vigil_env: dict[str, str]) -> None:
    services.reset()
    for token in ("not-a-token", "eyJ4IjogMX0="):
        status, body = http("GET", "governance/actions", next=token)
        assert status == 400 and "next" in body["error"]["message"]


def test_the_source_filter_keeps_its_records_and_older_ones_count_as_workplace(
    svc: Services,
) -> None:
    made = records(svc, 12)
    entra = [replace(r, source="entra") for r in made[::3]]
    for r in entra:
        svc.actions.save(r)
    old = made[1]  # as written before records carried their source: no Source property
    table = svc.storage.table(st.ACTIONS)
    for row in table.query_entities("AlertId eq @a", parameters={"a": old.alert_id}):
        table.upsert_entity({k: v for k, v in row.items() if k != "Source"}, UpdateMode.REPLACE)
    assert [i for p in walk(2, source="entra") for i in p] == [r.id for r in entra]
    workplace = [i for p in walk(3, source="workplace") for i in p]
    assert workplace == [r.id for r in made if r.id not in {e.id for e in entra}]
    assert old.id in workplace
    stored = svc.actions.get(entra[0].tenant_id, entra[0].id)
    assert stored is not None and stored.source == "entra"
