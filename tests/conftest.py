"""Shared fixtures: real Azurite for the session, and isolated Vigil storage per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from local.azurite import ensure_azurite
from local.sim_graph import SimulatedGraph
from local.sim_workplace import SimulatedWorkplace
from local.stack import graph_settings
from shared import services
from shared.services import Services

AUTOMATION_KEY = "automation-key-for-tests"
KEY = {"x-functions-key": AUTOMATION_KEY}


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
        "AUTOMATION_KEY": AUTOMATION_KEY,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    services.reset()
    yield env
    services.reset()


@pytest.fixture
def svc(vigil_env: dict[str, str]) -> Services:
    return services.get_services()


@pytest.fixture
def wp(vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedWorkplace]:
    """A simulated Workplace tenant that Vigil's settings point at."""
    with SimulatedWorkplace(
        app_id=vigil_env["WORKPLACE_APP_ID"], app_secret=vigil_env["WORKPLACE_APP_SECRET"]
    ) as sim:
        monkeypatch.setenv("WORKPLACE_GRAPH_URL", sim.url)
        monkeypatch.setenv("WORKPLACE_DIALOG_URL", sim.dialog_url)
        services.reset()
        yield sim


def use_simulated_graph(monkeypatch: pytest.MonkeyPatch, graph: SimulatedGraph) -> Services:
    """Point Vigil's Graph settings at the simulated Graph and return fresh services."""
    for key, value in graph_settings(graph).items():
        monkeypatch.setenv(key, value)
    services.reset()
    return services.get_services()
