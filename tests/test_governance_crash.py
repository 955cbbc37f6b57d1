# ruff: noqa: F811  (pytest fixtures imported from tests.test_governance are parameters here)
"""The governance worker killed between Graph's answer and the record's save, for every action.

The worker is a process of its own (tests/govern_worker.py). The simulated Graph (or Workplace)
carries the call out and, before writing the answer, SIGKILLs the worker and waits for it to
die: the call happened and the record never heard of it. The queue then shows the message
again to a fresh worker, as it does after a dead host (10 minutes: the queue extension's
in-flight visibility, also the record's lease). What the simulators received is counted: one
e-mail, and no repeat of an action whose repeat is not harmless.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from local.sim_graph import SimulatedGraph
from local.sim_workplace import SimulatedWorkplace
from shared.governance import actions as act
from shared.governance.attempt import LEASE, RetryLater
from shared.governance.executor import execute
from shared.governance.message import ActionRequest
from shared.services import Services
from tests.test_governance import (
    BOB_MAIL,
    NOW,
    SENDER,
    TENANT,
    VICTIM,
    VICTIM_ID,
    governance,
    graph,  # noqa: F401
    graph_env,
    record_of,
    stored_alert,
    use_env,
)

ROOT = Path(__file__).resolve().parent.parent
# How long after a host dies its message shows again: the queue extension keeps a message it
# has handed out invisible for 10 minutes (renewed while the invocation runs).
HOST_REDELIVERY = timedelta(minutes=10)


class Worker:
    """One worker process, which a simulator's hook kills with SIGKILL."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self._started = threading.Event()

    def start(self, body: str, when: str, dequeue_count: int) -> subprocess.Popen[str]:
        self.proc = subprocess.Popen(  # noqa: S603 (this interpreter, our own module)
            [sys.executable, "-m", "tests.govern_worker", body, when, str(dequeue_count)],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._started.set()
        return self.proc

    def kill(self, _request: Any) -> None:
        """Kill the worker and wait until it is dead (the answer is written after that)."""
        assert self._started.wait(60)
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(60)


def deliver(request: ActionRequest, when: str, dequeue_count: int) -> str:
    """A fresh worker gets the message; returns what it printed (the record's status)."""
    done = subprocess.run(  # noqa: S603 (this interpreter, our own module)
        [
            sys.executable,
            "-m",
            "tests.govern_worker",
            request.to_message(),
            when,
            str(dequeue_count),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def killed_mid_call(
    request: ActionRequest, arm: Callable[[Callable[[Any], None]], None]
) -> subprocess.Popen[str]:
    """The first delivery, killed by the simulator once it has carried out the call."""
    worker = Worker()
    arm(worker.kill)
    proc = worker.start(request.to_message(), NOW.isoformat(), 1)
    proc.wait(120)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the worker was not killed mid-call: {err[-3000:]}"
    return proc


@pytest.fixture
def wsim(vigil_env: dict[str, str]) -> Any:
    with SimulatedWorkplace(
        app_id=vigil_env["WORKPLACE_APP_ID"], app_secret=vigil_env["WORKPLACE_APP_SECRET"]
    ) as sim:
        yield sim


@pytest.fixture
def csvc(
    vigil_env: dict[str, str],
    graph: SimulatedGraph,
    wsim: SimulatedWorkplace,
    monkeypatch: pytest.MonkeyPatch,
) -> Services:
    svc = use_env(monkeypatch, graph_env(graph, WORKPLACE_GRAPH_URL=wsim.url))
    svc.secrets.set(f"workplace-token-{TENANT}", wsim.add_custom_integration())
    return svc


def graph_calls(graph: SimulatedGraph, method: str, suffix: str) -> int:
    return sum(1 for r in graph.graph_requests() if r.method == method and r.path.endswith(suffix))


def test_the_record_lease_is_the_function_timeout_and_covers_the_host_redelivery() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    hours, minutes, seconds = (int(p) for p in host["functionTimeout"].split(":"))
    assert timedelta(hours=hours, minutes=minutes, seconds=seconds) == LEASE
    # A dead host's message shows again no sooner than the lease is over: it is not put back.
    assert HOST_REDELIVERY >= LEASE


@pytest.mark.parametrize(
    "action",
    [
        act.NOTIFY_USER,
        act.REVOKE_SESSIONS,
        act.SUSPEND_USER,
        act.CONFIRM_COMPROMISED,
        act.WORKPLACE_LOGOUT,
        act.WORKPLACE_DEACTIVATE,
    ],
)
def test_a_worker_killed_after_the_call_acts_once_after_redelivery(
    csvc: Services, graph: SimulatedGraph, wsim: SimulatedWorkplace, action: str
) -> None:
    member = wsim.add_member("Alice Victim", VICTIM)
    request = stored_alert(csvc, action=action, user_id=member.id)
    where = {
        act.NOTIFY_USER: ("POST", "/sendMail$"),
        act.REVOKE_SESSIONS: ("POST", "/revokeSignInSessions$"),
        act.SUSPEND_USER: ("POST", r"/\$batch$"),
        act.CONFIRM_COMPROMISED: ("POST", "/confirmCompromised$"),
        act.WORKPLACE_LOGOUT: ("POST", f"^/{member.id}/logout$"),
        act.WORKPLACE_DEACTIVATE: ("POST", f"^/{member.id}$"),
    }[action]
    sim: Any = wsim if action in act.WORKPLACE_ACTIONS else graph
    killed_mid_call(request, lambda hook: sim.before_answer(*where, hook))

    # The call happened; the record says it was about to be sent, and nothing more.
    crashed = record_of(csvc, request)
    assert crashed.status == "pending" and crashed.intent_at == NOW and crashed.intent
    assert [(a.number, a.outcome) for a in crashed.attempt_log] == [(1, "sending")]
    assert crashed.lease_until == NOW + LEASE

    # A delivery while the lease holds (a duplicate message, say) only puts the work back.
    assert deliver(request, (NOW + LEASE / 2).isoformat(), 1) == "requeued"
    assert record_of(csvc, request) == crashed

    assert deliver(request, (NOW + HOST_REDELIVERY).isoformat(), 2) == "succeeded"
    done = record_of(csvc, request)
    assert done.status == "succeeded" and done.attempts == 2 and done.intent_at is None
    first, *_, last = done.attempt_log
    assert (first.number, first.outcome) == (1, "unanswered")
    assert last.number == 2

    # What the other side received.
    user = graph.find_user(VICTIM)
    assert user is not None
    match action:
        case act.NOTIFY_USER:
            assert len(graph.sent_mail) == 1 and len(graph.sent_items(SENDER)) == 1
            assert last.outcome == "already_done" and "Sent Items" in last.note
            assert graph_calls(graph, "GET", "/mailFolders/sentitems/messages") == 1
        case act.REVOKE_SESSIONS:  # repeated: harmless, and the record says so
            assert graph_calls(graph, "POST", "/revokeSignInSessions") == 2
            assert done.check == "repeat_harmless" and last.outcome == "succeeded"
        case act.SUSPEND_USER:  # disabled once; the revoke after it repeated (harmless)
            patches = [r for r in graph.graph_requests() if r.method == "PATCH"]
            assert len(patches) == 1 and not user.account_enabled
            checks = [
                r for r in graph.graph_requests() if r.query.get("$select") == "id,accountEnabled"
            ]
            assert [r.path for r in checks] == [f"/v1.0/users/{VICTIM}"]
            assert done.check == "account_enabled" and last.outcome == "succeeded"
            assert any("accountEnabled is already false" in a.note for a in done.attempt_log)
        case act.CONFIRM_COMPROMISED:
            assert graph_calls(graph, "POST", "/confirmCompromised") == 1
            assert graph_calls(graph, "GET", f"/riskyUsers/{VICTIM_ID}") == 1
            assert user.risk_state == "confirmedCompromised" and last.outcome == "already_done"
        case act.WORKPLACE_LOGOUT:  # repeated: harmless
            assert wsim.member(member.id).logouts == 2 and done.check == "repeat_harmless"
        case act.WORKPLACE_DEACTIVATE:
            posts = [r for r in wsim.requests_to(f"/{member.id}") if r.method == "POST"]
            assert len(posts) == 1 and not wsim.member(member.id).active
            assert last.outcome == "already_done"


def test_a_mail_whose_send_cannot_be_checked_is_left_to_an_analyst_not_sent_again(
    csvc: Services, graph: SimulatedGraph
) -> None:
    request = stored_alert(csvc, action=act.NOTIFY_USER)
    killed_mid_call(request, lambda hook: graph.before_answer("POST", "/sendMail$", hook))
    graph.mail_read_denied = True  # no Mail.ReadBasic.All
    assert deliver(request, (NOW + HOST_REDELIVERY).isoformat(), 2) == "failed"
    record = record_of(csvc, request)
    assert record.error_code == "unconfirmed_send" and "Mail.ReadBasic.All" in record.error_message
    assert len(graph.sent_mail) == 1


def test_a_mail_answered_with_a_503_is_looked_for_before_it_is_sent_again(
    csvc: Services, graph: SimulatedGraph
) -> None:
    graph.inject_fault("POST", "/sendMail$", 503)  # refused: nothing was sent
    request = stored_alert(csvc, action=act.NOTIFY_USER)
    gov = governance(csvc)
    with pytest.raises(RetryLater):
        execute(request, gov, NOW)
    refused = record_of(csvc, request)
    assert refused.intent_at == NOW  # a 503 may come after the mail went: the intent stands
    assert "may have taken effect" in refused.attempt_log[-1].outcome
    # Sent Items may lag behind a send: not found a moment later is not yet "not sent".
    with pytest.raises(RetryLater) as later:
        execute(request, gov, NOW + timedelta(seconds=10))
    assert later.value.delay == 110
    assert execute(request, gov, NOW + timedelta(minutes=2)).status == "succeeded"
    assert len(graph.sent_mail) == 1
    assert graph_calls(graph, "GET", "/mailFolders/sentitems/messages") == 2
    done = record_of(csvc, request)
    assert [a.outcome for a in done.attempt_log][-2:] == ["checked", "succeeded"]


def test_a_confirm_compromised_batch_killed_after_the_call_is_not_sent_again_for_anyone(
    csvc: Services, graph: SimulatedGraph
) -> None:
    gov = governance(csvc)
    waiting = stored_alert(csvc, VICTIM, act.CONFIRM_COMPROMISED)
    assert gov.risk_slots.acquire(TENANT, NOW) == 0  # the second is taken: it waits, resolved
    with pytest.raises(RetryLater):
        execute(waiting, gov, NOW)
    bob = stored_alert(csvc, BOB_MAIL, act.CONFIRM_COMPROMISED)
    start = NOW + timedelta(seconds=2)
    worker = Worker()
    graph.before_answer("POST", "/confirmCompromised$", worker.kill)
    proc = worker.start(bob.to_message(), start.isoformat(), 1)
    assert proc.wait(120) == -signal.SIGKILL
    (call,) = [r for r in graph.graph_requests() if r.path.endswith("/confirmCompromised")]
    assert len(call.json["userIds"]) == 2  # both users, in one call
    held = record_of(csvc, waiting)
    assert held.attempt_log == ()  # it waited for the slot: it sent nothing
    assert held.intent_at == start and held.lease_until == start + LEASE  # the batch holds it

    later = (start + HOST_REDELIVERY).isoformat()
    assert deliver(bob, later, 2) == "succeeded"
    assert deliver(waiting, later, 2) == "succeeded"
    assert graph_calls(graph, "POST", "/confirmCompromised") == 1
    for request in (bob, waiting):
        assert record_of(csvc, request).attempt_log[-1].outcome == "already_done"
