"""Install lifecycle on Azurite and the simulated tenant: both token modes, uninstall, token
errors, decommissioning after Workplace's shutdown, and the status page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import azure.functions as func
import pytest

from connect_http import connect_status, workplace_callbacks
from local.sim_workplace import EVENT_FIELDS, SimulatedWorkplace
from shared import services
from shared import storage as st
from shared.services import Services
from shared.workplace import connect
from shared.workplace.client import RetryPolicy
from shared.workplace.directory_sync import sync_installs
from shared.workplace.inbox_drain import drain_inbox
from shared.workplace.tokens import secret_name
from tests.samples import sign

http_fn = workplace_callbacks.build().get_user_function()
status_fn = connect_status.build().get_user_function()
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # before Workplace's end of access
AFTER_SHUTDOWN = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def quiet(svc: Services) -> Services:
    svc.workplace.retry = RetryPolicy(sleep=lambda s: None)
    return svc


def install(svc: Services, wp: SimulatedWorkplace, now: datetime = T0) -> str:
    quiet(svc)
    location = connect.start_install(svc.connect_deps, now).headers["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    code = wp.issue_install_code(svc.settings.redirect_uri(), state=state)
    assert (
        connect.complete_install(svc.connect_deps, {"code": code, "state": state}, now).status
        == 200
    )
    token = svc.workplace_token(wp.community_id)
    assert token
    return token


def post(action: str, body: bytes, headers: dict[str, str]) -> func.HttpResponse:
    req = func.HttpRequest(
        "POST",
        f"http://127.0.0.1:7071/api/workplace/{action}",
        headers=headers,
        body=body,
        route_params={"action": action},
    )
    resp: func.HttpResponse = http_fn(req)
    return resp


def uninstall(signed_request: str) -> func.HttpResponse:
    body = urlencode({"signed_request": signed_request}).encode()
    return post("uninstall", body, {"Content-Type": "application/x-www-form-urlencoded"})


def status(svc: Services) -> dict[str, Any]:
    req = func.HttpRequest("GET", "http://127.0.0.1:7071/api/workplace/status", body=b"")
    resp = status_fn(req)
    assert resp.status_code == 200
    data: dict[str, Any] = json.loads(resp.get_body())
    return data


@pytest.mark.parametrize("encoding", ["hex", "raw"])
def test_uninstall_verifies_the_signed_request_forgets_the_token_and_keeps_the_data(
    wp: SimulatedWorkplace, svc: Services, encoding: str
) -> None:
    token = install(svc, wp)
    sync_installs(svc.directory_sync_deps, T0)
    users_before = svc.users.for_tenant(wp.community_id)
    assert users_before
    resp = uninstall(wp.uninstall_signed_request(encoding=encoding))  # type: ignore[arg-type]
    assert resp.status_code == 200, resp.get_body()
    got = svc.installs.get(wp.community_id)
    assert got is not None and got.status == "uninstalled" and "kept" in got.status_reason
    assert svc.secrets.get(secret_name(wp.community_id)) is None
    assert svc.users.for_tenant(wp.community_id) == users_before  # data kept
    wp.clear_requests()
    (result,) = sync_installs(svc.directory_sync_deps, T0 + 2 * HOUR)
    assert result.outcome == "skipped" and wp.requests == []  # no longer synced
    assert uninstall(wp.uninstall_signed_request()).status_code == 200  # a retry is harmless
    assert token not in json.dumps(status(svc))


def test_a_forged_or_malformed_uninstall_changes_nothing(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    good = wp.uninstall_signed_request()
    sig, payload = good.split(".")
    forged = uninstall(sig[:-4] + "AAAA." + payload)
    assert forged.status_code == 401
    assert uninstall("not-a-signed-request").status_code == 401
    assert post("uninstall", b"", {}).status_code == 400
    got = svc.installs.get(wp.community_id)
    assert got is not None and got.status == "active"
    assert svc.workplace_token(wp.community_id)


def still_installed(svc: Services, wp: SimulatedWorkplace) -> bool:
    got = svc.installs.get(wp.community_id)
    return got is not None and got.status == "active" and bool(svc.workplace_token(wp.community_id))


def test_an_oversized_uninstall_is_refused_with_413_before_it_is_parsed(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    valid = urlencode({"signed_request": wp.uninstall_signed_request()}).encode()
    # 8 MB, a million fields, and a valid signed_request: had it been parsed and its signature
    # checked, the install would now be uninstalled and its token gone.
    flood = valid + b"&a=1234" * 1_200_000
    assert len(flood) > 8_000_000 and flood.count(b"&") > 1_000_000

    resp = post("uninstall", flood, form)

    assert resp.status_code == 413
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert still_installed(svc, wp)
    # Just over the limit is refused too; at the limit the form is read.
    over = valid + b"&" + b"x" * (connect.MAX_FORM_BODY - len(valid))
    assert len(over) == connect.MAX_FORM_BODY + 1
    assert post("uninstall", over, form).status_code == 413
    assert still_installed(svc, wp)


def test_an_uninstall_form_with_too_many_fields_is_refused_unread(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    valid = urlencode({"signed_request": wp.uninstall_signed_request()}).encode()
    crowded = b"a=1&" * connect.MAX_FORM_FIELDS + valid

    resp = post("uninstall", crowded, {"Content-Type": "application/x-www-form-urlencoded"})

    assert resp.status_code == 400 and b"fields" in resp.get_body()
    assert still_installed(svc, wp)
    assert uninstall(wp.uninstall_signed_request()).status_code == 200  # the real one still works


def test_a_callback_or_webhook_with_an_oversized_body_is_refused_unread(
    wp: SimulatedWorkplace, svc: Services, vigil_env: dict[str, str]
) -> None:
    location = connect.start_install(svc.connect_deps, T0).headers["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    code = wp.issue_install_code(svc.settings.redirect_uri(), state=state)
    callback = func.HttpRequest(
        "GET",
        "http://127.0.0.1:7071/api/workplace/callback",
        params={"code": code, "state": state},
        body=b"x" * (connect.MAX_FORM_BODY + 1),
        route_params={"action": "callback"},
    )
    assert http_fn(callback).status_code == 413
    assert wp.requests_to("/oauth/access_token") == []
    huge = b" " * (connect.MAX_BODY["webhook"] + 1)
    resp = post("webhook", huge, sign(huge, vigil_env["WORKPLACE_APP_SECRET"]))
    assert resp.status_code == 413
    assert svc.inbox.oldest(1) == []


@pytest.mark.parametrize(
    ("code", "subcode", "expected"),
    [(190, None, "needs_reauth"), (102, None, "needs_reauth"), (190, 458, "uninstalled")],
)
def test_token_errors_move_the_install_out_of_active(
    wp: SimulatedWorkplace,
    svc: Services,
    code: int,
    subcode: int | None,
    expected: str,
) -> None:
    install(svc, wp)
    wp.fail("/community/members", status=400, code=code, subcode=subcode)
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert result.status == expected
    got = svc.installs.get(wp.community_id)
    assert got is not None and got.status == expected and got.status_reason
    assert (svc.secrets.get(secret_name(wp.community_id)) is None) == (expected == "uninstalled")
    # A reinstall makes it active again.
    install(svc, wp, T0 + HOUR)
    assert sync_installs(svc.directory_sync_deps, T0 + HOUR)[0].outcome == "synced"


def test_persistent_shutdown_failures_decommission_instead_of_retrying_forever(
    wp: SimulatedWorkplace, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKPLACE_DECOMMISSION_AFTER_FAILURES", "3")
    services.reset()
    svc = services.get_services()
    install(svc, wp)
    wp.shut_down()
    outcomes = [sync_installs(svc.directory_sync_deps, T0 + i * HOUR)[0].status for i in range(3)]
    assert outcomes == ["active", "active", "decommissioned"]
    wp.clear_requests()
    assert sync_installs(svc.directory_sync_deps, T0 + 10 * HOUR)[0].outcome == "skipped"
    assert wp.requests == []
    (shown,) = status(svc)["installs"]
    assert shown["state"] == "decommissioned" and "shutdown" in shown["state_reason"]
    assert shown["last_error"]["message"]


def test_after_the_shutdown_date_the_first_such_failure_decommissions(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp, AFTER_SHUTDOWN)
    wp.uninstall()  # every token now fails with 190/458
    (result,) = sync_installs(svc.directory_sync_deps, AFTER_SHUTDOWN)
    assert result.status == "decommissioned"


def test_transient_faults_keep_the_install_active(wp: SimulatedWorkplace, svc: Services) -> None:
    install(svc, wp)
    wp.fail("/community/admins", status=500, times=20)
    (result,) = sync_installs(svc.directory_sync_deps, T0)
    assert (result.outcome, result.status) == ("failed", "active")
    wp.faults.clear()
    assert sync_installs(svc.directory_sync_deps, T0 + timedelta(minutes=1))[0].outcome == "synced"


def test_custom_integration_mode_needs_no_install_flow(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SimulatedWorkplace(app_id="", app_secret=vigil_env["WORKPLACE_APP_SECRET"]) as wp:
        token = wp.add_custom_integration(require_proof=True)
        monkeypatch.delenv("WORKPLACE_APP_ID")
        monkeypatch.delenv("WORKPLACE_REDIRECT_URI")
        monkeypatch.setenv("WORKPLACE_GRAPH_URL", wp.url)
        monkeypatch.setenv("WORKPLACE_ACCESS_TOKEN", token)
        services.reset()
        svc = quiet(services.get_services())
        (result,) = sync_installs(svc.directory_sync_deps, T0)
        assert result.outcome == "synced"
        got = svc.installs.get(wp.community_id)
        assert got is not None and (got.mode, got.status) == ("custom_integration", "active")
        assert svc.workplace_token(wp.community_id) == token
        assert all("appsecret_proof" in r.query for r in wp.requests)
        # Nothing about the token is kept in storage, not even encrypted: the setting holds it.
        for table in (st.SECRETS, st.INSTALLS, st.WORKPLACE_SYNC):
            assert token not in str(list(svc.storage.table(table).list_entities()))
        # Webhooks are signed with the integration's app secret.
        body = json.dumps(wp.security_envelope([wp.change("LOGIN", actor=wp.members[0],
                          ip="203.0.113.9", ip_country="PL", timestamp=T0)])).encode()  # fmt: skip
        assert (
            post("webhook", body, sign(body, vigil_env["WORKPLACE_APP_SECRET"])).status_code == 200
        )
        # A refused token needs a new one; setting it revives the install.
        wp.fail("/community/members", status=400, code=190)
        assert sync_installs(svc.directory_sync_deps, T0 + 2 * HOUR)[0].status == "needs_reauth"
        assert sync_installs(svc.directory_sync_deps, T0 + 3 * HOUR)[0].outcome == "skipped"
        monkeypatch.setenv("WORKPLACE_ACCESS_TOKEN", wp.add_custom_integration())
        services.reset()
        svc = quiet(services.get_services())
        assert sync_installs(svc.directory_sync_deps, T0 + 4 * HOUR)[0].outcome == "synced"


def test_a_custom_integration_token_refused_for_good_is_not_retried_every_run(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SimulatedWorkplace(app_id="", app_secret=vigil_env["WORKPLACE_APP_SECRET"]) as wp:
        monkeypatch.setenv("WORKPLACE_GRAPH_URL", wp.url)
        monkeypatch.setenv("WORKPLACE_ACCESS_TOKEN", "DQVJ-not-a-token-workplace-issued")
        services.reset()
        svc = quiet(services.get_services())
        (result,) = sync_installs(svc.directory_sync_deps, T0)
        assert result.outcome == "failed" and "190" in result.error
        assert sync_installs(svc.directory_sync_deps, T0 + HOUR) == []
        assert len(wp.requests_to("/community")) == 1
        assert "190" in status(svc)["custom_integration"]["last_error"]
        monkeypatch.setenv("WORKPLACE_ACCESS_TOKEN", wp.add_custom_integration())
        services.reset()
        (result,) = sync_installs(quiet(services.get_services()).directory_sync_deps, T0 + 2 * HOUR)
        assert result.outcome == "synced"


def test_install_tokens_are_encrypted_at_rest(wp: SimulatedWorkplace, svc: Services) -> None:
    token = install(svc, wp)
    rows = list(svc.storage.table(st.SECRETS).list_entities())
    assert len(rows) == 1 and token not in str(rows) and token[:12] not in str(rows)


def test_status_shows_mode_state_sync_lag_counts_and_unknown_events(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    secret = svc.settings.webhook_secret()
    changes = [
        wp.change(event, actor=wp.members[0], ip="203.0.113.9", ip_country="PL",
                  timestamp=T0 + timedelta(seconds=i))
        for i, event in enumerate(EVENT_FIELDS)
    ] + [
        wp.change("QUANTUM_LOGIN", field="login", actor=wp.members[1], ip="203.0.113.9",
                  ip_country="PL", timestamp=T0),
    ]  # fmt: skip
    body = json.dumps(wp.security_envelope(changes, entry_time=1)).encode()
    again = json.dumps(wp.security_envelope(changes[:5], entry_time=2)).encode()  # redelivered
    assert post("webhook", body, sign(body, secret)).status_code == 200
    assert post("webhook", again, sign(again, secret)).status_code == 200
    drain_inbox(svc.inbox_drain_deps, T0 + timedelta(minutes=2))
    sync_installs(svc.directory_sync_deps, T0 + timedelta(minutes=2))
    report = status(svc)
    (shown,) = report["installs"]
    assert (shown["mode"], shown["state"]) == ("install", "active")
    assert shown["counts_by_event"] == {**{e: 1 for e in EVENT_FIELDS}, "QUANTUM_LOGIN": 1}
    assert shown["unknown_events"] == {"QUANTUM_LOGIN": 1}
    assert shown["last_sync"]["directory_synced_at"] == (T0 + timedelta(minutes=2)).isoformat()
    assert shown["lag_seconds"]["webhooks"] == 120 - (len(EVENT_FIELDS) - 1)
    assert shown["last_error"] is None
    assert report["inbox_backlog_seconds"] == 0.0


def test_webhooks_are_one_write_each_and_large_envelopes_kept_whole(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    secret = svc.settings.webhook_secret()
    member = wp.members[0]
    big = wp.change("LOGIN", actor=member, ip="203.0.113.9", ip_country="PL", timestamp=T0,
                    note="x" * 400_000)  # fmt: skip
    large = json.dumps(wp.security_envelope([big])).encode()
    assert len(large) > 64 * 1024 * 5  # far beyond a queue message
    for i in range(60):
        change = wp.change("LOGIN_FAILED", actor=member, ip="203.0.113.9", ip_country="PL",
                           timestamp=T0 + timedelta(seconds=i))  # fmt: skip
        body = large if i == 0 else json.dumps(wp.security_envelope([change])).encode()
        assert post("webhook", body, sign(body, secret)).status_code == 200
    assert len(svc.inbox.oldest(100)) == 60  # one inbox row per delivery
    drain_inbox(svc.inbox_drain_deps, T0 + HOUR)
    rows = list(svc.storage.table(st.ACTIVITIES).list_entities())
    assert len(rows) == 60


def test_event_counts_fold_into_a_total_without_changing_the_sum(svc: Services) -> None:
    from shared.models import Activity
    from shared.workplace.counts import EventCountStore

    store = EventCountStore(svc.storage.table(st.EVENT_COUNTS))

    def act(i: int, name: str) -> Activity:
        return Activity("workplace", "c1", f"e{i}", T0, "login", name, "login", "success", "u1")

    units = [(f"{i:04d}", [act(i, "LOGIN"), act(1000 + i, "ODD")]) for i in range(150)]
    store.record_once(units)
    store.record_once(units[:10])  # a retried unit keeps its first tally
    expected = {"LOGIN": 150, "ODD": 150}
    assert store.totals("c1") == expected
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert store.compact("c1", later) == 99
    assert store.totals("c1") == expected
    assert store.compact("c1", later) == 51
    assert store.compact("c1", later) == 0
    assert store.totals("c1") == expected
    assert len(list(svc.storage.table(st.EVENT_COUNTS).list_entities())) == 1


def test_envelopes_too_large_for_a_row_are_kept_whole_in_one_blob(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    install(svc, wp)
    secret = svc.settings.webhook_secret()
    member = wp.members[3]
    changes = [
        wp.change("LOGIN", actor=member, ip="203.0.113.9", ip_country="PL",
                  timestamp=T0 + timedelta(seconds=i), device_detail="d" * 3000)
        for i in range(400)
    ]  # fmt: skip
    body = json.dumps(wp.security_envelope(changes)).encode()
    assert len(body) > 1024 * 1024  # more than a table row (or 16 queue messages) holds
    assert post("webhook", body, sign(body, secret)).status_code == 200
    assert list(svc.storage.table(st.INBOX).list_entities()) == []  # one write: the blob
    (entry,) = svc.inbox.oldest(10)
    assert entry.body == body
    broken = b'{"object": "page", "padding": "' + b"x" * 700_000 + b'"}'
    assert post("webhook", broken, sign(broken, secret)).status_code == 200
    result = drain_inbox(svc.inbox_drain_deps, T0 + HOUR)
    assert (result.activities, result.quarantined) == (400, 1)
    assert svc.inbox.oldest(10) == []
    (parked,) = list(svc.storage.table(st.QUARANTINE).list_entities())
    assert parked["BodyBlob"].endswith(parked["RowKey"]) and parked["Size"] == len(broken)
