"""The Entra pull killed between writing an activity too large for a message and queueing it by
key: the next pull still queues it for detection (nothing lost).

The pull runs in a process of its own on real Azurite and the simulated Graph; it SIGKILLs itself
as it is about to queue a by-key message, so its rows are written and nothing after that line
runs (no `finally`, no state save). The next pull, in this process, must find the message.

Entra's fields are at most 4,096 characters each, so a real sign-in stays well under a queue
message (45,000 characters); both processes lower that limit (`MAX_MESSAGE_CHARS`) so that one
sign-in with a long browser string goes by key while an ordinary one is carried.
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from local.sim_graph import SimulatedGraph
from shared import activities
from shared import storage as st
from shared.activities import ActivityBatch
from shared.entra.pull import pull
from shared.services import Services
from tests.conftest import use_simulated_graph
from tests.entra_samples import sign_in

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1000  # characters of a message: an ordinary sign-in is about 520
USER, UPN = "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "ana@contoso.example"
KILLED_AT_BY_KEY_ENQUEUE = """
import os, signal, sys
from datetime import datetime
from shared import activities
from shared.activities import ActivityBatch
from shared.entra.pull import pull
from shared.services import Services, get_services

send = Services.enqueue_detection

def enqueue(self, message, visibility_timeout=0):
    if not ActivityBatch.from_message(message.encode()).activities:  # by key: die here
        os.kill(os.getpid(), signal.SIGKILL)
    send(self, message, visibility_timeout)

Services.enqueue_detection = enqueue
activities.MAX_MESSAGE_CHARS = int(sys.argv[2])
pull(get_services().entra_pull_deps, datetime.fromisoformat(sys.argv[1]))
"""


@pytest.fixture
def graph(vigil_env: dict[str, str]) -> Iterator[SimulatedGraph]:
    with SimulatedGraph() as sim:
        yield sim


def queued(svc: Services) -> list[ActivityBatch]:
    q = svc.storage.queue(svc.settings.activity_queue)
    return [ActivityBatch.from_message(m.content) for m in q.peek_messages(32)]


def test_a_pull_killed_before_queueing_by_key_leaves_it_for_the_next_pull(
    graph: SimulatedGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_SOURCES", "entra")
    monkeypatch.setattr(activities, "MAX_MESSAGE_CHARS", LIMIT)
    svc = use_simulated_graph(monkeypatch, graph)
    now = datetime.now(UTC)
    big = sign_in(now - timedelta(minutes=10), user_id=USER, upn=UPN)
    noise = base64.b64encode(random.Random(7).randbytes(1500)).decode()  # no zlib gain
    big["deviceDetail"]["browser"] = noise
    small = sign_in(now - timedelta(minutes=5), user_id=USER, upn=UPN)
    graph.audit_logs.add("signIns", big, small)

    worker = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, "-c", KILLED_AT_BY_KEY_ENQUEUE, now.isoformat(), str(LIMIT)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == -9, worker.stderr[-2000:]
    stored = {r["event_id"]: r["RowKey"] for r in svc.storage.table(st.ACTIVITIES).list_entities()}
    assert set(stored) == {big["id"], small["id"]}  # both written before the kill
    before = queued(svc)
    assert [b.row_keys for b in before if not b.activities] == []  # the by-key one never sent
    assert [a.event_id for b in before for a in b.activities] == [small["id"]]

    pull(
        svc.entra_pull_deps, now + timedelta(minutes=1)
    )  # the overlap re-reads both: neither is new now
    by_key = [b.row_keys for b in queued(svc) if not b.activities]
    assert by_key == [(stored[big["id"]],)]
    (loaded,) = svc.activities.load(next(b for b in queued(svc) if not b.activities))
    assert loaded.event_id == big["id"]
    pull(svc.entra_pull_deps, now + timedelta(minutes=2))  # and once only
    assert len([b for b in queued(svc) if not b.activities]) == 1
