"""Each function handler called the way the host calls it, on Azurite and the simulators."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
import requests
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

from connect_http import connect_install, workplace_callbacks
from detect_queue import detect_queue
from govern_queue import govern_queue
from local.sim_graph import SimulatedGraph, SimUser
from local.sim_workplace import SimulatedWorkplace
from shared import services
from shared import storage as st
from shared.services import Services
from sync_timer import sync_timer
from tests.conftest import use_simulated_graph
from tests.samples import envelope, failed_logins, install, sign, value

install_fn = connect_install.build().get_user_function()
http_fn = workplace_callbacks.build().get_user_function()
sync_fn = sync_timer.build().get_user_function()
detect_fn = detect_queue.build().get_user_function()
govern_fn = govern_queue.build().get_user_function()
NOW = datetime.now(UTC)


def get(route: str, params: dict[str, str], action: str | None = None) -> func.HttpRequest:
    return func.HttpRequest(
        "GET",
        f"http://127.0.0.1:7071/api/{route}",
        params=params,
        body=b"",
        route_params={"action": action} if action else {},
    )


def post_webhook(body: bytes, headers: dict[str, str]) -> func.HttpResponse:
    req = func.HttpRequest(
        "POST",
        "http://127.0.0.1:7071/api/workplace/webhook",
        headers=headers,
        body=body,
        route_params={"action": "webhook"},
    )
    resp: func.HttpResponse = http_fn(req)
    return resp


def test_install_redirects_to_the_dialog_and_the_callback_stores_the_install(
    wp: SimulatedWorkplace, vigil_env: dict[str, str]
) -> None:
    resp = install_fn(get("workplace/install", {}))
    assert resp.status_code == 302
    location = resp.headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(wp.dialog_url)
    assert query["app_id"] == vigil_env["WORKPLACE_APP_ID"]
    assert query["redirect_uri"] == vigil_env["WORKPLACE_REDIRECT_URI"]
    dialog = requests.get(location, allow_redirects=False, timeout=10)
    back = {k: v[0] for k, v in parse_qs(urlsplit(dialog.headers["Location"]).query).items()}
    assert back["state"] == query["state"]

    done = http_fn(get("workplace/callback", back, "callback"))
    assert done.status_code == 200, done.get_body()
    svc = services.get_services()
    install = svc.installs.get(wp.community_id)
    assert install is not None and install.status == "active"
    assert install.install_id == wp.installs[0].id
    assert svc.secrets.get(f"workplace-token-{wp.community_id}") == wp.installs[0].token
    (community,) = wp.requests_to("/community")
    assert community.query["appsecret_proof"] and community.status == 200
    # The state was single-use.
    assert http_fn(get("workplace/callback", back, "callback")).status_code == 400


def dialog_answer(wp: SimulatedWorkplace) -> dict[str, str]:
    """What Workplace's dialog sends the admin's browser back to the callback with."""
    location = install_fn(get("workplace/install", {})).headers["Location"]
    dialog = requests.get(location, allow_redirects=False, timeout=10)
    return {k: v[0] for k, v in parse_qs(urlsplit(dialog.headers["Location"]).query).items()}


def test_a_slow_token_endpoint_gets_one_exchange_then_the_admin_a_504_page(
    wp: SimulatedWorkplace,
) -> None:
    back = dialog_answer(wp)
    # Shorter than the deployed 5 s so the test does not wait; the path is the same.
    services.get_services().workplace.exchange_timeout = (0.5, 0.5)
    wp.slow("/oauth/access_token", seconds=60)

    resp = http_fn(get("workplace/callback", back, "callback"))

    assert resp.status_code == 504
    assert resp.mimetype == "text/html"
    assert b"start the install again from /api/workplace/install" in resp.get_body().lower()
    assert len(wp.requests_to("/oauth/access_token")) == 1  # the code was sent once, not retried
    assert services.get_services().installs.all() == []
    # The browser's retry (reload) spends nothing either: the state was single-use.
    assert http_fn(get("workplace/callback", back, "callback")).status_code == 400
    assert len(wp.requests_to("/oauth/access_token")) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_a_failing_token_endpoint_is_not_retried_and_the_admin_gets_a_502_page(
    wp: SimulatedWorkplace, status: int
) -> None:
    back = dialog_answer(wp)
    wp.fail("/oauth/access_token", status=status, times=5)

    resp = http_fn(get("workplace/callback", back, "callback"))

    assert resp.status_code == 502
    assert b"start the install again" in resp.get_body().lower()
    assert [r.status for r in wp.requests_to("/oauth/access_token")] == [status]


def test_the_code_exchange_is_a_post_with_the_secret_in_the_body(
    wp: SimulatedWorkplace, vigil_env: dict[str, str]
) -> None:
    assert http_fn(get("workplace/callback", dialog_answer(wp), "callback")).status_code == 200
    (exchange,) = wp.requests_to("/oauth/access_token")
    # 200: the simulator refuses an exchange with client_secret in the query string.
    assert exchange.method == "POST" and exchange.status == 200
    form = parse_qs(exchange.body.decode())
    assert set(form) == {"client_id", "client_secret", "redirect_uri", "code"}
    assert form["client_secret"] == ["<redacted>"]  # the simulator's record; it was sent


@pytest.mark.parametrize(
    "params",
    [{"code": "abc", "state": "forged"}, {"state": "x"}, {"error": "access_denied", "state": "x"}],
)
def test_a_callback_without_a_valid_state_or_code_exchanges_nothing(
    wp: SimulatedWorkplace, params: dict[str, str]
) -> None:
    resp = http_fn(get("workplace/callback", params, "callback"))
    assert resp.status_code == 400
    assert wp.requests_to("/oauth/access_token") == []
    assert services.get_services().installs.all() == []


def test_webhook_verification_echoes_the_challenge_only_for_the_right_token(svc: Services) -> None:
    ok = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}
    resp = http_fn(get("workplace/webhook", ok, "webhook"))
    assert resp.status_code == 200 and resp.get_body() == b"1158201444"
    bad = {**ok, "hub.verify_token": "guess"}
    assert http_fn(get("workplace/webhook", bad, "webhook")).status_code == 401


def test_signed_webhooks_are_stored_and_unsigned_ones_refused(
    svc: Services, vigil_env: dict[str, str]
) -> None:
    body = envelope(*failed_logins(2))
    assert post_webhook(body, {}).status_code == 401
    assert post_webhook(body, {"X-Hub-Signature-256": "sha256=" + "0" * 64}).status_code == 401
    assert svc.inbox.oldest(10) == []
    resp = post_webhook(body, sign(body, vigil_env["WORKPLACE_APP_SECRET"]))
    assert resp.status_code == 200
    (entry,) = svc.inbox.oldest(10)
    assert entry.body == body


def test_unknown_actions_are_404(svc: Services) -> None:
    assert http_fn(get("workplace/elsewhere", {}, "elsewhere")).status_code == 404


def test_sync_timer_turns_the_inbox_into_activities_and_detection_work(svc: Services) -> None:
    install(svc)
    svc.inbox.put("workplace", envelope(*failed_logins(3)), NOW)
    svc.inbox.put("workplace", b"not json at all", NOW)
    sync_fn(TimerRequest(past_due=False))
    assert svc.inbox.oldest(10) == []
    assert len(list(svc.storage.table(st.ACTIVITIES).list_entities())) == 3
    (quarantined,) = svc.storage.table(st.QUARANTINE).list_entities()
    assert "not JSON" in quarantined["Reason"]
    (msg,) = svc.storage.queue(svc.settings.activity_queue).receive_messages()
    assert len(msg.content) > 0


def test_detect_then_govern_handlers_alert_and_revoke(
    svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(svc)
    svc.inbox.put("workplace", envelope(*failed_logins(12)), NOW)
    sync_fn(TimerRequest(past_due=False))
    activity_q = svc.storage.queue(svc.settings.activity_queue)
    (msg,) = activity_q.receive_messages()
    detect_fn(QueueMessage(id=msg.id, body=msg.content, dequeue_count=1))
    (alert,) = svc.alerts.for_tenant("504942443827307")
    assert alert.event_count == 12
    (gmsg,) = svc.storage.queue(svc.settings.govern_queue).receive_messages()

    with SimulatedGraph(state_dir=tmp_path) as graph:
        graph.add_user(
            SimUser(id="u-alice", user_principal_name="alice@contoso.com", mail="alice@contoso.com")
        )
        use_simulated_graph(monkeypatch, graph)
        govern_fn(QueueMessage(id=gmsg.id, body=gmsg.content, dequeue_count=1))
        (action,) = services.get_services().actions.for_tenant("504942443827307")
        assert action.status == "succeeded" and action.target == "alice@contoso.com"


@pytest.mark.parametrize(
    ("name", "handler"), [("detect_queue", detect_fn), ("govern_queue", govern_fn)]
)
def test_malformed_queue_messages_are_quarantined_not_retried(
    svc: Services, name: str, handler: object
) -> None:
    handler(QueueMessage(id="1", body=b"{not json", dequeue_count=1))  # type: ignore[operator]
    (kept,) = svc.storage.table(st.QUARANTINE).list_entities()
    assert kept["PartitionKey"] == "queue" and kept["Reason"].startswith(f"{name}: ")
    assert kept["Body0"] == b"{not json"


def test_queue_bodies_are_what_the_host_decodes(svc: Services) -> None:
    q = svc.storage.queue(svc.settings.activity_queue)
    q.send_message('{"v": 1}')
    raw = QueueClient.from_connection_string(
        svc.settings.storage_connection or "", svc.settings.activity_queue
    ).receive_messages()
    (m,) = list(raw)
    assert base64.b64decode(m.content) == b'{"v": 1}'


def test_every_http_function_answers_with_nosniff(svc: Services) -> None:
    import alerts_http
    import connect_http as connect_module
    import console_http
    import governance_http
    import investigate_http
    from tests.test_bindings import triggers

    functions = {
        "connect_install": connect_install,
        "connect_status": connect_module.connect_status,
        "sources_status": connect_module.sources_status,
        "connect_http": workplace_callbacks,
        "alerts_http": alerts_http.alerts_http,
        "governance_actions": governance_http.governance_actions,
        "governance_command": governance_http.governance_command,
        "console_page": console_http.console_page,
        "console_asset": console_http.console_asset,
        "me_http": console_http.me_http,
        **{
            name: getattr(investigate_http, name)
            for name in (
                "alert_get",
                "alert_patch",
                "activities_http",
                "user_page",
                "audit_http",
                "openapi_http",
                "suppressions_http",
                "suppression_delete",
                "posture_http",
            )
        },
    }
    http = {name: t for name, t in triggers().items() if t["type"] == "httpTrigger"}
    assert set(functions) == set(http)  # every HTTP function the app has
    for name, function in functions.items():
        req = func.HttpRequest(
            http[name]["methods"][0],
            f"http://127.0.0.1:7071/api/{http[name]['route']}",
            body=b"",
            route_params={"action": "webhook", "id": "missing", "command": "retry"},
        )
        resp = function.build().get_user_function()(req)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", name
        assert resp.headers.get("X-Frame-Options") == "DENY", name
        assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", ""), name


FORGED = "LOGIN_FAILED\nINFO shared.governance: all clear\r\x1b[2K\x1b[31mspoofed\u2028"


def test_a_delivery_cannot_forge_or_split_a_log_line(
    svc: Services, vigil_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    install(svc)  # events of a community without an active install are held, not used
    caplog.set_level(logging.DEBUG)
    changes = [
        ("login", value(FORGED, useragent=FORGED)),
        ("login", value("LOGIN_FAILED", email=f"mallory{FORGED}@contoso.com")),
    ]
    body = envelope(*changes)
    assert post_webhook(body, sign(body, vigil_env["WORKPLACE_APP_SECRET"])).status_code == 200
    sync_fn(TimerRequest(past_due=False))

    # Every log line that carries the delivery's text (the Azure SDK's own lines span several).
    lines = [r.getMessage() for r in caplog.records if "spoofed" in r.getMessage()]
    assert any(repr(FORGED) in line for line in lines)  # logged, quoted
    for line in lines:
        assert not set(line) & set("\n\r\x1b\u2028"), line
