"""The activity log across sources: Workplace communities and the Entra tenant, one source or
both (`source=`), and an Entra alert's related activities, on Azurite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared import services
from shared.activity_log import ActivityQuery, Position
from shared.config import SOURCES
from shared.models import Activity, Alert, Evidence, Install, UserRecord
from shared.services import Services
from tests.detect_samples import act

COMMUNITY = "504942443827307"
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def both(vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("VIGIL_SOURCES", ",".join(SOURCES))
    monkeypatch.setenv("GRAPH_TENANT_ID", ENTRA_TENANT)
    services.reset()
    svc = services.get_services()
    svc.installs.save(Install(COMMUNITY, "Contoso", "i1", "install", "active", START))
    return svc


def seeded(svc: Services) -> tuple[list[Activity], list[Activity]]:
    workplace = [
        replace(act("login", at=START + timedelta(hours=i), user="100064094363063"),
                tenant_id=COMMUNITY)
        for i in range(3)
    ]  # fmt: skip
    entra = [
        replace(
            act("login", at=START + timedelta(hours=i, minutes=30), user="8e3c7a51-1b2f"),
            tenant_id=ENTRA_TENANT,
            source="entra",
            event_id=f"5b1f0c3e-7d2a-4c55-9a61-2f4e8b0d130{i}",
        )
        for i in range(4)
    ]
    svc.activities.write(workplace + entra)
    return workplace, entra


def ids(svc: Services, **params: str) -> list[str]:
    window = {"from": START.isoformat(), "to": (START + timedelta(days=1)).isoformat()}
    found, token, _ = svc.activity_log.page({**window, **params})
    assert token is None
    return [a.event_id for a in found]


def test_each_source_or_both(both: Services) -> None:
    workplace, entra = seeded(both)
    newest_first = lambda acts: [a.event_id for a in reversed(acts)]  # noqa: E731
    assert ids(both, source="entra") == newest_first(entra)
    assert ids(both, source="workplace") == newest_first(workplace)
    assert sorted(ids(both)) == sorted(a.event_id for a in workplace + entra)
    assert ids(both, tenant=ENTRA_TENANT) == newest_first(entra)
    assert ids(both, tenant=ENTRA_TENANT, source="workplace") == []


def test_an_entra_alert_finds_its_activities(both: Services) -> None:
    _, entra = seeded(both)
    related = entra[1:3]
    alert = Alert(
        id="alert-entra",
        tenant_id=ENTRA_TENANT,
        source="entra",
        detector_id="vigil.failed_logins",
        title="t",
        description="d",
        severity="medium",
        category="CredentialAccess",
        mitre_techniques=(),
        user_id=related[0].actor_id,
        user_email=related[0].actor_email,
        first_activity_time=related[0].time,
        last_activity_time=related[-1].time,
        created_time=related[-1].time,
        evidence=Evidence({}, tuple(a.event_id for a in related)),
        dedup_key="k",
    )
    rows = both.activity_log.rows(ActivityQuery.related_to(alert), Position())
    assert sorted(a.event_id for _, a in rows) == sorted(a.event_id for a in related)
    both.alerts.save(alert)
    assert sorted(ids(both, alert="alert-entra")) == sorted(a.event_id for a in related)


def test_an_entra_users_page_shows_their_activities(both: Services) -> None:
    now = datetime.now(UTC)
    uid = "8e3c7a51-1b2f-4d6e-9c0a-6f5e4d3c2b1a"
    mine = [
        replace(
            act("login", at=now - timedelta(hours=h), user=uid, email="ana@contoso.example"),
            tenant_id=ENTRA_TENANT,
            source="entra",
            event_id=f"5b1f0c3e-7d2a-4c55-9a61-2f4e8b0d131{h}",
        )
        for h in (1, 2, 3)
    ]
    both.activities.write(mine)
    both.users.save(UserRecord(ENTRA_TENANT, uid, "ana@contoso.example"))
    user = both.user_page.find("ana@contoso.example", "")
    assert user is not None
    assert both.user_page.answer(user, now)["last30Days"]["activities"] == 3
