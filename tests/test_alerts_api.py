"""GET /api/alerts: the real handler over alerts stored on Azurite."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest

from alerts_http import alerts_http
from shared.models import Alert, Evidence
from shared.services import Services
from tests.conftest import KEY
from tests.detect_samples import T0, TENANT

list_fn = alerts_http.build().get_user_function()


def alert(
    n: int, detector: str = "vigil.anonymous_ip", user: str = "u1", tenant: str = TENANT
) -> Alert:
    t = T0 + timedelta(minutes=n)
    return Alert(
        id=f"a{n:03d}",
        tenant_id=tenant,
        source="workplace",
        detector_id=detector,
        title=f"alert {n}",
        description="",
        severity="medium",
        category="InitialAccess",
        mitre_techniques=("T1078",),
        user_id=user,
        user_email=f"{user}@contoso.com",
        first_activity_time=t,
        last_activity_time=t,
        created_time=t,
        evidence=Evidence({"ip": "203.0.113.50"}, ("e1",), ("customer safe range: not tagged",)),
        dedup_key=f"{detector}|{tenant}|{user}|{n}",
        actions=("revoke_sessions",),
        policy_id=detector,
    )


def get(**params: str) -> tuple[int, Any]:
    req = func.HttpRequest(
        "GET", "http://127.0.0.1:7071/api/alerts", params=params, headers=KEY, body=b""
    )
    resp = list_fn(req)
    return resp.status_code, json.loads(resp.get_body())


@pytest.fixture
def stored(svc: Services) -> Services:
    for n in range(7):
        svc.alerts.save(alert(n, user="u1" if n % 2 else "u2"))
    svc.alerts.save(alert(7, detector="vigil.impossible_travel"))
    svc.alerts.save(alert(8, tenant="other-tenant"))
    return svc


def test_alerts_come_newest_first_in_the_graph_shape(stored: Services) -> None:
    status, body = get()
    assert status == 200 and body["next"] is None
    assert [a["id"] for a in body["value"]] == [f"a{n:03d}" for n in range(8, -1, -1)]
    first = body["value"][1]
    assert first["detectorId"] == "vigil.impossible_travel" and first["status"] == "new"
    assert first["firstActivityDateTime"] == (T0 + timedelta(minutes=7)).isoformat()
    assert first["mitreTechniques"] == ["T1078"] and first["facts"] == {"ip": "203.0.113.50"}
    assert first["suppressionsEvaluated"] == ["customer safe range: not tagged"]
    assert first["classification"] == "unknown" and first["governanceActions"] == [
        "revoke_sessions"
    ]


def test_filters_by_since_detector_user_and_tenant(stored: Services) -> None:
    since = (T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert [a["id"] for a in get(since=since)[1]["value"]] == ["a008", "a007", "a006", "a005"]
    assert [a["id"] for a in get(detector="vigil.impossible_travel")[1]["value"]] == ["a007"]
    users = get(user="U2@contoso.com", tenant=TENANT)[1]["value"]
    assert [a["id"] for a in users] == ["a006", "a004", "a002", "a000"]
    assert [a["id"] for a in get(tenant="other-tenant")[1]["value"]] == ["a008"]


@pytest.mark.parametrize("tenant", [None, TENANT])
def test_continuation_paging_walks_every_alert_once(stored: Services, tenant: str | None) -> None:
    params = {"top": "3", **({"tenant": tenant} if tenant else {})}
    seen: list[str] = []
    pages = 0
    while True:
        status, body = get(**params)
        assert status == 200 and len(body["value"]) <= 3
        seen += [a["id"] for a in body["value"]]
        pages += 1
        if body["next"] is None:
            break
        params["next"] = body["next"]
    expected = 9 if tenant is None else 8
    assert len(seen) == len(set(seen)) == expected and pages == 3
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "since"),
        ({"top": "0"}, "top"),
        ({"top": "many"}, "top"),
        ({"next": "garbage!"}, "next"),
        ({"colour": "red"}, "unknown query parameter 'colour'"),
        ({"status": "closed"}, "status"),
        ({"severity": "urgent"}, "severity"),
        ({"classification": "benign"}, "classification"),
    ],
)
def test_bad_queries_get_a_400_that_says_what_is_wrong(
    svc: Services, params: dict[str, str], message: str
) -> None:
    status, body = get(**params)
    assert status == 400 and message in body["error"]["message"]
