"""Governance against the simulated Graph over HTTPS, with MSAL's real client-credentials flow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.sim_graph import SimulatedGraph, SimUser
from shared import services
from shared.governance.executor import ActionRequest, RetryLater, execute
from shared.models import Alert, Evidence, GovernanceAction
from shared.services import Services

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
VICTIM = "alice@contoso.com"


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[SimulatedGraph]:
    with SimulatedGraph(state_dir=tmp_path) as sim:
        sim.add_user(SimUser(id=str(uuid.uuid4()), user_principal_name=VICTIM, mail=VICTIM))
        yield sim


@pytest.fixture
def gsvc(
    vigil_env: dict[str, str], graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> Services:
    for key, value in {
        "GRAPH_URL": graph.graph_url,
        "GRAPH_AUTHORITY_HOST": graph.authority_host,
        "GRAPH_TENANT_ID": graph.tenant_id,
        "GRAPH_CLIENT_ID": graph.client_id,
        "GRAPH_CLIENT_SECRET": graph.client_secret,
        "GRAPH_CA_BUNDLE": str(graph.ca_path),
    }.items():
        monkeypatch.setenv(key, value)
    services.reset()
    return services.get_services()


def stored_alert(svc: Services, user: str = VICTIM) -> ActionRequest:
    alert = Alert(
        id=uuid.uuid4().hex,
        tenant_id="community1",
        source="workplace",
        detector_id="vigil.multiple_failed_logins",
        title="t",
        description="d",
        severity="medium",
        category="CredentialAccess",
        mitre_techniques=("T1110",),
        user_id="100",
        user_email=user,
        first_activity_time=NOW,
        last_activity_time=NOW,
        created_time=NOW,
        evidence=Evidence({"failed_logins": 12}, ("e1",)),
        dedup_key="k",
        actions=("revoke_sessions",),
    )
    return ActionRequest("community1", svc.alerts.save(alert), "revoke_sessions")


def run(svc: Services, request: ActionRequest, mode: str = "enforce") -> GovernanceAction:
    return execute(
        request,
        alerts=svc.alerts,
        actions=svc.actions,
        mode=mode,  # type: ignore[arg-type]
        governor=lambda: svc.graph,
        now=NOW,
    )


def revokes(graph: SimulatedGraph) -> list[str]:
    return [r.path for r in graph.graph_requests() if r.path.endswith("/revokeSignInSessions")]


def test_enforce_revokes_sessions_once_and_records_the_request_id(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(gsvc)
    record = run(gsvc, request)
    assert record.status == "succeeded" and record.attempts == 1 and record.request_id
    assert revokes(graph) == [f"/v1.0/users/{VICTIM}/revokeSignInSessions"]
    (call,) = [r for r in graph.graph_requests() if r.path.endswith("revokeSignInSessions")]
    assert call.headers["authorization"].startswith("Bearer")
    assert graph.find_user(VICTIM).sign_in_sessions_valid_from is not None  # type: ignore[union-attr]
    again = run(gsvc, request)  # a redelivered message
    assert again == record and len(revokes(graph)) == 1
    assert gsvc.actions.get("community1", record.id) == record


def test_the_app_token_comes_from_the_token_endpoint_once(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    run(gsvc, stored_alert(gsvc))
    run(gsvc, stored_alert(gsvc))
    assert graph.token_requests == 1 and len(revokes(graph)) == 2


@pytest.mark.parametrize("mode", ["dry-run", "off"])
def test_dry_run_and_off_send_nothing_and_say_so(
    gsvc: Services, graph: SimulatedGraph, mode: str
) -> None:
    record = run(gsvc, stored_alert(gsvc), mode)
    assert record.status == "skipped" and record.mode == mode
    assert ("would POST" in record.error_message) == (mode == "dry-run")
    assert graph.graph_requests() == [] and graph.token_requests == 0


def test_an_unknown_user_fails_fast_with_the_graph_error(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    record = run(gsvc, stored_alert(gsvc, user="nobody@contoso.com"))
    assert record.status == "failed" and record.error_code == "Request_ResourceNotFound"
    assert record.request_id
    assert run(gsvc, stored_alert(gsvc, user="nobody@contoso.com")).attempts == 1


def test_throttling_returns_the_work_to_the_queue_then_succeeds(
    gsvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "revokeSignInSessions", 429, headers={"Retry-After": "3"})
    request = stored_alert(gsvc)
    with pytest.raises(RetryLater):
        run(gsvc, request)
    alert = gsvc.alerts.get("community1", request.alert_key)
    assert alert is not None
    action_id = GovernanceAction.make_id(alert.id, "revoke_sessions", VICTIM)
    pending = gsvc.actions.get("community1", action_id)
    assert pending is not None and pending.status == "pending" and pending.attempts == 1
    assert pending.error_code
    record = run(gsvc, request)
    assert record.status == "succeeded" and record.attempts == 2


def test_a_wrong_client_secret_fails_without_leaking_it(
    vigil_env: dict[str, str], graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "GRAPH_URL": graph.graph_url,
        "GRAPH_AUTHORITY_HOST": graph.authority_host,
        "GRAPH_TENANT_ID": graph.tenant_id,
        "GRAPH_CLIENT_ID": graph.client_id,
        "GRAPH_CLIENT_SECRET": "definitely-wrong-secret",
        "GRAPH_CA_BUNDLE": str(graph.ca_path),
    }.items():
        monkeypatch.setenv(key, value)
    services.reset()
    svc = services.get_services()
    record = run(svc, stored_alert(svc))
    assert record.status == "failed" and record.error_code == "invalid_client"
    assert "definitely-wrong-secret" not in repr(record)
    assert revokes(graph) == []
