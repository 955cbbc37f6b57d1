"""The whole path, each step real: install, webhooks, sync, detection, governance.

Azurite, the simulated Workplace tenant and the simulated Graph (HTTPS, MSAL) are real servers;
the functions run in the local host over HTTP and real queues. Triggers are fired explicitly so
the test is deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.scenario import ATTACKER_COUNTRY, brute_force, ordinary_day
from local.stack import Stack, local_stack
from shared import storage as st
from shared.services import get_services

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    poison_fast = {
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:00",
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount": "2",
    }
    with local_stack(port=None, triggers=False, extra_env=poison_fast) as s:
        yield s


def drain(stack: Stack) -> None:
    """Fire the timer once, then run the queue triggers until both queues are empty."""
    stack.host.run_timer("sync_timer")
    while stack.host.process_queue_once("detect_queue") or stack.host.process_queue_once(
        "govern_queue"
    ):
        pass


def table_rows(name: str) -> list[dict[str, Any]]:
    return list(get_services().storage.table(name).list_entities())


def test_install_webhooks_detection_and_governance_end_to_end(stack: Stack) -> None:
    wp = stack.workplace
    assert stack.install().status_code == 200
    assert stack.verify_subscription().status_code == 200
    (install,) = get_services().installs.all()
    assert install.community_id == wp.community_id and install.status == "active"

    victim = wp.members[1]
    deliveries = ordinary_day(wp, START, random.Random(1)) + brute_force(
        wp, victim, START + timedelta(minutes=30)
    )
    bodies = [wp.security_envelope(list(d.changes), entry_time=1) for d in deliveries]
    assert [wp.deliver(stack.webhook_url, b).status_code for b in bodies] == [200] * len(bodies)
    distinct = {repr(sorted(c[1].items())) for d in deliveries for c in d.changes}

    # A forged delivery is refused and stores nothing.
    inbox_before = len(table_rows(st.INBOX))
    assert wp.deliver(stack.webhook_url, bodies[0], signature="bad").status_code == 401
    assert wp.deliver(stack.webhook_url, bodies[0], signature="none").status_code == 401
    assert len(table_rows(st.INBOX)) == inbox_before

    drain(stack)
    assert table_rows(st.INBOX) == []
    assert len(table_rows(st.ACTIVITIES)) == len(distinct)
    (alert,) = get_services().alerts.for_tenant(wp.community_id)
    assert alert.user_email == victim.email
    assert alert.evidence.facts["countries"] == [ATTACKER_COUNTRY]
    assert alert.evidence.facts["failed_logins"] == 14
    (action,) = get_services().actions.for_tenant(wp.community_id)
    assert (action.action, action.status, action.target) == (
        "revoke_sessions",
        "succeeded",
        victim.email,
    )
    revokes = [r for r in stack.graph.graph_requests() if r.path.endswith("/revokeSignInSessions")]
    assert [r.path for r in revokes] == [f"/v1.0/users/{victim.email}/revokeSignInSessions"]
    assert stack.graph.find_user(victim.email).sign_in_sessions_valid_from is not None  # type: ignore[union-attr]

    # Workplace redelivers the attack (same events, new envelope): nothing new anywhere.
    for d in deliveries[-3:]:
        again = wp.security_envelope(list(d.changes), entry_time=2)
        assert wp.deliver(stack.webhook_url, again).status_code == 200
    drain(stack)
    assert len(table_rows(st.ACTIVITIES)) == len(distinct)
    assert len(get_services().alerts.for_tenant(wp.community_id)) == 1
    assert len(get_services().actions.for_tenant(wp.community_id)) == 1
    assert (
        len([r for r in stack.graph.graph_requests() if r.path.endswith("/revokeSignInSessions")])
        == 1
    )


def test_a_message_that_keeps_failing_ends_in_the_poison_queue(stack: Stack) -> None:
    # Well formed (a malformed one is quarantined at once), but its alert does not exist.
    svc = get_services()
    queue = svc.storage.queue(svc.settings.notify_queue)
    message = '{"v": 1, "tenant": "1", "alert": "no-such-alert"}'
    queue.send_message(message)
    attempts = 0
    while stack.host.process_queue_once("notify_queue"):
        attempts += 1
    assert attempts == 2  # maxDequeueCount
    poison = svc.storage.queue(f"{svc.settings.notify_queue}-poison")
    (msg,) = poison.receive_messages()
    assert msg.content == message.encode()
    assert list(queue.receive_messages()) == []


def test_the_install_route_needs_the_function_key(stack: Stack) -> None:
    import requests

    url = f"{stack.api}/workplace/install"
    assert requests.get(url, allow_redirects=False, timeout=10).status_code == 401
    keyed = requests.get(
        url, params={"code": stack.function_key}, allow_redirects=False, timeout=10
    )
    assert keyed.status_code == 302
    assert requests.get(f"{stack.api}/workplace/other", timeout=10).status_code == 404
