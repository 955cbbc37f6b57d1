"""Notifications against real servers: Azurite, the simulated Graph (sendMail over HTTPS, MSAL)
and the local webhook receiver (Teams and a generic signed webhook) over HTTP.

Each alert once per destination however often its message comes, the signature a receiver can
verify, the severity threshold, the daily cap with its single notice, guardrail alerts always,
a failing destination retried through the queue, and no secret in a log, record or message.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.functions.queue import QueueMessage

import notify_queue
from local.sim_graph import SimulatedGraph, SimUser
from local.sim_webhooks import WebhookReceiver
from shared import storage as st
from shared.config import ConfigError, Settings
from shared.governance import actions as act
from shared.governance.executor import execute
from shared.governance.message import ActionRequest
from shared.models import Alert, Evidence
from shared.notify import render
from shared.notify.delivery import process_message
from shared.notify.requests import NotifyRequest
from shared.services import Services
from tests.conftest import use_simulated_graph

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TENANT = "community1"
VICTIM = "alice@contoso.com"
SENDER = "vigil-notify@contoso.com"
SOC = "soc@contoso.com"
SECRET = "webhook-signing-secret-for-tests"
CONSOLE = "https://vigil.example.net/api/console"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[SimulatedGraph]:
    with SimulatedGraph(state_dir=tmp_path) as sim:
        sim.add_user(SimUser(id=str(uuid.uuid4()), user_principal_name=VICTIM, mail=VICTIM))
        sim.add_user(SimUser(id=str(uuid.uuid4()), user_principal_name=SENDER, mail=SENDER))
        yield sim


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret=SECRET) as r:
        yield r


def notify_env(receiver: WebhookReceiver, **extra: str) -> dict[str, str]:
    return {
        "GOVERNANCE_MAIL_SENDER": SENDER,
        "NOTIFY_EMAIL_TO": SOC,
        "NOTIFY_TEAMS_WEBHOOK_URL": receiver.teams_url,
        "NOTIFY_WEBHOOK_URL": receiver.hooks_url,
        "NOTIFY_WEBHOOK_SECRET": SECRET,
        "VIGIL_CONSOLE_URL": CONSOLE,
        **extra,
    }


def use_env(
    monkeypatch: pytest.MonkeyPatch, graph: SimulatedGraph, env: dict[str, str]
) -> Services:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NOTIFY_QUEUE", f"{env.get('STORAGE_PREFIX', 'x')}-notify")
    return use_simulated_graph(monkeypatch, graph)


@pytest.fixture
def nsvc(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Services:
    return use_env(monkeypatch, graph, {**vigil_env, **notify_env(receiver)})


def stored(
    svc: Services,
    severity: str = "medium",
    *,
    detector: str = "vigil.multiple_failed_logins",
    capped: bool = False,
) -> NotifyRequest:
    alert = Alert(
        id=uuid.uuid4().hex,
        tenant_id=TENANT,
        source="workplace",
        detector_id=detector,
        title="Multiple failed login attempts <b>",
        description=f"14 failed logins for {VICTIM} in 5 minutes.",
        severity=severity,  # type: ignore[arg-type]
        category="CredentialAccess",
        mitre_techniques=("T1110",),
        user_id="100",
        user_email=VICTIM,
        first_activity_time=NOW - timedelta(minutes=4),
        last_activity_time=NOW,
        created_time=NOW,
        evidence=Evidence({"failed_logins": 14, "countries": ["RU"]}, ("e1",)),
        dedup_key=uuid.uuid4().hex,
        capped=capped,
    )
    return NotifyRequest(TENANT, svc.alerts.save(alert))


def deliver(svc: Services, request: NotifyRequest, now: datetime = NOW) -> dict[str, str]:
    return process_message(svc.notifier, request.to_message().encode(), now)


def alert_of(svc: Services, request: NotifyRequest) -> Alert:
    alert = svc.alerts.get(request.tenant_id, request.alert_key)
    assert alert is not None
    return alert


def hooks(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [r.json() for r in receiver.received("hooks", accepted=True)]


def queued(svc: Services) -> int:
    queue = svc.storage.queue(svc.settings.notify_queue)
    return int(queue.get_queue_properties().approximate_message_count or 0)


def test_each_destination_gets_a_new_alert_once_however_often_its_message_comes(
    nsvc: Services, graph: SimulatedGraph, receiver: WebhookReceiver
) -> None:
    request = stored(nsvc)
    alert = alert_of(nsvc, request)
    message = QueueMessage(body=request.to_message().encode())
    for _ in range(3):  # the host redelivers the same message
        notify_queue.notify_queue(message)

    (mail,) = graph.sent_mail
    assert mail["sender"] == SENDER
    assert mail["message"]["toRecipients"] == [{"emailAddress": {"address": SOC}}]
    assert (
        alert.title.replace("<", "&lt;").replace(">", "&gt;") in mail["message"]["body"]["content"]
    )
    assert f"{CONSOLE}#/alert/{alert.id}" in mail["message"]["body"]["content"]

    (teams,) = receiver.received("teams")
    assert teams.status == 200
    card = teams.json()["attachments"][0]["content"]
    texts = [b.get("text") for b in card["body"]]
    assert alert.title in texts and f"User: {VICTIM}" in texts
    facts = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    assert facts["Severity"] == "medium" and facts["failed_logins"] == "14"
    assert card["actions"][0]["url"] == f"{CONSOLE}#/alert/{alert.id}"

    (hook,) = receiver.received("hooks")
    assert hook.status == 204 and hook.signature_valid is True
    assert render.verify(hook.body, hook.headers["X-Vigil-Signature-256"], SECRET)
    assert not render.verify(hook.body, hook.headers["X-Vigil-Signature-256"], "another secret")
    body = hook.json()
    assert body["type"] == "vigil.alert" and body["alert"]["id"] == alert.id
    assert body["alert"]["severity"] == "medium" and body["consoleUrl"].endswith(alert.id)

    records = nsvc.notifier.records.all(TENANT)
    assert sorted((r.destination, r.status, r.attempts) for r in records) == [
        ("email", "sent", 1),
        ("teams", "sent", 1),
        ("webhook", "sent", 1),
    ]


def test_a_wrong_secret_is_refused_by_the_receiver_and_recorded_failed(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**vigil_env, **notify_env(receiver, NOTIFY_WEBHOOK_SECRET="not-the-one")}
    svc = use_env(monkeypatch, graph, env)
    outcome = deliver(svc, stored(svc))
    assert outcome["webhook"] == "failed"  # 401 is not retried
    (hook,) = receiver.received("hooks")
    assert (hook.status, hook.signature_valid) == (401, False)


def test_only_alerts_at_or_above_the_minimum_severity_are_notified(
    nsvc: Services, receiver: WebhookReceiver
) -> None:
    low, high = stored(nsvc, "low"), stored(nsvc, "high")
    over_limit = stored(nsvc, "high", capped=True)  # over its policy's daily alert limit
    assert deliver(nsvc, low) == dict.fromkeys(("email", "teams", "webhook"), "below_threshold")
    assert deliver(nsvc, over_limit)["webhook"] == "below_threshold"
    assert deliver(nsvc, high)["webhook"] == "sent"
    assert [h["alert"]["severity"] for h in hooks(receiver)] == ["high"]
    # Detection does not even queue what no destination wants (and no SIEM is set).
    nsvc.notify_alert(alert_of(nsvc, low))
    assert queued(nsvc) == 0
    nsvc.notify_alert(alert_of(nsvc, high))
    assert queued(nsvc) == 1


def test_the_minimum_severity_is_a_setting(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**vigil_env, **notify_env(receiver, NOTIFY_MIN_SEVERITY="low")}
    svc = use_env(monkeypatch, graph, env)
    assert deliver(svc, stored(svc, "low"))["teams"] == "sent"
    assert deliver(svc, stored(svc, "informational"))["teams"] == "below_threshold"


def test_the_daily_cap_ends_with_one_notice_and_guardrail_alerts_pass_it(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**vigil_env, **notify_env(receiver, NOTIFY_DAILY_CAP="2")}
    svc = use_env(monkeypatch, graph, env)
    requests = [stored(svc) for _ in range(5)]
    outcomes = [deliver(svc, r)["webhook"] for r in requests]
    assert outcomes == ["sent", "sent", "sent", "over_cap", "over_cap"]
    for r in requests:  # redelivered: nothing more, the notice included
        deliver(svc, r)
    bodies = hooks(receiver)
    assert [b["type"] for b in bodies] == ["vigil.alert", "vigil.alert", "vigil.notify.cap_reached"]
    assert bodies[2]["cap"] == 2 and bodies[2]["day"] == NOW.date().isoformat()
    (notice,) = [r for r in receiver.received("teams") if "cap reached" in r.body.decode()]
    assert len(receiver.received("teams")) == 3
    assert len(graph.sent_mail) == 3 and "cap reached" in graph.sent_mail[2]["message"]["subject"]

    guardrail = stored(svc, "low", detector="vigil.governance.circuit_breaker")
    assert deliver(svc, guardrail) == dict.fromkeys(("email", "teams", "webhook"), "sent")
    assert hooks(receiver)[-1]["alert"]["detectorId"] == "vigil.governance.circuit_breaker"

    # The cap counts UTC days of sending: the next day starts afresh.
    assert deliver(svc, stored(svc), NOW + timedelta(days=1))["webhook"] == "sent"


def test_a_protected_account_guardrail_alert_is_queued_and_notified_whatever_its_severity(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        **vigil_env,
        **notify_env(receiver, NOTIFY_MIN_SEVERITY="high", NOTIFY_DAILY_CAP="1"),
        "GOVERNANCE_PROTECTED_ACCOUNTS": VICTIM,
    }
    svc = use_env(monkeypatch, graph, env)
    assert deliver(svc, stored(svc, "high"))["teams"] == "sent"  # the day's cap is used up
    alert_key = stored(svc).alert_key
    record = execute(ActionRequest(TENANT, alert_key, act.REVOKE_SESSIONS), svc.governance, NOW)
    assert (record.status, record.error_code) == ("skipped", "protected_account")
    queue = svc.storage.queue(svc.settings.notify_queue)
    (message,) = queue.receive_messages()
    outcome = process_message(svc.notifier, message.content, NOW)
    assert outcome == dict.fromkeys(("email", "teams", "webhook"), "sent")
    last = hooks(receiver)[-1]["alert"]
    assert last["detectorId"] == "vigil.governance.protected_account"


def test_a_failing_destination_is_retried_through_the_queue_then_sent_once(
    nsvc: Services, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    request = stored(nsvc)
    receiver.fail(500)
    caplog.set_level(logging.INFO)
    assert deliver(nsvc, request) == {"email": "sent", "teams": "retrying", "webhook": "sent"}
    assert queued(nsvc) == 1  # the Teams work alone, back on the queue with a delay
    (teams,) = [r for r in nsvc.notifier.records.all(TENANT) if r.destination == "teams"]
    assert (teams.status, teams.attempts, teams.error) == (
        "pending",
        1,
        "http_500: the Teams webhook answered HTTP 500",
    )
    retry = replace(request, destination="teams")  # what was queued
    assert deliver(nsvc, retry, NOW + timedelta(seconds=5)) == {"teams": "sent"}
    assert deliver(nsvc, retry, NOW + timedelta(seconds=9)) == {"teams": "sent"}
    assert [r.status for r in receiver.received("teams")] == [500, 200]
    assert len(receiver.received("hooks")) == 1


def test_retry_after_is_honoured_and_attempts_are_bounded(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = {**vigil_env, **notify_env(receiver, NOTIFY_MAX_ATTEMPTS="2")}
    svc = use_env(monkeypatch, graph, env)
    request = replace(stored(svc), destination="webhook")
    receiver.fail(429, times=2, retry_after="120")
    caplog.set_level(logging.WARNING)
    assert deliver(svc, request) == {"webhook": "retrying"}
    assert "retrying in 120 s" in caplog.text
    assert deliver(svc, request, NOW + timedelta(minutes=3)) == {"webhook": "failed"}
    (record,) = svc.notifier.records.all(TENANT)
    assert record.status == "failed" and record.attempts == 2
    assert record.error.startswith("gave up after 2 attempts (NOTIFY_MAX_ATTEMPTS)")
    assert deliver(svc, request, NOW + timedelta(minutes=9)) == {"webhook": "failed"}
    assert len(receiver.received("hooks")) == 2


def test_a_mail_whose_answer_was_lost_is_looked_up_in_sent_items_not_sent_twice(
    nsvc: Services, graph: SimulatedGraph
) -> None:
    request = replace(stored(nsvc), destination="email")
    assert deliver(nsvc, request) == {"email": "sent"}
    # As if the host had died after sendMail and before the record was saved.
    found = nsvc.notifier.records.read(TENANT, alert_of(nsvc, request).id, "email")
    assert found is not None
    record, etag = found
    nsvc.notifier.records.save(
        record.evolve(status="sending", intent_at=NOW, lease_until=NOW + timedelta(minutes=10)),
        etag,
    )
    assert deliver(nsvc, request, NOW + timedelta(minutes=1)) == {"email": "retrying"}  # leased
    assert deliver(nsvc, request, NOW + timedelta(minutes=11)) == {"email": "sent"}
    assert len(graph.sent_mail) == 1


def test_no_secret_reaches_a_log_or_a_record(
    nsvc: Services, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.fail(503, times=2)
    request = stored(nsvc)
    deliver(nsvc, request)
    deliver(nsvc, replace(request, destination="teams"), NOW + timedelta(minutes=1))
    deliver(nsvc, replace(request, destination="webhook"), NOW + timedelta(minutes=2))
    assert [r.status for r in receiver.received()] == [503, 503, 200, 204]
    secrets = (receiver.teams_path, receiver.hooks_path, SECRET)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "urllib3" in {r.name.split(".")[0] for r in caplog.records}  # it did log requests
    stored_rows = json.dumps(
        list(nsvc.storage.table(st.NOTIFICATIONS).list_entities()), default=str
    )
    assert "<redacted>" in logged  # urllib3's request lines name the path: redacted
    for secret in secrets:
        assert secret not in logged
        assert secret not in stored_rows


def test_webhook_urls_must_be_https_or_loopback_and_errors_never_show_them() -> None:
    leaky = "http://hooks.example.com/webhookb2/very-secret-path"
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"NOTIFY_TEAMS_WEBHOOK_URL": leaky})
    assert "NOTIFY_TEAMS_WEBHOOK_URL" in str(refused.value)
    assert "very-secret-path" not in str(refused.value)
    ok = Settings.from_env(
        {
            "NOTIFY_WEBHOOK_URL": "http://127.0.0.1:9/x",
            "NOTIFY_WEBHOOK_SECRET": "s",
            "NOTIFY_TEAMS_WEBHOOK_URL": "https://contoso.webhook.office.com/x",
            "WEBSITE_HOSTNAME": "vigil-app.azurewebsites.net",
        }
    )
    assert ok.destinations == ("teams", "webhook")
    assert ok.console_url == "https://vigil-app.azurewebsites.net/api/console"
    with pytest.raises(ConfigError, match="NOTIFY_MIN_SEVERITY"):
        Settings.from_env({"NOTIFY_MIN_SEVERITY": "urgent"})
    half = Settings.from_env({"LOG_ANALYTICS_DCE_ENDPOINT": "https://dce.example.net"})
    with pytest.raises(ConfigError, match="LOG_ANALYTICS_DCR_ID"):
        assert half.siem_enabled


def test_detection_queues_one_notification_per_new_alert_even_when_its_batch_comes_again(
    nsvc: Services,
) -> None:
    import detect_queue
    from tests.detect_samples import T0, act

    failures = [
        act("login_failed", at=T0 + timedelta(seconds=20 * i), ip=f"203.0.113.{i}")
        for i in range(14)
    ]
    (batch,) = nsvc.activities.write(failures)
    message = QueueMessage(body=batch.to_message().encode())
    detect_queue.detect_queue(message)
    detect_queue.detect_queue(message)  # redelivered: the same alert, nothing new to notify
    (alert,) = nsvc.alerts.for_tenant(failures[0].tenant_id)
    queue = nsvc.storage.queue(nsvc.settings.notify_queue)
    (notice,) = queue.receive_messages()
    assert NotifyRequest.from_message(notice.content).alert_key.endswith(alert.id)
    assert list(queue.receive_messages()) == []


def test_a_webhook_without_its_secret_is_never_sent_unsigned(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**vigil_env, **notify_env(receiver)}
    del env["NOTIFY_WEBHOOK_SECRET"]
    monkeypatch.delenv("NOTIFY_WEBHOOK_SECRET", raising=False)
    svc = use_env(monkeypatch, graph, env)
    assert deliver(svc, stored(svc))["webhook"] == "failed"
    assert receiver.received("hooks") == []
    (record,) = [r for r in svc.notifier.records.all(TENANT) if r.destination == "webhook"]
    assert record.error.startswith("not_configured: NOTIFY_WEBHOOK_SECRET is not set")
