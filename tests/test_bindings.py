"""The function bindings, as the Functions host indexes them (no host needed)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from function_app import app

ROOT = Path(__file__).resolve().parents[1]


@functools.cache  # get_functions() may be called once per app: a second call sees duplicates
def triggers() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fn in app.get_functions():
        bindings = json.loads(fn.get_function_json())["bindings"]
        (trigger,) = [b for b in bindings if b["type"].endswith("Trigger")]
        out[str(fn.get_function_name())] = trigger
    return out


def test_the_app_indexes_every_function_once_with_its_trigger() -> None:
    assert triggers() == {
        "connect_install": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "workplace/install",
        },
        "connect_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET", "POST"],
            "authLevel": "ANONYMOUS",
            "route": "workplace/{action:regex(^(callback|webhook|uninstall)$)}",
        },
        "connect_status": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "workplace/status",
        },
        "sources_status": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "FUNCTION",
            "route": "sources/status",
        },
        "sync_timer": {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%SYNC_SCHEDULE%",
            "runOnStartup": False,
        },
        "notify_queue": {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%NOTIFY_QUEUE%",
            "connection": "AzureWebJobsStorage",
        },
        "siem_timer": {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%LOG_ANALYTICS_SCHEDULE%",
            "runOnStartup": False,
        },
        "detect_queue": {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%ACTIVITY_QUEUE%",
            "connection": "AzureWebJobsStorage",
        },
        "alerts_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",  # the app authorises (shared/access.py)
            "route": "alerts",
        },
        "intel_timer": {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%TOR_REFRESH_SCHEDULE%",
            "runOnStartup": False,
        },
        "retention_timer": {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "%RETENTION_SCHEDULE%",
            "runOnStartup": False,
        },
        "govern_queue": {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "msg",
            "queueName": "%GOVERN_QUEUE%",
            "connection": "AzureWebJobsStorage",
        },
        "governance_actions": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "governance/actions",
        },
        "governance_command": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["POST"],
            "authLevel": "ANONYMOUS",
            "route": "governance/actions/{id}/{command:regex(^(approve|retry|revert)$)}",
        },
        "alert_get": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "alerts/{id}",
        },
        "alert_patch": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["PATCH"],
            "authLevel": "ANONYMOUS",
            "route": "alerts/{id}",
        },
        "activities_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "activities",
        },
        "user_page": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "users/{id}",
        },
        "audit_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "audit",
        },
        "openapi_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "openapi.json",
        },
        "posture_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "posture",
        },
        "console_page": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "console",
        },
        "console_asset": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "console/{name}",
        },
        "me_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "me",
        },
        "posture_timer": {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "0 20 * * * *",
            "runOnStartup": False,
        },
        "suppressions_http": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["GET"],
            "authLevel": "ANONYMOUS",
            "route": "suppressions",
        },
        "suppression_delete": {
            "direction": "IN",
            "type": "httpTrigger",
            "name": "req",
            "methods": ["DELETE"],
            "authLevel": "ANONYMOUS",
            "route": "suppressions/{id}",
        },
    }


def test_host_json_sets_the_bundle_and_explicit_queue_behaviour() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    queues = host["extensions"]["queues"]
    assert queues["messageEncoding"] == "base64"
    assert {"batchSize", "maxDequeueCount", "visibilityTimeout"} <= queues.keys()


def test_v2_model_only_and_absolute_imports() -> None:
    assert not list(ROOT.glob("**/function.json"))
    for path in [*ROOT.glob("*/__init__.py"), *ROOT.glob("shared/**/*.py")]:
        if ".venv" in path.parts or "node_modules" in path.parts:
            continue
        text = path.read_text()
        assert "from .." not in text and "from __app__" not in text, path


def test_shared_never_imports_azure_functions() -> None:
    for path in (ROOT / "shared").rglob("*.py"):
        assert "azure.functions" not in path.read_text(), path


def test_binding_settings_have_defaults() -> None:
    from shared.config import SETTINGS

    defaults = {s.name: s.default for s in SETTINGS}
    for trigger in triggers().values():
        for key in ("schedule", "queueName"):
            value = trigger.get(key, "")
            if value.startswith("%"):
                assert defaults.get(value.strip("%")), value
