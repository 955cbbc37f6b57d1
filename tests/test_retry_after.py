"""`Retry-After` as delay seconds or an HTTP date (RFC 9110 §10.2.3), read the same everywhere."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from local.sim_graph import SimulatedGraph, SimUser
from local.sim_workplace import SimulatedWorkplace
from shared.governance.graph import GraphClient
from shared.governance.graph_results import GraphError
from shared.retry_after import seconds_to_wait
from shared.workplace.client import RetryPolicy, WorkplaceClient
from tests.conftest import use_simulated_graph

NOW = datetime(2026, 12, 3, 21, 0, 0, tzinfo=UTC)
REDIRECT = "http://127.0.0.1:7071/api/workplace/callback"
USER = "alice@contoso.com"


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("3", 3.0), (" 120 ", 120.0)])
def test_delay_seconds(value: str, expected: float) -> None:
    assert seconds_to_wait(value, NOW.timestamp()) == expected


def test_an_http_date_in_the_future_is_the_seconds_until_then() -> None:
    value = http_date(NOW + timedelta(seconds=90))
    assert value.endswith(" GMT")
    assert seconds_to_wait(value, NOW.timestamp()) == 90.0


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # RFC 9110's preferred format
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime format
    ],
)
def test_an_http_date_in_the_past_means_now(value: str) -> None:
    assert seconds_to_wait(value, NOW.timestamp()) == 0.0


def test_the_obsolete_formats_are_read_as_gmt() -> None:
    for value in ("Thursday, 03-Dec-26 21:00:30 GMT", "Thu Dec  3 21:00:30 2026"):
        assert seconds_to_wait(value, NOW.timestamp()) == 30.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-5",
        "1.5",
        "3 s",
        "\uff11\uff12",
        "Mon, 99 Foo 2020 99:99:99 GMT",
        "Thu, 03 Dec",
    ],
)
def test_absent_or_unreadable_values_leave_the_caller_its_own_backoff(value: str | None) -> None:
    assert seconds_to_wait(value, NOW.timestamp()) is None


# -- every client reads it: Workplace and Graph, each against its simulator ------------------


def test_the_workplace_client_waits_until_the_http_date(tmp_path: Path) -> None:
    waits: list[float] = []
    stamp = float(int(time.time()))  # the client's clock; HTTP dates have whole seconds
    with SimulatedWorkplace(app_id="880000000000001", app_secret="sim-secret") as wp:
        client = WorkplaceClient(
            wp.url,
            "880000000000001",
            "sim-secret",
            clock=lambda: stamp,
            retry=RetryPolicy(sleep=waits.append),
        )
        token = client.exchange_code(wp.issue_install_code(REDIRECT), REDIRECT)
        date = http_date(datetime.fromtimestamp(stamp + 7, UTC))
        wp.fail("/community", status=429, retry_after=date)
        assert client.community(token).id == wp.community_id
    assert waits == [7.0]


def test_the_graph_client_reads_an_http_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vigil_env: dict[str, str]
) -> None:
    with SimulatedGraph(state_dir=tmp_path) as graph:
        graph.add_user(SimUser(id=str(uuid.uuid4()), user_principal_name=USER, mail=USER))
        client = GraphClient(use_simulated_graph(monkeypatch, graph).settings)
        later = datetime.now(UTC) + timedelta(hours=1)
        graph.inject_fault(
            "POST", "revokeSignInSessions", 429, headers={"Retry-After": http_date(later)}
        )
        with pytest.raises(GraphError) as caught:
            client.revoke_sessions(USER)
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and 3000 < caught.value.retry_after <= 3600
