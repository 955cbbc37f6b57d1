"""Each function handler called the way the host calls it, on Azurite and the simulators."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest
import requests
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient

from connect_http import connect_http, connect_install
from detect_queue import detect_queue
from govern_queue import govern_queue
from local.sim_graph import SimulatedGraph, SimUser
from local.sim_workplace import SimulatedWorkplace
from shared import services
from shared import storage as st
from shared.services import Services
from sync_timer import sync_timer
from tests.conftest import use_simulated_graph
from tests.samples import envelope, failed_logins, install, sign

install_fn = connect_install.build().get_user_function()
http_fn = connect_http.build().get_user_function()
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


@pytest.mark.parametrize("handler", [detect_fn, govern_fn])
def test_malformed_queue_messages_raise_so_the_host_retries_then_poisons(
    svc: Services, handler: object
) -> None:
    with pytest.raises(ValueError):
        handler(QueueMessage(id="1", body=b"{not json", dequeue_count=1))  # type: ignore[operator]


def test_queue_bodies_are_what_the_host_decodes(svc: Services) -> None:
    q = svc.storage.queue(svc.settings.activity_queue)
    q.send_message('{"v": 1}')
    raw = QueueClient.from_connection_string(
        svc.settings.storage_connection or "", svc.settings.activity_queue
    ).receive_messages()
    (m,) = list(raw)
    assert base64.b64decode(m.content) == b'{"v": 1}'
