"""Guardrails (protected accounts, circuit breaker, approval) and the governance log over HTTP."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage  # the worker's concrete message type

import govern_queue
import governance_http
from local.sim_graph import SimulatedGraph
from shared.governance import actions as act
from shared.governance.executor import execute
from shared.governance.guardrails import breaker_tripped, is_protected, retry_delay
from shared.services import Services
from tests.conftest import KEY
from tests.test_governance import (
    BOB_MAIL,
    NOW,
    TENANT,
    VICTIM,
    VICTIM_ID,
    governance,
    graph,
    graph_env,
    gsvc,
    record_of,
    run,
    stored_alert,
    use_env,
    writes,
)

__all__ = ["graph", "gsvc"]  # fixtures


def http(
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    **params: str,
) -> tuple[int, Any]:
    """Call the governance functions as the host does: with the automation key, or with no
    credential when `_anonymous="yes"`."""
    headers = {} if params.pop("_anonymous", "") == "yes" else dict(KEY)
    if method == "GET":
        fn = governance_http.governance_actions.build().get_user_function()
        route: dict[str, str] = {}
    else:
        fn = governance_http.governance_command.build().get_user_function()
        action_id, command = path.rsplit("/", 2)[-2:]
        route = {"id": action_id, "command": command}
    req = func.HttpRequest(
        method,
        f"http://localhost/api/{path}",
        params=params,
        route_params=route,
        headers=headers,
        body=json.dumps(body).encode() if body is not None else b"",
    )
    resp = fn(req)
    return resp.status_code, json.loads(resp.get_body())


def drain_govern_queue(svc: Services) -> int:
    handler = govern_queue.govern_queue.build().get_user_function()
    queue = svc.storage.queue(svc.settings.govern_queue)
    handled = 0
    for message in queue.receive_messages():
        handler(
            QueueMessage(id=message.id, body=message.content, dequeue_count=message.dequeue_count)
        )
        queue.delete_message(message)
        handled += 1
    return handled


# ---------------------------------------------------------------- pure decisions


def test_pure_guardrail_decisions() -> None:
    assert is_protected(frozenset({"abc"}), "", "ABC ") and not is_protected(frozenset(), "x")
    times = [NOW - timedelta(minutes=m) for m in (0, 30, 59)]
    assert breaker_tripped(times, NOW, 3) and not breaker_tripped(times, NOW, 4)
    assert not breaker_tripped(times, NOW + timedelta(hours=1), 1)  # an hour later: all gone
    assert not breaker_tripped(times, NOW - timedelta(hours=2), 1)  # before them: none count
    rng = random.Random(1)
    assert retry_delay(3.0, 1, rng) == 3 and retry_delay(0.2, 1, rng) == 1
    assert all(1 <= retry_delay(None, 20, rng) <= 300 for _ in range(50))


# ---------------------------------------------------------------- protected accounts


@pytest.mark.parametrize("listed", [VICTIM_ID, VICTIM.upper()])
def test_a_protected_account_is_never_suspended_and_an_alert_says_so(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    monkeypatch: pytest.MonkeyPatch,
    listed: str,
) -> None:
    svc = use_env(
        monkeypatch, graph_env(graph, GOVERNANCE_PROTECTED_ACCOUNTS=f"breakglass@x.com, {listed}")
    )
    for action in (act.SUSPEND_USER, act.REVOKE_SESSIONS, act.CONFIRM_COMPROMISED):
        record = run(svc, stored_alert(svc, action=action))
        assert record.status == "skipped" and record.error_code == "protected_account"
    assert writes(graph) == []
    raised = [a for a in svc.alerts.for_tenant(TENANT) if a.source == "vigil"]
    assert len(raised) == 3 and {a.severity for a in raised} == {"high"}
    assert raised[0].detector_id == "vigil.governance.protected_account"
    assert run(svc, stored_alert(svc, action=act.NOTIFY_USER)).status == "succeeded"


# ---------------------------------------------------------------- circuit breaker


def test_the_circuit_breaker_stops_suspensions_by_alert_event_time_and_raises_an_alert(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    gov = governance(gsvc, max_suspensions_per_hour=2)
    users = [f"user{i}@contoso.com" for i in range(5)]
    from local.sim_graph import SimUser

    for i, user in enumerate(users):
        graph.add_user(
            SimUser(
                id=f"00000000-0000-0000-0000-00000000000{i}", user_principal_name=user, mail=user
            )
        )
    at = [NOW, NOW + timedelta(minutes=20), NOW + timedelta(minutes=40), NOW + timedelta(hours=2)]
    statuses = []
    for user, when in zip(users, at, strict=False):
        # processed much later (wall clock): only the alerts' own times count
        statuses.append(
            execute(
                stored_alert(gsvc, user, act.SUSPEND_USER, at=when), gov, NOW + timedelta(days=3)
            )
        )
    assert [r.status for r in statuses] == ["succeeded", "succeeded", "skipped", "succeeded"]
    assert statuses[2].error_code == "circuit_breaker"
    assert "GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR" in statuses[2].error_message
    assert graph.find_user(users[2]).account_enabled  # type: ignore[union-attr]
    (alert,) = [a for a in gsvc.alerts.for_tenant(TENANT) if a.source == "vigil"]
    assert alert.detector_id == "vigil.governance.circuit_breaker" and alert.severity == "high"
    assert alert.user_email == users[2] and alert.evidence.facts["action_id"] == statuses[2].id
    # revoking sessions is not a suspension: the breaker does not hold it back
    assert (
        execute(stored_alert(gsvc, users[4], at=NOW + timedelta(minutes=50)), gov, NOW).status
        == "succeeded"
    )


def test_approved_suspensions_are_not_counted_or_stopped_by_the_breaker(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    gov = governance(gsvc, max_suspensions_per_hour=0)
    request = stored_alert(gsvc, action=act.SUSPEND_USER, approval=True)
    assert execute(request, gov, NOW).status == "pending"
    record = record_of(gsvc, request)
    from shared.governance.commands import approve

    approve(gov, record.id, "analyst", NOW)
    assert execute(request, gov, NOW).status == "succeeded"


# ---------------------------------------------------------------- approval and the HTTP log


def test_an_approval_policy_leaves_the_action_pending_until_approved_over_http(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(gsvc, action=act.SUSPEND_USER, approval=True)
    gsvc.enqueue_action(request)
    assert drain_govern_queue(gsvc) == 1
    pending = record_of(gsvc, request)
    assert pending.status == "pending" and pending.approval_required and pending.attempts == 0
    assert writes(graph) == [] and graph.token_requests == 0
    assert drain_govern_queue(gsvc) == 0  # the message is done; the record waits

    status, body = http("GET", "governance/actions", status="pending")
    assert status == 200 and [a["id"] for a in body["actions"]] == [pending.id]
    assert body["actions"][0]["detail"].startswith("POST /$batch")

    status, body = http("POST", f"governance/actions/{pending.id}/approve", {}, _anonymous="yes")
    assert status == 401 and record_of(gsvc, request).status == "pending"
    # The approver is the caller (here the automation key), never a name in the body.
    status, body = http(
        "POST", f"governance/actions/{pending.id}/approve", {"by": "soc@contoso.com"}
    )
    assert (
        status == 200 and body["status"] == "approved" and body["approved_by"] == "automation key"
    )
    assert drain_govern_queue(gsvc) == 1
    done = record_of(gsvc, request)
    assert done.status == "succeeded" and done.approved_by == "automation key"
    assert not graph.find_user(VICTIM).account_enabled  # type: ignore[union-attr]
    status, body = http("POST", f"governance/actions/{pending.id}/approve", {"by": "x"})
    assert status == 409

    status, body = http(
        "POST", f"governance/actions/{pending.id}/revert", {"by": "soc@contoso.com"}
    )
    assert status == 200 and body["status"] == "reverted"
    assert graph.find_user(VICTIM).account_enabled  # type: ignore[union-attr]


def test_the_log_filters_by_status_action_user_and_alert(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    revoke = run(gsvc, stored_alert(gsvc))
    missing = run(gsvc, stored_alert(gsvc, "nobody@contoso.com", act.NOTIFY_USER))
    bob = run(gsvc, stored_alert(gsvc, BOB_MAIL))

    def ids(**params: str) -> list[str]:
        status, body = http("GET", "governance/actions", None, **params)
        assert status == 200, body
        return sorted(a["id"] for a in body["actions"])

    assert ids() == sorted([revoke.id, missing.id, bob.id])
    assert ids(status="failed") == [missing.id]
    assert ids(action="revoke_sessions") == sorted([revoke.id, bob.id])
    assert ids(user=VICTIM.upper()) == [revoke.id]
    assert ids(user=bob.target_object_id) == [bob.id]
    assert ids(alert=bob.alert_id) == [bob.id]
    assert ids(tenant="other") == []
    status, body = http("GET", "governance/actions", actions="x")
    assert status == 400 and "unknown query parameter 'actions'" in body["error"]["message"]
    assert http("GET", "governance/actions", status="done")[0] == 400
    assert http("GET", "governance/actions", action="delete_user")[0] == 400
    assert http("GET", "governance/actions", limit="0")[0] == 400
    (first,) = http("GET", "governance/actions", status="failed")[1]["actions"]
    for field in (
        "alert_id",
        "action",
        "target",
        "mode",
        "status",
        "attempts",
        "request_id",
        "error_code",
        "error_message",
        "created_at",
        "completed_at",
    ):
        assert field in first


def test_retry_over_http_runs_a_failed_action_again(gsvc: Services, graph: SimulatedGraph) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", 403)
    request = stored_alert(gsvc)
    failed = run(gsvc, request)
    assert failed.status == "failed"
    status, body = http("POST", f"governance/actions/{failed.id}/retry", {"by": "soc"})
    assert status == 200 and body["status"] == "pending" and body["attempts"] == 0
    assert drain_govern_queue(gsvc) == 1
    done = record_of(gsvc, request)
    assert done.status == "succeeded" and done.attempts == 1
    assert http("POST", f"governance/actions/{done.id}/retry", {"by": "soc"})[0] == 409


def test_commands_on_unknown_or_unsuitable_actions_are_refused(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    status, body = http("POST", "governance/actions/nope/approve", {"by": "soc"})
    assert status == 404 and "nope" in body["error"]["message"]
    revoke = run(gsvc, stored_alert(gsvc))
    status, body = http("POST", f"governance/actions/{revoke.id}/revert", {"by": "soc"})
    assert status == 409 and "cannot be undone" in body["error"]["message"]
    status, body = http("POST", f"governance/actions/{revoke.id}/approve", {"by": "soc"})
    assert status == 409 and "needs no approval" in body["error"]["message"]
    dry = run(gsvc, stored_alert(gsvc, action=act.SUSPEND_USER), "dry-run")
    assert http("POST", f"governance/actions/{dry.id}/revert", {"by": "soc"})[0] == 409
