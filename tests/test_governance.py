"""Governance against the simulated Graph over HTTPS, with MSAL's real client-credentials flow.

Every Entra action, every fault class, idempotency under redelivery, identity matching and the
token sources. Guardrails and the HTTP log: test_governance_guardrails.py; Workplace actions:
test_governance_workplace.py.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.functions.queue import QueueMessage  # the worker's concrete message type

import govern_queue
from local.sim_graph import SimulatedGraph, SimUser
from local.stack import graph_settings
from shared import services
from shared.governance import actions as act
from shared.governance.attempt import RetryLater
from shared.governance.dependencies import Governance
from shared.governance.executor import execute
from shared.governance.message import ActionRequest
from shared.governance.queue_runner import process_message
from shared.models import Alert, Evidence, GovernanceAction
from shared.services import Services

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TENANT = "community1"
VICTIM = "alice@contoso.com"
VICTIM_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, VICTIM))
BOB_MAIL = "bob@contoso.com"
BOB_UPN = "bob.smith@contoso.onmicrosoft.com"
SENDER = "vigil-notify@contoso.com"
ENTRA_ACTIONS = (act.NOTIFY_USER, act.REVOKE_SESSIONS, act.SUSPEND_USER, act.CONFIRM_COMPROMISED)


def graph_env(graph: SimulatedGraph, **extra: str) -> dict[str, str]:
    return {
        **graph_settings(graph),
        "GOVERNANCE_MAIL_SENDER": SENDER,
        **extra,
    }


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Services:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    services.reset()
    return services.get_services()


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[SimulatedGraph]:
    with SimulatedGraph(state_dir=tmp_path) as sim:
        sim.add_user(SimUser(id=VICTIM_ID, user_principal_name=VICTIM, mail=VICTIM))
        sim.add_user(SimUser(id=str(uuid.uuid4()), user_principal_name=BOB_UPN, mail=BOB_MAIL))
        sim.add_user(SimUser(id=str(uuid.uuid4()), user_principal_name=SENDER, mail=SENDER))
        yield sim


@pytest.fixture
def gsvc(
    vigil_env: dict[str, str], graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> Services:
    return use_env(monkeypatch, graph_env(graph))


def stored_alert(
    svc: Services,
    user: str = VICTIM,
    action: str = act.REVOKE_SESSIONS,
    *,
    at: datetime = NOW,
    user_id: str = "100",
    approval: bool = False,
) -> ActionRequest:
    alert = Alert(
        id=uuid.uuid4().hex,
        tenant_id=TENANT,
        source="workplace",
        detector_id="vigil.multiple_failed_logins",
        title="Multiple failed login attempts",
        description=f"14 failed logins for {user} in 5 minutes from 2 IP addresses in RU.",
        severity="medium",
        category="CredentialAccess",
        mitre_techniques=("T1110",),
        user_id=user_id,
        user_email=user,
        first_activity_time=at - timedelta(minutes=4),
        last_activity_time=at,
        created_time=at,
        evidence=Evidence(
            {"failed_logins": 14, "ips": ["203.0.113.7"], "countries": ["RU"]}, ("e1",)
        ),
        dedup_key=uuid.uuid4().hex,
        actions=(action,),
    )
    return ActionRequest(TENANT, svc.alerts.save(alert), action, "failed-logins", approval)


def governance(svc: Services, mode: str = "enforce", **policy: Any) -> Governance:
    gov = svc.governance
    changed = replace(gov.policy, mode=mode, **policy)  # type: ignore[arg-type]
    return replace(gov, policy=changed, rng=random.Random(7))


def run(
    svc: Services, request: ActionRequest, mode: str = "enforce", now: datetime = NOW
) -> GovernanceAction:
    return execute(request, governance(svc, mode), now)


def record_of(svc: Services, request: ActionRequest) -> GovernanceAction:
    alert = svc.alerts.get(request.tenant_id, request.alert_key)
    assert alert is not None
    target = alert.user_id if request.action in act.WORKPLACE_ACTIONS else alert.user_email
    found = svc.actions.get(TENANT, GovernanceAction.make_id(alert.id, request.action, target))
    assert found is not None
    return found


def writes(graph: SimulatedGraph) -> list[str]:
    """Every state-changing Graph request (batch items included), as 'METHOD path'."""
    return [
        f"{r.method} {r.path}"
        for r in graph.graph_requests()
        if r.method in ("POST", "PATCH") and not r.path.endswith("$batch")
    ]


def revokes(graph: SimulatedGraph) -> list[str]:
    return [r.path for r in graph.graph_requests() if r.path.endswith("/revokeSignInSessions")]


# ---------------------------------------------------------------- the actions


def test_enforce_revokes_sessions_once_and_records_the_request_id(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(gsvc)
    record = run(gsvc, request)
    assert record.status == "succeeded" and record.attempts == 1 and record.request_id
    assert record.target_object_id == VICTIM_ID and record.mode == "enforce"
    assert record.completed_at == NOW and record.policy_id == "failed-logins"
    assert revokes(graph) == [f"/v1.0/users/{VICTIM}/revokeSignInSessions"]
    (call,) = [r for r in graph.graph_requests() if r.path.endswith("revokeSignInSessions")]
    assert call.headers["authorization"].startswith("Bearer")
    assert call.headers["x-ms-throttle-priority"] == "high"
    assert graph.find_user(VICTIM).sign_in_sessions_valid_from is not None  # type: ignore[union-attr]
    again = run(gsvc, request)  # a redelivered message
    assert again == record and len(revokes(graph)) == 1
    assert gsvc.actions.get(TENANT, record.id) == record


def test_the_app_token_comes_from_the_token_endpoint_once(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    run(gsvc, stored_alert(gsvc))
    run(gsvc, stored_alert(gsvc))
    assert graph.token_requests == 1 and len(revokes(graph)) == 2


def test_notify_sends_one_mail_from_the_sender_that_says_what_was_seen_and_what_to_do(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(gsvc, action=act.NOTIFY_USER)
    record = run(gsvc, request)
    assert record.status == "succeeded" and record.request_id
    (mail,) = graph.sent_mail
    assert mail["sender"] == SENDER and mail["saveToSentItems"] is True
    message = mail["message"]
    assert message["internetMessageId"] == f"<vigil.{record.id}@contoso.com>"
    (kept,) = graph.sent_items(SENDER)  # where a later attempt looks before sending again
    assert kept["internetMessageId"] == message["internetMessageId"]
    assert message["toRecipients"] == [{"emailAddress": {"address": VICTIM}}]
    assert "Multiple failed login attempts" in message["subject"]
    html = message["body"]["content"]
    assert message["body"]["contentType"] == "HTML"
    assert "14 failed logins" in html and "RU" in html and "203.0.113.7" in html
    assert "change your password" in html and record.alert_id in html
    (call,) = [r for r in graph.graph_requests() if r.path.endswith("/sendMail")]
    assert call.path == f"/v1.0/users/{SENDER}/sendMail"
    assert call.headers["content-type"].startswith("application/json")
    assert run(gsvc, request) == record and len(graph.sent_mail) == 1  # redelivery: no 2nd mail


def test_notify_escapes_what_it_quotes(gsvc: Services, graph: SimulatedGraph) -> None:
    request = stored_alert(gsvc, action=act.NOTIFY_USER)
    alert = gsvc.alerts.get(TENANT, request.alert_key)
    assert alert is not None
    gsvc.alerts.save(replace(alert, description="<script>alert(1)</script>"))
    assert run(gsvc, request).status == "succeeded"
    html = graph.sent_mail[0]["message"]["body"]["content"]
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_notify_without_a_sender_fails_naming_the_setting(
    vigil_env: dict[str, str], graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOVERNANCE_MAIL_SENDER", raising=False)
    env = graph_env(graph)
    del env["GOVERNANCE_MAIL_SENDER"]
    svc = use_env(monkeypatch, env)
    record = run(svc, stored_alert(svc, action=act.NOTIFY_USER))
    assert record.status == "failed" and record.error_code == "not_configured"
    assert "GOVERNANCE_MAIL_SENDER" in record.error_message and graph.sent_mail == []


def test_suspend_disables_then_revokes_in_one_batch_and_can_be_reverted(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(gsvc, action=act.SUSPEND_USER)
    record = run(gsvc, request)
    assert record.status == "succeeded"
    (batch,) = [r for r in graph.graph_requests() if r.path == "/v1.0/$batch"]
    items = {i["id"]: i for i in batch.json["requests"]}
    assert items["disable"]["method"] == "PATCH" and items["disable"]["body"] == {
        "accountEnabled": False
    }
    assert items["disable"]["headers"]["Content-Type"] == "application/json"
    assert items["revoke"]["dependsOn"] == ["disable"]
    assert items["revoke"]["url"] == f"/users/{VICTIM}/revokeSignInSessions"
    user = graph.find_user(VICTIM)
    assert user is not None and not user.account_enabled and user.sign_in_sessions_valid_from
    assert run(gsvc, request) == record and len(writes(graph)) == 2  # redelivery: nothing new

    from shared.governance.commands import Refused, revert

    reverted = revert(governance(gsvc), record.id, "analyst@contoso.com", NOW)
    assert reverted.status == "reverted" and reverted.reverted_by == "analyst@contoso.com"
    assert user.account_enabled
    assert writes(graph)[-1] == f"PATCH /v1.0/users/{VICTIM_ID}"
    with pytest.raises(Refused) as refused:
        revert(governance(gsvc), record.id, "analyst@contoso.com", NOW)
    assert refused.value.status == 409


def test_suspend_retries_only_the_revoke_when_the_disable_went_through(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", 429, headers={"Retry-After": "7"})
    request = stored_alert(gsvc, action=act.SUSPEND_USER)
    with pytest.raises(RetryLater) as later:
        run(gsvc, request)
    assert later.value.delay == 7
    pending = record_of(gsvc, request)
    assert pending.status == "pending" and pending.progress == "disabled"
    assert pending.error_code == "revoke:TooManyRequests"
    assert not graph.find_user(VICTIM).account_enabled  # type: ignore[union-attr]
    graph.clear_requests()
    record = run(gsvc, request)
    assert record.status == "succeeded" and record.attempts == 2
    assert writes(graph) == [f"POST /v1.0/users/{VICTIM}/revokeSignInSessions"]  # no 2nd PATCH


def test_suspend_fails_fast_when_the_disable_is_refused_and_the_revoke_never_runs(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("PATCH", f"/users/{VICTIM}$", 403)
    record = run(gsvc, stored_alert(gsvc, action=act.SUSPEND_USER))
    assert record.status == "failed" and record.error_code == "disable:Authorization_RequestDenied"
    assert "403" in record.error_message and record.request_id
    assert [r.status for r in graph.graph_requests() if r.via_batch] == [403, 424]
    assert graph.find_user(VICTIM).sign_in_sessions_valid_from is None  # type: ignore[union-attr]


def test_suspend_of_an_on_premises_synced_user_is_refused(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.add_user(
        SimUser(
            id=str(uuid.uuid4()),
            user_principal_name="onprem@contoso.com",
            mail="onprem@contoso.com",
            on_premises_sync_enabled=True,
        )
    )
    record = run(gsvc, stored_alert(gsvc, "onprem@contoso.com", act.SUSPEND_USER))
    assert record.status == "failed" and record.error_code == "unsupported_on_premises_synced"
    assert writes(graph) == []


def test_confirm_compromised_batches_waiting_users_at_one_request_per_second(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.limit_identity_protection(1.0)
    gov = governance(gsvc)
    first = stored_alert(gsvc, VICTIM, act.CONFIRM_COMPROMISED)
    second = stored_alert(gsvc, BOB_MAIL, act.CONFIRM_COMPROMISED)
    assert gov.risk_slots.acquire(TENANT, NOW) == 0  # another call just used this second
    with pytest.raises(RetryLater) as later:
        execute(first, gov, NOW + timedelta(milliseconds=200))
    assert later.value.delay == 1
    waiting = record_of(gsvc, first)
    assert waiting.status == "pending" and waiting.attempts == 0
    assert waiting.target_object_id == VICTIM_ID
    record = execute(second, gov, NOW + timedelta(seconds=1))
    assert record.status == "succeeded"
    (call,) = [r for r in graph.graph_requests() if r.path.endswith("/confirmCompromised")]
    bob = graph.find_user(BOB_UPN)
    assert bob is not None and set(call.json["userIds"]) == {VICTIM_ID, bob.id}
    assert graph.find_user(VICTIM).risk_state == "confirmedCompromised"  # type: ignore[union-attr]
    assert bob.risk_state == "confirmedCompromised"
    batched = execute(first, gov, NOW + timedelta(seconds=3))  # its own redelivery
    assert batched.status == "succeeded" and batched.detail == f"batched with action {record.id}"
    assert len([r for r in graph.graph_requests() if r.path.endswith("/confirmCompromised")]) == 1


def test_confirm_compromised_backs_off_at_least_a_second_on_a_429_without_retry_after(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "confirmCompromised", 429)
    request = stored_alert(gsvc, action=act.CONFIRM_COMPROMISED)
    with pytest.raises(RetryLater) as later:
        run(gsvc, request)
    assert 1 <= later.value.delay <= 2  # exponential from 2 s, full jitter, floor 1 s
    record = run(gsvc, request, now=NOW + timedelta(seconds=2))
    assert record.status == "succeeded" and record.attempts == 2


def test_confirm_compromised_is_reverted_by_dismissing_the_risk(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    from shared.governance.commands import revert

    record = run(gsvc, stored_alert(gsvc, action=act.CONFIRM_COMPROMISED))
    assert record.status == "succeeded"
    done = revert(governance(gsvc), record.id, "analyst", NOW + timedelta(seconds=5))
    assert done.status == "reverted"
    (call,) = [r for r in graph.graph_requests() if r.path.endswith("/dismiss")]
    assert call.json == {"userIds": [VICTIM_ID]}
    assert graph.find_user(VICTIM).risk_state == "dismissed"  # type: ignore[union-attr]


def test_revoked_sessions_cannot_be_reverted(gsvc: Services, graph: SimulatedGraph) -> None:
    from shared.governance.commands import Refused, revert

    record = run(gsvc, stored_alert(gsvc))
    with pytest.raises(Refused, match="cannot be undone"):
        revert(governance(gsvc), record.id, "analyst", NOW)


# ---------------------------------------------------------------- identity


def test_a_workplace_email_matches_an_entra_user_by_mail_when_the_upn_differs_and_is_cached(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    first = run(gsvc, stored_alert(gsvc, BOB_MAIL))
    bob = graph.find_user(BOB_UPN)
    assert bob is not None and first.status == "succeeded" and first.target_object_id == bob.id
    assert first.target == BOB_MAIL
    assert revokes(graph) == [f"/v1.0/users/{BOB_UPN}/revokeSignInSessions"]
    lookups = [r for r in graph.graph_requests() if r.method == "GET"]
    assert [r.path for r in lookups] == [f"/v1.0/users/{BOB_MAIL}", "/v1.0/users"]
    assert lookups[1].query["$filter"] == f"mail eq '{BOB_MAIL}'"
    assert run(gsvc, stored_alert(gsvc, BOB_MAIL)).status == "succeeded"
    assert len([r for r in graph.graph_requests() if r.method == "GET"]) == 2  # cached


def test_no_entra_match_is_a_failed_action_that_says_so(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(gsvc, user="nobody@contoso.com")
    record = run(gsvc, request)
    assert record.status == "failed" and record.error_code == "entra_user_not_found"
    assert (
        "nobody@contoso.com" in record.error_message and "no Entra ID user" in record.error_message
    )
    assert writes(graph) == []
    assert run(gsvc, request).attempts == 1


def test_a_certificate_credential_gets_the_token_with_a_signed_assertion(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rsa = trustme.KeyType.RSA
    cert = trustme.CA(key_type=rsa).issue_cert("vigil-app", key_type=rsa)
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes())
    graph.add_client_certificate(cert.cert_chain_pems[0].bytes())
    monkeypatch.delenv("GRAPH_CLIENT_SECRET", raising=False)
    env = graph_env(graph, GRAPH_CLIENT_CERTIFICATE_PATH=str(pem))
    del env["GRAPH_CLIENT_SECRET"]
    svc = use_env(monkeypatch, env)
    assert run(svc, stored_alert(svc)).status == "succeeded"
    (token_call,) = [r for r in graph.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert token_call.form is not None and "client_assertion" in token_call.form
    assert "client_secret" not in token_call.form


def test_a_managed_identity_gets_the_token_through_azure_identity(
    vigil_env: dict[str, str], graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", graph.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", graph.identity_header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_path))  # azure-core's transport
    monkeypatch.delenv("GRAPH_CLIENT_SECRET", raising=False)
    env = graph_env(graph, GRAPH_AUTH="managed-identity")
    for name in ("GRAPH_CLIENT_SECRET", "GRAPH_CLIENT_ID", "GRAPH_TENANT_ID"):
        del env[name]
    svc = use_env(monkeypatch, env)
    assert run(svc, stored_alert(svc)).status == "succeeded"
    (token_call,) = [r for r in graph.requests if r.path == "/msi/token"]
    assert token_call.query["resource"].startswith("https://graph.microsoft.com")
    assert [r.path for r in graph.requests if "oauth2" in r.path] == []


def test_a_wrong_client_secret_fails_without_leaking_it(
    vigil_env: dict[str, str], graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = use_env(monkeypatch, graph_env(graph, GRAPH_CLIENT_SECRET="definitely-wrong-secret"))
    record = run(svc, stored_alert(svc))
    assert record.status == "failed" and record.error_code == "invalid_client"
    assert "definitely-wrong-secret" not in repr(record)
    assert revokes(graph) == []


# ---------------------------------------------------------------- faults


def test_throttling_returns_the_work_to_the_queue_after_retry_after_then_succeeds(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", 429, headers={"Retry-After": "3"})
    request = stored_alert(gsvc)
    with pytest.raises(RetryLater) as later:
        run(gsvc, request)
    assert later.value.delay == 3
    pending = record_of(gsvc, request)
    assert pending.status == "pending" and pending.attempts == 1
    assert pending.error_code == "TooManyRequests" and pending.request_id
    assert pending.error_date  # Graph's innerError date, for support cases
    record = run(gsvc, request)
    assert record.status == "succeeded" and record.attempts == 2 and record.error_code == ""


@pytest.mark.parametrize("status", [429, 503, 504])
def test_without_retry_after_the_delay_backs_off_exponentially(
    gsvc: Services, graph: SimulatedGraph, status: int
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", status, times=3)
    request = stored_alert(gsvc)
    delays = []
    for _ in range(3):
        with pytest.raises(RetryLater) as later:
            run(gsvc, request)
        delays.append(later.value.delay)
    assert 1 <= delays[0] <= 2 and 1 <= delays[1] <= 4 and 1 <= delays[2] <= 8
    assert record_of(gsvc, request).attempts == 3
    assert run(gsvc, request).status == "succeeded"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "InvalidAuthenticationToken"),
        (403, "Authorization_RequestDenied"),
        (404, "Request_ResourceNotFound"),
    ],
)
def test_401_403_404_fail_fast_with_the_reason(
    gsvc: Services, graph: SimulatedGraph, status: int, code: str
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", status, times=5)
    request = stored_alert(gsvc)
    record = run(gsvc, request)
    assert record.status == "failed" and record.attempts == 1
    assert record.error_code == code and str(status) in record.error_message
    assert record.request_id and record.completed_at == NOW
    assert run(gsvc, request) == record and graph.pending_faults == 4  # no second call


def test_an_action_that_stays_throttled_fails_after_the_attempt_budget(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", 503, times=10)
    request = stored_alert(gsvc)
    gov = governance(gsvc, max_attempts=3)
    for _ in range(2):
        with pytest.raises(RetryLater):
            execute(request, gov, NOW)
    record = execute(request, gov, NOW)
    assert record.status == "failed" and record.attempts == 3
    assert "gave up after 3 attempts" in record.error_message


def test_the_queue_handler_requeues_throttled_work_with_a_visibility_delay(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", 429, headers={"Retry-After": "120"})
    request = stored_alert(gsvc)
    handler = govern_queue.govern_queue.build().get_user_function()
    msg = QueueMessage(id="m1", body=request.to_message().encode(), dequeue_count=1)
    handler(msg)  # completes: the retry is a new, delayed message, not a failed delivery
    queue = gsvc.storage.queue(gsvc.settings.govern_queue)
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.receive_messages()) == []  # invisible for 120 s
    assert record_of(gsvc, request).status == "pending"


def test_a_message_that_keeps_failing_is_recorded_as_going_to_the_poison_queue(
    gsvc: Services, graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = stored_alert(gsvc)
    monkeypatch.delenv("GRAPH_TENANT_ID")  # every delivery now fails: Graph is not configured
    services.reset()
    svc = services.get_services()
    handler = govern_queue.govern_queue.build().get_user_function()
    for count in range(1, 6):
        msg = QueueMessage(id="m1", body=request.to_message().encode(), dequeue_count=count)
        with pytest.raises(Exception, match="GRAPH_TENANT_ID is not set"):
            handler(msg)
        status = record_of(svc, request).status
        assert status == ("failed" if count == 5 else "pending")
    record = record_of(svc, request)
    assert record.error_code == "poisoned" and record.attempts == 5
    assert f"{svc.settings.govern_queue}-poison after 5 deliveries" in record.error_message
    assert "GRAPH_TENANT_ID" in record.error_message


def test_a_malformed_message_raises_for_the_poison_queue(gsvc: Services) -> None:
    with pytest.raises(ValueError, match="governance message must be"):
        process_message(
            gsvc.governance,
            b'{"not": "a request"}',
            dequeue_count=5,
            max_dequeue_count=5,
            queue_name="govern",
            now=NOW,
        )
    with pytest.raises(ValueError, match="unknown governance action 'delete_user'"):
        run(gsvc, replace(stored_alert(gsvc), action="delete_user"))


# ---------------------------------------------------------------- idempotency


@pytest.mark.parametrize("action", ENTRA_ACTIONS)
def test_every_action_acts_once_under_redelivery(
    gsvc: Services, graph: SimulatedGraph, action: str
) -> None:
    request = stored_alert(gsvc, action=action)
    first = run(gsvc, request)
    before = writes(graph)
    assert first.status == "succeeded" and before
    for _ in range(3):
        assert run(gsvc, request, now=NOW + timedelta(seconds=5)) == first
    assert writes(graph) == before


def test_two_deliveries_at_once_act_once(gsvc: Services, graph: SimulatedGraph) -> None:
    request = stored_alert(gsvc, action=act.NOTIFY_USER)
    gov = governance(gsvc)
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def deliver() -> None:
        start.wait()
        try:
            outcomes.append(execute(request, gov, NOW).status)
        except RetryLater:
            outcomes.append("retry")

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(graph.sent_mail) == 1 and "succeeded" in outcomes
    assert record_of(gsvc, request).status == "succeeded"


@pytest.mark.parametrize("mode", ["dry-run", "off"])
@pytest.mark.parametrize("action", act.ACTIONS)
def test_dry_run_and_off_send_nothing_and_say_so(
    gsvc: Services, graph: SimulatedGraph, mode: str, action: str
) -> None:
    record = run(gsvc, stored_alert(gsvc, action=action), mode)
    assert record.status == "skipped" and record.mode == mode
    assert ("would POST" in record.error_message) == (mode == "dry-run")
    assert record.detail.startswith("POST ")
    assert graph.graph_requests() == [] and graph.token_requests == 0
