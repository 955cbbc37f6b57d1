"""The Entra pull's pacing, and non-interactive sign-ins through beta only when turned on."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local.sim_graph import SimulatedGraph
from shared import storage as st
from shared.entra.pull import WINDOW_REQUESTS, Pacer, pull
from tests.conftest import use_simulated_graph
from tests.entra_samples import sign_in

USER, UPN = "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "ana@contoso.example"


def test_the_pacer_stays_under_five_requests_in_any_ten_seconds() -> None:
    clock = [0.0]
    taken: list[float] = []

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pacer = Pacer(clock=lambda: clock[0], sleep=sleep)
    for _ in range(40):
        pacer.take()
        taken.append(clock[0])
        clock[0] += 0.01  # the request itself
    assert taken[:WINDOW_REQUESTS] == pytest.approx([0.0, 0.01, 0.02, 0.03])  # no wait at first
    for i, t in enumerate(taken):
        within = [u for u in taken[i:] if u < t + 10.0 - 1e-9]
        assert len(within) < 5
    assert max(b - a for a, b in itertools.pairwise(taken)) <= 10.0 + 1e-9
    assert taken[-1] < 40 / WINDOW_REQUESTS * 10.0 + 1  # and not slower than it must be


@pytest.fixture
def graph(vigil_env: dict[str, str]) -> Iterator[SimulatedGraph]:
    with SimulatedGraph() as sim:
        yield sim


def _records(now: datetime) -> tuple[dict[str, object], dict[str, object]]:
    interactive = sign_in(now - timedelta(minutes=5), user_id=USER, upn=UPN)
    interactive["signInEventTypes"] = ["interactiveUser"]
    refresh = sign_in(now - timedelta(minutes=4), user_id=USER, upn=UPN)
    refresh["signInEventTypes"] = ["nonInteractiveUser"]
    refresh["isInteractive"] = False
    return interactive, refresh


@pytest.mark.parametrize("beta", [False, True])
def test_non_interactive_sign_ins_come_only_from_beta_and_only_when_turned_on(
    graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch, beta: bool
) -> None:
    monkeypatch.setenv("VIGIL_SOURCES", "entra")
    monkeypatch.setenv("ENTRA_NONINTERACTIVE_SIGNINS", "true" if beta else "false")
    svc = use_simulated_graph(monkeypatch, graph)
    now = datetime.now(UTC)
    interactive, refresh = _records(now)
    graph.audit_logs.add("signIns", interactive, refresh)
    result = pull(svc.entra_pull_deps, now)
    assert not result.throttled
    rows = list(svc.storage.table(st.ACTIVITIES).list_entities())
    stored = {r["event_id"]: r["interactive"] for r in rows}
    paths = {r.path for r in graph.requests if "/auditLogs/signIns" in r.path}
    if beta:
        assert stored == {interactive["id"]: True, refresh["id"]: False}
        assert paths == {"/beta/auditLogs/signIns"}
    else:
        assert stored == {interactive["id"]: True}
        assert paths == {"/v1.0/auditLogs/signIns"}
