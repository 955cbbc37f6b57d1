# ruff: noqa: F811  (pytest fixtures imported from tests.test_governance are parameters here)
"""Fault injection: a failure at each step, duplicates, disorder, a storage restart, bad input.

Each case ends by counting: every distinct event stored once, one alert per burst, one action.
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local.azurite import ensure_azurite
from shared import services
from shared import storage as st
from shared.activities import ActivityBatch
from shared.detection.engine import run_batch
from shared.governance.message import ActionRequest
from shared.services import Services
from shared.workplace.inbox_drain import drain_inbox
from tests.samples import COMMUNITY, T0, envelope, failed_logins, install, value

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def svc(svc: Services) -> Services:
    """Vigil installed in the sample community (events of a community without one are held)."""
    install(svc)
    return svc


class Boom(RuntimeError):
    pass


def fail_once(target: object, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `target.name` raise on its first call only (a crash at that step)."""
    original = getattr(target, name)
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Boom(f"injected failure in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)


def detection_messages(svc: Services) -> list[ActivityBatch]:
    q = svc.storage.queue(svc.settings.activity_queue)
    out = []
    while batch := list(q.receive_messages(messages_per_page=32, max_messages=32)):
        for m in batch:
            out.append(ActivityBatch.from_message(m.content))
            q.delete_message(m)
    return out


def detect_all(svc: Services, batches: list[ActivityBatch], sent: list[ActionRequest]) -> None:
    for batch in batches:
        for attempt in range(3):  # the host would redeliver a failed message
            try:
                deps = svc.detection_deps()
                deps = replace(deps, enqueue=sent.append, directory=None, suppressions=None)
                run_batch(deps, batch)
                break
            except Boom:
                if attempt == 2:
                    raise


def counts(svc: Services, sent: list[ActionRequest]) -> tuple[int, int, int]:
    activities = len(list(svc.storage.table(st.ACTIVITIES).list_entities()))
    alerts = len(svc.alerts.for_tenant(COMMUNITY))
    actions = len({(r.alert_key, r.action) for r in sent})
    return activities, alerts, actions


@pytest.mark.parametrize(
    ("step", "method"),
    [
        ("read the inbox", "oldest"),
        ("write activities", "write"),
        ("delete from the inbox", "delete"),
    ],
)
def test_a_sync_that_fails_at_any_step_resumes_without_loss_or_duplicates(
    svc: Services, monkeypatch: pytest.MonkeyPatch, step: str, method: str
) -> None:
    svc.inbox.put("workplace", envelope(*failed_logins(12)), NOW)
    target = svc.inbox if method in ("oldest", "delete") else svc.activities
    fail_once(target, method, monkeypatch)
    with pytest.raises(Boom):
        drain_inbox(svc.inbox_drain_deps, NOW)
    drain_inbox(svc.inbox_drain_deps, NOW)  # the next timer run
    assert svc.inbox.oldest(10) == []
    sent: list[ActionRequest] = []
    detect_all(svc, detection_messages(svc), sent)
    assert counts(svc, sent) == (12, 1, 1)


@pytest.mark.parametrize("method", ["save_users", "get_users", "get_tenant", "save_tenant"])
def test_detection_that_fails_mid_batch_is_retried_to_one_alert(
    svc: Services, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    svc.inbox.put("workplace", envelope(*failed_logins(12)), NOW)
    drain_inbox(svc.inbox_drain_deps, NOW)
    fail_once(svc.detection_state, method, monkeypatch)
    sent: list[ActionRequest] = []
    detect_all(svc, detection_messages(svc), sent)
    assert counts(svc, sent) == (12, 1, 1)


def test_a_crash_after_the_alert_is_written_does_not_make_a_second_one(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc.inbox.put("workplace", envelope(*failed_logins(12)), NOW)
    drain_inbox(svc.inbox_drain_deps, NOW)
    # The alert and the action request go out; the profile save then fails.
    fail_once(svc.detection_state, "save_users", monkeypatch)
    sent: list[ActionRequest] = []
    detect_all(svc, detection_messages(svc), sent)
    # The retried batch re-raises the same alert (same id) and asks again for the same action;
    # the executor's deterministic action id makes the second request a no-op.
    assert counts(svc, sent) == (12, 1, 1)
    assert len(sent) == 2 and sent[0] == sent[1]


def test_duplicate_and_out_of_order_deliveries_give_the_in_order_result(svc: Services) -> None:
    changes = failed_logins(14)
    # Envelopes arrive newest first, and two of them twice, each wrapped differently.
    for i, change in enumerate(reversed(changes)):
        svc.inbox.put("workplace", envelope(change, time=1000 + i), NOW + timedelta(seconds=i))
    svc.inbox.put("workplace", envelope(changes[0], time=1), NOW + timedelta(minutes=1))
    svc.inbox.put("workplace", envelope(changes[5], changes[6], time=2), NOW + timedelta(minutes=2))
    drain_inbox(svc.inbox_drain_deps, NOW)
    sent: list[ActionRequest] = []
    detect_all(svc, detection_messages(svc), sent)
    assert counts(svc, sent) == (14, 1, 1)
    (alert,) = svc.alerts.for_tenant(COMMUNITY)
    assert alert.event_count == 14


def test_malformed_and_oversized_input_is_refused_or_kept_aside(svc: Services) -> None:
    from shared.inbox import MAX_BODY, BodyTooLarge

    with pytest.raises(BodyTooLarge):
        svc.inbox.put("workplace", b"{" + b" " * MAX_BODY + b"}", NOW)
    svc.inbox.put("workplace", b"\xff\xfe not utf-8", NOW)
    svc.inbox.put("workplace", envelope(("login", {"event": "LOGIN"})), NOW)  # no actor
    svc.inbox.put("workplace", envelope(("login", value("LOGIN"))), NOW)
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.activities, result.quarantined, result.rejected_changes) == (1, 1, 1)
    assert len(list(svc.storage.table(st.QUARANTINE).list_entities())) == 2
    for bad in (b"", b"[]", b'{"pk": "x", "rks": "many"}', b'{"pk": "x", "rks": ["a"] }' * 2):
        with pytest.raises(ValueError):
            ActivityBatch.from_message(bad)


def _free_ports() -> dict[str, int]:
    ports = {}
    for service in ("blob", "queue", "table"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports[service] = s.getsockname()[1]
    return ports


def test_a_storage_restart_in_the_middle_of_a_run_loses_and_doubles_nothing(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = _free_ports()
    with tempfile.TemporaryDirectory() as folder:
        location = Path(folder)
        with ensure_azurite(location, ports=ports) as conn:
            monkeypatch.setenv("AzureWebJobsStorage", conn)
            services.reset()
            svc = services.get_services()
            install(svc)
            svc.inbox.put("workplace", envelope(*failed_logins(6)), NOW)
            svc.inbox.put(
                "workplace", envelope(*failed_logins(8, start=T0 + timedelta(minutes=2))), NOW
            )
            drain_inbox(svc.inbox_drain_deps, NOW)
            batches = detection_messages(svc)
            sent: list[ActionRequest] = []
            detect_all(svc, batches[:1], sent)  # half the work done...
        # ...then storage restarts (a graceful stop persists its state to `location`).
        with ensure_azurite(location, ports=ports) as conn:
            services.reset()
            svc = services.get_services()
            detect_all(svc, batches, sent)  # the first batch again, as a redelivery, and the rest
            assert counts(svc, sent) == (14, 1, 1)
    services.reset()


# --- govern: a failure at each step, then the redelivery ------------------------------------

from tests.test_governance import (  # noqa: E402  (fixtures shared with the governance tests)
    governance,
    graph,  # noqa: F401
    gsvc,  # noqa: F401
    stored_alert,
)


def revokes(sim: Any) -> int:
    return sum(1 for r in sim.graph_requests() if r.path.endswith("/revokeSignInSessions"))


@pytest.mark.parametrize("step", ["read the record", "claim the record", "resolve the user"])
def test_governance_that_fails_at_any_step_acts_once_on_redelivery(
    gsvc: Services,
    graph: Any,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    from shared.governance.executor import execute

    request = stored_alert(gsvc)
    gov = governance(gsvc, "enforce")
    target, name = {
        "read the record": (gov.actions, "read"),
        "claim the record": (gov.actions, "save"),
        "resolve the user": (gov.identities, "resolve"),
    }[step]
    fail_once(target, name, monkeypatch)
    with pytest.raises(Boom):
        execute(request, gov, NOW)
    record = execute(request, gov, NOW)  # the host's redelivery
    assert record.status == "succeeded"
    assert execute(request, gov, NOW).status == "succeeded"  # and one more, for good measure
    assert revokes(graph) == 1
    assert len(gsvc.actions.for_tenant(request.tenant_id)) == 1


def test_governance_that_gets_a_503_is_requeued_and_acts_once(
    gsvc: Services,
    graph: Any,
) -> None:
    from shared.governance.attempt import RetryLater
    from shared.governance.executor import execute

    graph.inject_fault("POST", "revokeSignInSessions", 503)
    request = stored_alert(gsvc)
    gov = governance(gsvc, "enforce")
    with pytest.raises(RetryLater):
        execute(request, gov, NOW)
    assert execute(request, gov, NOW).status == "succeeded"
    assert revokes(graph) == 2  # the refused call and the one that worked
    assert len(gsvc.actions.for_tenant(request.tenant_id)) == 1
