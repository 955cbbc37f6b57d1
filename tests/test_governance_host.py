"""Governance through the local functions host: real queues (delays, poison) and HTTP with keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import requests

from local.stack import Stack, local_stack
from shared.governance import actions as act
from shared.services import get_services
from tests.test_governance import record_of, stored_alert

FAST = {
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
    "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
}


@pytest.fixture
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    with local_stack(port=None, triggers=False, extra_env=FAST) as s:
        yield s


def test_a_message_that_keeps_failing_ends_in_the_poison_queue_and_its_record_says_so(
    azurite_connection_string: str,
) -> None:
    broken = {**FAST, "GRAPH_CLIENT_CERTIFICATE_PATH": "/nonexistent/vigil-app.pem"}
    with local_stack(port=None, triggers=False, extra_env=broken) as stack:
        svc = get_services()
        request = stored_alert(svc, "adele.vance@contoso.com")
        svc.enqueue_action(request)
        deliveries = 0
        while stack.host.process_queue_once("govern_queue"):
            deliveries += 1
        assert deliveries == 2  # maxDequeueCount
        poison = svc.storage.queue(f"{svc.settings.govern_queue}-poison")
        (msg,) = poison.receive_messages()
        assert b'"revoke_sessions"' in msg.content
        record = record_of(svc, request)
        assert (record.status, record.error_code, record.attempts) == ("failed", "poisoned", 2)
        assert f"{svc.settings.govern_queue}-poison after 2 deliveries" in record.error_message
        assert "GRAPH_CLIENT_CERTIFICATE_PATH" in record.error_message
        assert stack.graph.graph_requests() == []


def _drain_until(stack: Stack, done: Callable[[], bool], deadline_s: float = 15) -> None:
    """Run the govern queue until `done()` holds (a delayed message becomes visible) or fail."""
    deadline = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < deadline, "the delayed governance message never came back"
        if not stack.host.process_queue_once("govern_queue"):
            time.sleep(0.1)  # polling the queue, as the host does between empty polls


def test_throttled_work_comes_back_after_retry_after_and_succeeds(stack: Stack) -> None:
    svc = get_services()
    # Retry-After long enough that a loaded machine's pause between two polls stays inside it
    stack.graph.inject_fault("POST", "revokeSignInSessions", 429, headers={"Retry-After": "4"})
    request = stored_alert(svc, "adele.vance@contoso.com")
    svc.enqueue_action(request)
    started = time.monotonic()
    assert stack.host.process_queue_once("govern_queue") == 1
    assert record_of(svc, request).status == "pending"
    assert stack.host.process_queue_once("govern_queue") == 0  # invisible for Retry-After
    _drain_until(stack, lambda: record_of(svc, request).status == "succeeded", deadline_s=30)
    assert time.monotonic() - started >= 4.0
    record = record_of(svc, request)
    assert record.attempts == 2 and record.error_code == ""
    poison = svc.storage.queue(f"{svc.settings.govern_queue}-poison")
    assert list(poison.receive_messages()) == []


def test_the_governance_log_needs_the_function_key_and_approves_over_http(stack: Stack) -> None:
    svc = get_services()
    request = stored_alert(svc, "adele.vance@contoso.com", act.SUSPEND_USER, approval=True)
    svc.enqueue_action(request)
    assert stack.host.process_queue_once("govern_queue") == 1
    pending = record_of(svc, request)
    assert pending.status == "pending"
    url = f"{stack.api}/governance/actions"
    key = {"x-functions-key": stack.function_key}
    assert requests.get(url, timeout=10).status_code == 401
    listed = requests.get(url, params={"status": "pending"}, headers=key, timeout=10)
    assert listed.status_code == 200 and listed.json()["actions"][0]["id"] == pending.id
    approve = f"{url}/{pending.id}/approve"
    assert requests.post(approve, json={"by": "soc"}, timeout=10).status_code == 401
    assert requests.post(f"{url}/{pending.id}/delete", headers=key, timeout=10).status_code == 404
    answer = requests.post(approve, json={"by": "soc@contoso.com"}, headers=key, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "approved"
    assert stack.host.process_queue_once("govern_queue") == 1
    assert record_of(svc, request).status == "succeeded"
    user = stack.graph.find_user("adele.vance@contoso.com")
    assert user is not None and not user.account_enabled
    revert = requests.post(
        f"{url}/{pending.id}/revert", json={"by": "soc@contoso.com"}, headers=key, timeout=10
    )
    assert revert.status_code == 200 and user.account_enabled


def test_the_approver_is_the_signed_in_analyst_and_the_command_is_audited(stack: Stack) -> None:
    svc = get_services()
    request = stored_alert(svc, "adele.vance@contoso.com", act.SUSPEND_USER, approval=True)
    svc.enqueue_action(request)
    assert stack.host.process_queue_once("govern_queue") == 1
    pending = record_of(svc, request)
    approve = f"{stack.api}/governance/actions/{pending.id}/approve"
    # A reader may look but not approve; a name in the body is no identity.
    assert requests.get(f"{stack.api}/governance/actions", headers=stack.as_reader(), timeout=10).ok
    refused = requests.post(approve, json={"by": "ceo"}, headers=stack.as_reader(), timeout=10)
    assert refused.status_code == 403
    answer = requests.post(approve, json={"by": "ceo"}, headers=stack.as_analyst(), timeout=10)
    assert answer.status_code == 200 and answer.json()["approved_by"] == "analyst@contoso.com"
    audit = requests.get(
        f"{stack.api}/audit", params={"target": pending.id}, headers=stack.as_reader(), timeout=10
    ).json()["value"]
    assert [(e["command"], e["actor"]["name"], e["status"]) for e in audit] == [
        ("governance.approve", "analyst@contoso.com", 200)
    ]
