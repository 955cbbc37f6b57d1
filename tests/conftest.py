"""Shared fixtures: real Azurite for the session, and isolated Vigil storage per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from local.azurite import ensure_azurite
from shared import services
from shared.services import Services


@pytest.fixture(scope="session")
def azurite_connection_string() -> Iterator[str]:
    with ensure_azurite() as conn:
        yield conn


@pytest.fixture
def vigil_env(
    azurite_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Environment for one test: its own tables and queues on Azurite, no real SaaS anywhere."""
    uid = uuid.uuid4().hex[:10]
    env = {
        "AzureWebJobsStorage": azurite_connection_string,
        "STORAGE_PREFIX": f"t{uid}",
        "ACTIVITY_QUEUE": f"t{uid}-activity",
        "GOVERN_QUEUE": f"t{uid}-govern",
        "WORKPLACE_APP_ID": "1234567890",
        "WORKPLACE_APP_SECRET": "wp-app-secret-for-tests",
        "WORKPLACE_REDIRECT_URI": "http://127.0.0.1:7071/api/workplace/callback",
        "WORKPLACE_WEBHOOK_VERIFY_TOKEN": "verify-me",
        "SYNC_SCHEDULE": "*/5 * * * * *",
        "GOVERNANCE_MODE": "enforce",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    services.reset()
    yield env
    services.reset()


@pytest.fixture
def svc(vigil_env: dict[str, str]) -> Services:
    return services.get_services()
