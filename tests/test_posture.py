"""Posture: Adopt SSO in Workplace, computed by posture_timer from stored data and served."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import requests

from local.stack import local_stack
from shared.models import Activity, Install, UserRecord
from shared.posture import adopt_sso
from shared.services import get_services
from tests.detect_samples import act

TENANT = "504942443827307"
NOW = datetime.now(UTC).replace(microsecond=0)


def login(user: str, method: str = "", days_ago: int = 1, outcome: str = "success") -> Activity:
    value = {"event": "LOGIN", **({"login_method": method} if method else {})}
    a = act(
        "login" if outcome == "success" else "login_failed",
        at=NOW - timedelta(days=days_ago),
        user=user,
        email=f"{user}@contoso.com",
    )
    return replace(a, tenant_id=TENANT, raw=json.dumps({"field": "login", "value": value}))


USERS = [
    UserRecord(TENANT, "sso", "sso@contoso.com"),
    UserRecord(TENANT, "pw", "pw@contoso.com"),
    UserRecord(TENANT, "both", "both@contoso.com"),
    UserRecord(TENANT, "custom", "custom@contoso.com", auth_method="password"),  # no method
    UserRecord(TENANT, "gone", "gone@contoso.com", status="deactivated"),
    UserRecord(TENANT, "idle", "idle@contoso.com"),
]
LOGINS = [
    login("sso", "sso"),
    login("pw", "password"),
    login("both", "sso"),
    login("both", "password", days_ago=3),
    login("custom"),
    login("gone", "password"),
    login("idle", "password", days_ago=40),  # outside the 30 days
    login("sso", "password", outcome="failure"),  # a failure is no sign-in
]


def test_adopt_sso_counts_active_users_who_signed_in_with_a_password() -> None:
    recent = [a for a in LOGINS if a.time >= NOW - timedelta(days=30)]
    answer = adopt_sso(TENANT, USERS, recent, NOW)
    assert answer["state"] == "atRisk" and answer["activeUsers"] == 4
    assert [u["id"] for u in answer["users"]] == ["both", "custom", "pw"]
    assert answer["passwordShare"] == 0.75 and "single sign-on" in answer["howToFix"]
    healthy = adopt_sso(TENANT, USERS[:1], [login("sso", "sso")], NOW)
    assert healthy["state"] == "healthy" and healthy["users"] == []


def test_the_timer_stores_it_and_the_api_serves_it(azurite_connection_string: str) -> None:
    with local_stack(port=None, triggers=False) as stack:
        svc = get_services()
        svc.installs.save(Install(TENANT, "Contoso", "i1", "install", "active", NOW))
        svc.users.save_many(USERS)
        svc.activities.write(LOGINS)
        url = f"{stack.api}/posture"
        assert requests.get(url, headers=stack.as_reader(), timeout=10).json()["value"] == []
        stack.host.run_timer("posture_timer")
        answer = requests.get(url, headers=stack.as_reader(), timeout=10)
        assert requests.get(url, timeout=10).status_code == 401
    (rec,) = answer.json()["value"]
    assert rec["title"] == "Adopt SSO in Workplace" and rec["community"] == TENANT
    assert rec["state"] == "atRisk" and rec["activeUsers"] == 4 and rec["passwordUsers"] == 3
    assert [u["email"] for u in rec["users"]] == [
        "both@contoso.com",
        "custom@contoso.com",
        "pw@contoso.com",
    ]
