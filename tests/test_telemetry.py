"""No secret in telemetry: install, sync and governance run with Vigil's Azure Monitor set-up,
and every span, log record, exception and exported envelope is searched for each secret used."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from local.azurite import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("telemetry") / "captured.json"
    done = subprocess.run(  # noqa: S603 (this interpreter, our own module)
        [sys.executable, "-m", "tests.telemetry_scenario", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def places(captured: dict[str, Any]) -> dict[str, list[str]]:
    return {
        kind: [json.dumps(item) for item in captured[kind]]
        for kind in ("spans", "otel_logs", "log_lines", "exceptions", "exported")
    }


def test_the_scenario_saw_every_call_that_carries_a_secret(captured: dict[str, Any]) -> None:
    urls = [
        s["attributes"].get("url.full") or s["attributes"].get("http.url", "")
        for s in captured["spans"]
    ]
    assert any(u.endswith("/oauth/access_token") for u in urls)  # client_secret, code
    assert any(u.endswith("/api/workplace/callback") for u in urls)  # code, state
    assert any(u.endswith("/community/members") for u in urls)  # access token, proof
    assert any(u.endswith("/revokeSignInSessions") for u in urls)  # Graph bearer token
    assert any(u.endswith("/oauth2/v2.0/token") for u in urls)  # Entra client secret
    assert captured["exported"], "nothing reached the ingestion endpoint"
    assert any("<query removed>" in line for line in captured["log_lines"])
    assert captured["exceptions"] and captured["otel_logs"]
    assert all(captured["secrets"].values())


@pytest.mark.parametrize(
    "secret",
    [
        "app secret",
        "access token",
        "appsecret_proof",
        "code",
        "state",
        "client secret",
        "bearer token",
    ],
)
def test_no_secret_in_spans_logs_exceptions_or_exported_telemetry(
    captured: dict[str, Any], secret: str
) -> None:
    values = captured["secrets"][secret]
    assert values
    for kind, items in places(captured).items():
        for item in items:
            for value in values:
                assert value not in item, f"{secret} found in {kind}: {item[:400]}"
