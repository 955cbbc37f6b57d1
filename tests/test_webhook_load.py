"""A load test of the webhook endpoint on loopback: 10,000 signed deliveries in bursts.

Bounded in count (10,000) and in time (each request times out; the whole run has a deadline
so a stall fails instead of hanging). Speed itself is measured by `make bench`, not here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from local.stack import APP_SECRET, Stack, local_stack
from shared.services import get_services
from tests.samples import value

DELIVERIES = 10_000
BURST = 500
WORKERS = 16
DEADLINE_S = 600


@pytest.fixture
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    with local_stack(port=None, triggers=False) as s:
        yield s


def body(i: int) -> bytes:
    change: dict[str, Any] = {
        "field": "login",
        "value": value("LOGIN", actor=str(10_000 + i % 1000), ip=f"198.51.100.{i % 250}"),
    }
    change["value"]["seq"] = i  # every delivery distinct
    return json.dumps(
        {"object": "workplace_security", "entry": [{"id": "1", "time": i, "changes": [change]}]}
    ).encode()


def test_ten_thousand_signed_deliveries_are_each_stored_exactly_once(stack: Stack) -> None:
    local = threading.local()

    def post(i: int) -> tuple[int, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        data = body(i)
        sig = hmac.new(APP_SECRET.encode(), data, hashlib.sha256).hexdigest()
        resp = session.post(
            stack.webhook_url,
            data=data,
            timeout=30,
            headers={"X-Hub-Signature-256": f"sha256={sig}"},
        )
        return i, resp.status_code

    deadline = time.monotonic() + DEADLINE_S
    statuses: dict[int, int] = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for start in range(0, DELIVERIES, BURST):
            assert time.monotonic() < deadline, f"stalled after {len(statuses)} deliveries"
            statuses.update(pool.map(post, range(start, min(start + BURST, DELIVERIES))))
    assert len(statuses) == DELIVERIES and set(statuses.values()) == {200}
    stored = get_services().inbox.oldest(DELIVERIES + 100)
    assert len(stored) == DELIVERIES
    assert {e.body for e in stored} == {body(i) for i in range(DELIVERIES)}
