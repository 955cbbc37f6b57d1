"""The analyst's API through the local functions host on Azurite: roles, alert triage with
history and ETags, the activity log (JSON and CSV, signed paging), the user page, the audit log."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from local.stack import Stack, local_stack
from shared.access import encode_principal
from shared.models import Activity, Alert, Evidence, Install, UserRecord
from shared.services import Services, get_services
from tests.detect_samples import act

TENANT = "504942443827307"
OTHER = "700000000000001"
ALICE, BOB = "100064094363063", "100064094363064"
# Recent, so the user page's last 30 days hold them; whole minutes, so the keys are stable.
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(days=3)


@pytest.fixture(scope="module")
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    with local_stack(port=None, triggers=False) as s:
        seed(get_services())
        yield s


def activities() -> list[Activity]:
    """Alice and Bob over three days in two communities: logins, failures, an admin action."""
    out: list[Activity] = []
    for i in range(12):
        at = START + timedelta(hours=6 * i)
        user, email = (ALICE, "alice@contoso.com") if i % 3 else (BOB, "bob@contoso.com")
        failed = i % 4 == 0
        ip = "203.0.113.9" if i % 2 else "198.51.100.7"
        country = "RU" if ip.startswith("203") else "GB"
        a = act(
            "login_failed" if failed else "login",
            at=at,
            ip=ip,
            country=country,
            user=user,
            email=email,
            user_agent=f"agent-{i % 2}",
        )
        out.append(replace(a, tenant_id=TENANT))
    carol = act(at=START + timedelta(hours=1), user="999", email="carol@fabrikam.com")
    out.append(replace(carol, tenant_id=OTHER))
    return out


def seed(svc: Services) -> None:
    for community in (TENANT, OTHER):
        svc.installs.save(Install(community, "Contoso", "i1", "install", "active", START))
    svc.activities.write(activities())
    svc.users.save(
        UserRecord(TENANT, ALICE, "alice@contoso.com", auth_method="password", first_seen=START)
    )
    related = [a for a in activities() if a.actor_id == ALICE and a.country == "RU"]
    svc.alerts.save(
        Alert(
            id="alert-ru",
            tenant_id=TENANT,
            source="workplace",
            detector_id="vigil.infrequent_country",
            title="Activity from infrequent country",
            description="Alice signed in from RU.",
            severity="medium",
            category="InitialAccess",
            mitre_techniques=("T1078",),
            user_id=ALICE,
            user_email="alice@contoso.com",
            first_activity_time=related[0].time,
            last_activity_time=related[-1].time,
            created_time=related[0].time,
            evidence=Evidence({"country": "RU"}, tuple(a.event_id for a in related)),
            dedup_key="k1",
        )
    )


def call(
    stack: Stack, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> requests.Response:
    return requests.request(method, f"{stack.api}/{path}", headers=headers, timeout=30, **kw)


def window(**extra: str) -> dict[str, str]:
    return {"from": START.isoformat(), "to": (NOW + timedelta(minutes=1)).isoformat(), **extra}


def test_who_may_do_what(stack: Stack) -> None:
    assert call(stack, "GET", "alerts/alert-ru").status_code == 401
    forged = encode_principal("mallory@contoso.com", "m", ("Vigil.Responder",))
    # A principal header the client sends itself is removed before the app sees it.
    assert call(stack, "GET", "alerts", {"X-MS-CLIENT-PRINCIPAL": forged}).status_code == 401
    assert call(stack, "GET", "alerts", stack.as_reader()).status_code == 200
    refused = call(stack, "PATCH", "alerts/alert-ru", stack.as_reader(), json={"status": "new"})
    assert refused.status_code == 403 and "Vigil.Responder" in refused.json()["error"]["message"]
    key = {"x-functions-key": stack.function_key}
    assert call(stack, "GET", "audit", key).status_code == 200
    assert call(stack, "GET", "audit", {"x-functions-key": "wrong"}).status_code == 401


def test_an_alert_opens_with_its_activities_and_triage_keeps_history_under_etags(
    stack: Stack,
) -> None:
    opened = call(stack, "GET", "alerts/alert-ru", stack.as_analyst())
    assert opened.status_code == 200
    alert = opened.json()
    related = [a for a in activities() if a.actor_id == ALICE and a.country == "RU"]
    assert sorted(a["id"] for a in alert["activities"]) == sorted(a.event_id for a in related)
    assert {a["ip"] for a in alert["activities"]} == {"203.0.113.9"}
    assert alert["status"] == "new" and alert["history"] == []
    etag = opened.headers["ETag"]

    change = {"status": "inProgress", "assignedTo": "analyst@contoso.com", "comment": "mine"}
    taken = call(
        stack, "PATCH", "alerts/alert-ru", {**stack.as_analyst(), "If-Match": etag}, json=change
    )
    assert taken.status_code == 200 and taken.headers["ETag"] != etag
    body = taken.json()
    assert body["status"] == "inProgress" and body["assignedTo"] == "analyst@contoso.com"
    (entry,) = body["history"]
    assert entry["by"]["name"] == "analyst@contoso.com" and entry["comment"] == "mine"
    assert entry["changes"]["status"] == {"from": "new", "to": "inProgress"}

    stale = call(
        stack,
        "PATCH",
        "alerts/alert-ru",
        {**stack.as_analyst(), "If-Match": etag},
        json={"status": "resolved"},
    )
    assert stale.status_code == 412
    listed = call(stack, "GET", "alerts", stack.as_reader(), params={"status": "inProgress"})
    assert [a["id"] for a in listed.json()["value"]] == ["alert-ru"]
    assert listed.json()["value"][0]["assignedTo"] == "analyst@contoso.com"
    assert (
        call(stack, "GET", "alerts", stack.as_reader(), params={"status": "new"}).json()["value"]
        == []
    )

    resolved = call(
        stack,
        "PATCH",
        "alerts/alert-ru",
        {**stack.as_analyst(), "If-Match": taken.headers["ETag"]},
        json={"status": "resolved", "classification": "truePositive",
              "determination": "compromisedAccount"},
    )  # fmt: skip
    assert resolved.status_code == 200
    assert [len(h["changes"]) for h in resolved.json()["history"]] == [2, 3]
    audit = call(stack, "GET", "audit", stack.as_reader(), params={"target": "alert-ru"}).json()
    assert [(e["actor"]["name"], e["status"]) for e in audit["value"]] == [
        ("analyst@contoso.com", 200),
        ("analyst@contoso.com", 412),
        ("analyst@contoso.com", 200),
    ]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"status": "closed"}, "status: 'closed' is not one of new, inProgress, resolved"),
        ({"classification": "benign"}, "truePositive, falsePositive"),
        ({"determination": "bad"}, "compromisedAccount"),
        ({"owner": "x"}, "owner"),
        ({"assignedTo": 5}, "assignedTo"),
        ({"status": "inProgress", "suppress": {"days": 7}}, "suppress"),
        ({}, "body"),
    ],
)
def test_a_bad_change_is_a_400_naming_the_field(
    stack: Stack, body: dict[str, Any], named: str
) -> None:
    answer = call(stack, "PATCH", "alerts/alert-ru", stack.as_analyst(), json=body)
    assert answer.status_code == 400 and named in answer.json()["error"]["message"]


def test_unknown_alert_is_a_404(stack: Stack) -> None:
    assert call(stack, "GET", "alerts/nope", stack.as_reader()).status_code == 404


def test_the_activity_log_pages_through_the_range_once_reading_only_its_days(
    stack: Stack,
) -> None:
    log = get_services().activity_log
    log.scanned.clear()
    params = window(tenant=TENANT, top="5")
    seen: list[str] = []
    while True:
        answer = call(stack, "GET", "activities", stack.as_reader(), params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [a["id"] for a in body["value"]]
        if body["next"] is None:
            break
        params["next"] = body["next"]
    expected = [a for a in activities() if a.tenant_id == TENANT]
    assert len(seen) == len(set(seen)) == len(expected)
    times = [a.time for a in sorted(expected, key=lambda a: a.time, reverse=True)]
    assert [a.event_id for a in sorted(expected, key=lambda a: a.time, reverse=True)] == seen
    assert times[0] > times[-1]
    days = {f"workplace_{TENANT}_{d:%Y%m%d}" for d in (START + timedelta(days=i) for i in range(4))}
    assert set(log.scanned) <= days | {f"workplace_{TENANT}_{NOW:%Y%m%d}"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"user": "alice@contoso.com"}, lambda a: a.actor_id == ALICE),
        ({"user": BOB}, lambda a: a.actor_id == BOB),
        ({"event": "LOGIN_FAILED"}, lambda a: a.type == "login_failed"),
        ({"event": "login"}, lambda a: a.type == "login"),
        ({"outcome": "failure"}, lambda a: a.outcome == "failure"),
        ({"ip": "203.0.113.0/24"}, lambda a: a.ip.startswith("203.0.113.")),
        ({"ip": "198.51.100.7"}, lambda a: a.ip == "198.51.100.7"),
        ({"country": "gb"}, lambda a: a.country == "GB"),
        ({"alert": "alert-ru"}, lambda a: a.actor_id == ALICE and a.country == "RU"),
    ],
)
def test_activity_filters(stack: Stack, extra: dict[str, str], expected: Any) -> None:
    answer = call(
        stack, "GET", "activities", stack.as_reader(), params=window(tenant=TENANT, **extra)
    )
    assert answer.status_code == 200, answer.text
    got = sorted(a["id"] for a in answer.json()["value"])
    want = sorted(a.event_id for a in activities() if a.tenant_id == TENANT and expected(a))
    assert got == want and want


def test_every_installed_community_is_read_without_a_tenant(stack: Stack) -> None:
    answer = call(stack, "GET", "activities", stack.as_reader(), params=window())
    assert {a["community"] for a in answer.json()["value"]} == {TENANT, OTHER}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, "from"),
        ({"from": "2026-03-01T00:00:00Z"}, "to"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-04-15T00:00:00Z"}, "to: at most 31 days"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "to"),
        ({**window(), "top": "0"}, "top"),
        ({**window(), "ip": "300.1.1.1"}, "ip"),
        ({**window(), "ip": "10.0.0.0/99"}, "ip"),
        ({**window(), "outcome": "maybe"}, "outcome"),
        ({**window(), "country": "G1"}, "country"),
        ({**window(), "alert": "nope"}, "alert"),
        ({**window(), "format": "xml"}, "format"),
        ({**window(), "next": "abc"}, "next"),
        ({**window(), "colour": "red"}, "colour"),
    ],
)
def test_bad_activity_queries_are_400s_naming_the_parameter(
    stack: Stack, params: dict[str, str], named: str
) -> None:
    answer = call(stack, "GET", "activities", stack.as_reader(), params=params)
    assert answer.status_code == 400 and named in answer.json()["error"]["message"]


def test_an_altered_or_borrowed_token_is_refused(stack: Stack) -> None:
    params = window(tenant=TENANT, top="2")
    token = call(stack, "GET", "activities", stack.as_reader(), params=params).json()["next"]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for bad in (flipped, token + "x"):
        answer = call(stack, "GET", "activities", stack.as_reader(), params={**params, "next": bad})
        assert answer.status_code == 400 and "next" in answer.json()["error"]["message"]
    other_query = {**params, "outcome": "success", "next": token}
    assert (
        call(stack, "GET", "activities", stack.as_reader(), params=other_query).status_code == 400
    )
    ok = call(stack, "GET", "activities", stack.as_reader(), params={**params, "next": token})
    assert ok.status_code == 200


def test_csv_export_pages_concatenate_into_one_file_with_one_header(stack: Stack) -> None:
    params = window(tenant=TENANT, format="csv", top="4")
    text = ""
    pages = 0
    while True:
        answer = call(stack, "GET", "activities", stack.as_reader(), params=params)
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
        text += answer.text
        pages += 1
        token = answer.headers.get("Vigil-Next")
        if not token:
            break
        params["next"] = token
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = [a for a in activities() if a.tenant_id == TENANT]
    assert pages == 3 and len(rows) == len(expected)
    assert list(rows[0]) == [
        "time", "user", "event", "outcome", "ip", "country", "isp", "userAgent", "target",
        "community", "activityId",
    ]  # fmt: skip
    assert {r["activityId"] for r in rows} == {a.event_id for a in expected}
    bob = next(r for r in rows if r["user"] == "bob@contoso.com")
    assert bob["community"] == TENANT and bob["userAgent"].startswith("agent-")


def test_the_user_page(stack: Stack) -> None:
    for ident in ("alice@contoso.com", "ALICE@contoso.com", ALICE):
        answer = call(stack, "GET", f"users/{ident}", stack.as_reader())
        assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["directory"]["loginMethod"] == "password"
    alice = [a for a in activities() if a.actor_id == ALICE]
    recent = page["last30Days"]
    assert recent["activities"] == len(alice)
    assert {c["value"]: c["count"] for c in recent["countries"]} == {
        c: sum(1 for a in alice if a.country == c) for c in {a.country for a in alice}
    }
    assert sum(d["count"] for d in recent["devices"]) == len(alice)
    assert recent["firstActivity"] == min(a.time for a in alice).isoformat()
    assert page["baselines"]["state"] == "not started"
    assert call(stack, "GET", "users/nobody@contoso.com", stack.as_reader()).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "alerts/alert-ru", {"expand": "all"}),
        ("PATCH", "alerts/alert-ru", {"force": "1"}),
        ("GET", "users/alice@contoso.com", {"days": "90"}),
        ("DELETE", "suppressions/s1", {"all": "1"}),
        ("GET", "suppressions", {"active": "1"}),
        ("GET", "posture", {"state": "atRisk"}),
        ("GET", "audit", {"actor_id": "x"}),
    ],
)
def test_an_unknown_query_parameter_is_a_400_naming_it(
    stack: Stack, method: str, path: str, params: dict[str, str]
) -> None:
    answer = call(stack, method, path, stack.as_analyst(), params=params, json={"status": "new"})
    assert answer.status_code == 400
    assert repr(next(iter(params))) in answer.json()["error"]["message"]


def test_the_openapi_document_refuses_unknown_parameters(stack: Stack) -> None:
    answer = call(stack, "GET", "openapi.json", params={"colour": "red"})
    assert answer.status_code == 400 and "'colour'" in answer.json()["error"]["message"]
