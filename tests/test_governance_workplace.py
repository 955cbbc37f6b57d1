"""Workplace account actions (log out everywhere, deactivate and its revert) over real HTTP.

A small server here answers them the way workplace-api.md §8.1 describes (`{"success": true}`,
Graph error envelopes) and serves scripted errors; test_governance_crash.py uses
local/sim_workplace.py, which carries them out on its members.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared import services
from shared.governance import actions as act
from shared.governance.attempt import RetryLater
from shared.governance.commands import Refused, revert
from shared.services import Services
from tests.test_governance import NOW, TENANT, governance, record_of, run, stored_alert

WP_USER = "100042"


@dataclass
class AccountActions:
    """Records `POST /{id}/logout` and `POST /{id}?active=` and answers scripted errors first."""

    url: str = ""
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    errors: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def workplace() -> Iterator[AccountActions]:
    state = AccountActions()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with state.lock:
                state.seen.append((parts.path, query))
                scripted = state.errors.pop(0) if state.errors else None
            status, body, headers = scripted or (200, {"success": True}, {})
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def wsvc(
    vigil_env: dict[str, str], workplace: AccountActions, monkeypatch: pytest.MonkeyPatch
) -> Services:
    monkeypatch.setenv("WORKPLACE_GRAPH_URL", workplace.url)
    services.reset()
    svc = services.get_services()
    svc.secrets.set(f"workplace-token-{TENANT}", "wp-community-token")
    return svc


def error(code: int, status: int = 400) -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"error": {"message": "m", "type": "OAuthException", "code": code}}, {}


def test_logout_everywhere_once(wsvc: Services, workplace: AccountActions) -> None:
    request = stored_alert(wsvc, action=act.WORKPLACE_LOGOUT, user_id=WP_USER)
    record = run(wsvc, request)
    assert record.status == "succeeded" and record.target == WP_USER
    ((path, query),) = workplace.seen
    assert path == f"/{WP_USER}/logout" and "appsecret_proof" in query
    assert "access_token" not in record.detail and "wp-community-token" not in repr(record)
    assert run(wsvc, request) == record and len(workplace.seen) == 1  # redelivery


def test_deactivate_once_and_revert_reactivates(wsvc: Services, workplace: AccountActions) -> None:
    request = stored_alert(wsvc, action=act.WORKPLACE_DEACTIVATE, user_id=WP_USER)
    record = run(wsvc, request)
    assert record.status == "succeeded"
    assert run(wsvc, request) == record
    assert [(p, q["active"]) for p, q in workplace.seen] == [(f"/{WP_USER}", "false")]
    done = revert(governance(wsvc), record.id, "soc@contoso.com", NOW)
    assert done.status == "reverted"
    assert [(p, q["active"]) for p, q in workplace.seen][-1] == (f"/{WP_USER}", "true")


@pytest.mark.parametrize("code", [4, 17, 613])
def test_workplace_throttling_returns_the_work_to_the_queue(
    wsvc: Services, workplace: AccountActions, code: int
) -> None:
    workplace.errors.append(error(code))
    request = stored_alert(wsvc, action=act.WORKPLACE_LOGOUT, user_id=WP_USER)
    with pytest.raises(RetryLater):
        run(wsvc, request)
    assert record_of(wsvc, request).error_code == f"workplace_{code}"
    assert run(wsvc, request).status == "succeeded"


def test_a_workplace_429_honours_retry_after_by_backing_off(
    wsvc: Services, workplace: AccountActions
) -> None:
    workplace.errors.append((429, {"error": {"message": "slow down", "code": 4}}, {}))
    with pytest.raises(RetryLater) as later:
        run(wsvc, stored_alert(wsvc, action=act.WORKPLACE_DEACTIVATE, user_id=WP_USER))
    assert later.value.delay >= 1


def test_a_missing_permission_fails_fast(wsvc: Services, workplace: AccountActions) -> None:
    workplace.errors.append(error(200, 403))
    record = run(wsvc, stored_alert(wsvc, action=act.WORKPLACE_DEACTIVATE, user_id=WP_USER))
    assert record.status == "failed" and record.error_code == "workplace_200"
    assert "HTTP 403" in record.error_message and len(workplace.seen) == 1


def test_no_workplace_token_fails_and_says_what_to_do(
    wsvc: Services, workplace: AccountActions
) -> None:
    wsvc.secrets.delete(f"workplace-token-{TENANT}")
    record = run(wsvc, stored_alert(wsvc, action=act.WORKPLACE_LOGOUT, user_id=WP_USER))
    assert record.status == "failed" and record.error_code == "no_workplace_token"
    assert "reinstall" in record.error_message and workplace.seen == []


def test_a_protected_workplace_account_is_never_deactivated(
    vigil_env: dict[str, str], workplace: AccountActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKPLACE_GRAPH_URL", workplace.url)
    monkeypatch.setenv("GOVERNANCE_PROTECTED_ACCOUNTS", WP_USER)
    services.reset()
    svc = services.get_services()
    svc.secrets.set(f"workplace-token-{TENANT}", "wp-community-token")
    record = run(svc, stored_alert(svc, action=act.WORKPLACE_DEACTIVATE, user_id=WP_USER))
    assert record.status == "skipped" and record.error_code == "protected_account"
    assert workplace.seen == []
    with pytest.raises(Refused):
        revert(governance(svc), record.id, "soc", NOW)
