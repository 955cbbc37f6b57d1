"""The connector over real HTTP through the local functions host: install, webhooks, the timer,
the status page (function key) and Workplace's uninstall callback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from local.stack import Stack, local_stack
from shared.services import get_services

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    with local_stack(port=None, triggers=False) as s:
        yield s


def test_status_and_uninstall_over_http(stack: Stack) -> None:
    wp = stack.workplace
    assert stack.install().status_code == 200
    member = wp.members[2]
    changes = [
        wp.change("LOGIN_FAILED", actor=member, ip="203.0.113.9", ip_country="BR",
                  timestamp=START + timedelta(seconds=i))
        for i in range(3)
    ] + [wp.change("MYSTERY_EVENT", field="login", actor=member, ip="203.0.113.9",
                   ip_country="BR", timestamp=START)]  # fmt: skip
    assert wp.deliver(stack.webhook_url, wp.security_envelope(changes)).status_code == 200
    stack.host.run_timer("sync_timer")

    url = f"{stack.api}/workplace/status"
    assert requests.get(url, timeout=10).status_code == 401  # function key required
    resp = requests.get(url, headers={"x-functions-key": stack.function_key}, timeout=10)
    assert resp.status_code == 200
    (shown,) = resp.json()["installs"]
    assert (shown["community_id"], shown["mode"], shown["state"]) == (
        wp.community_id,
        "install",
        "active",
    )
    assert shown["counts_by_event"] == {"LOGIN_FAILED": 3, "MYSTERY_EVENT": 1}
    assert shown["unknown_events"] == {"MYSTERY_EVENT": 1}
    assert shown["last_sync"]["users"] == len(wp.members)
    users = get_services().users.for_tenant(wp.community_id)
    assert {u.email for u in users} == {m.email for m in wp.members}

    uninstall_url = f"{stack.api}/workplace/uninstall"
    forged = requests.post(
        uninstall_url, data={"signed_request": "AAAA.eyJjb21tdW5pdHlfaWQiOiIxIn0"}, timeout=10
    )
    assert forged.status_code == 401
    assert wp.deliver_uninstall(uninstall_url, encoding="raw").status_code == 200
    resp = requests.get(url, headers={"x-functions-key": stack.function_key}, timeout=10)
    (shown,) = resp.json()["installs"]
    assert shown["state"] == "uninstalled"
    assert shown["counts_by_event"] == {"LOGIN_FAILED": 3, "MYSTERY_EVENT": 1}  # data kept
    assert get_services().workplace_token(wp.community_id) is None
