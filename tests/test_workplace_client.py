"""The Workplace client against the simulated tenant: proofs, paging, throttling and faults."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from local.sim_workplace import SimulatedWorkplace
from shared.workplace.client import (
    FailureKind,
    RetryPolicy,
    WorkplaceClient,
    WorkplaceError,
    pacing_delay,
    usage_percent,
)

APP_ID, SECRET = "880000000000001", "sim-secret"
REDIRECT = "http://127.0.0.1:7071/api/workplace/callback"


@pytest.fixture
def wp() -> Iterator[SimulatedWorkplace]:
    with SimulatedWorkplace(app_id=APP_ID, app_secret=SECRET) as sim:
        yield sim


def client(wp: SimulatedWorkplace, waits: list[float], app_id: str = APP_ID) -> WorkplaceClient:
    policy = RetryPolicy(sleep=waits.append, rng=random.Random(7))
    return WorkplaceClient(wp.url, app_id, SECRET, retry=policy)


def install_token(wp: SimulatedWorkplace, c: WorkplaceClient) -> str:
    return c.exchange_code(wp.issue_install_code(REDIRECT), REDIRECT)


def test_every_call_with_an_install_token_carries_a_fresh_proof(wp: SimulatedWorkplace) -> None:
    c = client(wp, [])
    token = install_token(wp, c)
    community = c.community(token)
    assert community.id == wp.community_id and community.install_id
    page = c.page("/community/members", token, fields="id,email", limit=3)
    assert len(page.data) == 3
    for r in wp.requests_to("/community") + wp.requests_to("/community/members"):
        assert r.query["appsecret_proof"] and r.query["appsecret_time"].isdigit()
        assert r.status == 200


def test_a_custom_integration_token_works_without_an_app_id(wp: SimulatedWorkplace) -> None:
    token = wp.add_custom_integration(require_proof=True)
    community = client(wp, [], app_id="").community(token)
    assert (community.id, community.install_id) == (wp.community_id, "")


def test_cursor_paging_reads_every_member_once(wp: SimulatedWorkplace) -> None:
    for i in range(30):
        wp.add_member(f"Person {i}", f"p{i}@contoso.com")
    c = client(wp, [])
    token = install_token(wp, c)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = c.page("/community/members", token, fields="id", after=after, limit=7)
        seen += [r["id"] for r in page.data]
        if page.after is None:
            break
        after = page.after
    active = [m.id for m in wp.members if m.active]
    assert seen == active and len(set(seen)) == len(active)


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, None), (500, None), (503, None), (400, 1), (500, 2), (400, 4), (400, 17), (400, 32),
     (400, 341), (400, 613)],
)  # fmt: skip
def test_throttling_and_transient_faults_back_off_with_jitter_and_retry(
    wp: SimulatedWorkplace, status: int, code: int | None
) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.fail("/community", status=status, code=code, times=2)
    assert c.community(token).id == wp.community_id
    assert len(waits) == 2 and all(w > 0 for w in waits)
    assert waits[0] != waits[1]
    statuses = [r.status for r in wp.requests_to("/community")]
    assert statuses == [status, status, 200]


def test_retry_after_is_honoured(wp: SimulatedWorkplace) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.fail("/community", status=429, retry_after=3)
    c.community(token)
    assert waits == [3.0]


def test_a_wait_longer_than_the_budget_is_left_to_the_next_run(wp: SimulatedWorkplace) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.fail("/community", status=429, retry_after=3600)
    with pytest.raises(WorkplaceError) as caught:
        c.community(token)
    assert caught.value.kind is FailureKind.THROTTLED and caught.value.retry_after == 3600
    assert waits == []


def test_faults_that_persist_give_up_after_the_attempts(wp: SimulatedWorkplace) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.fail("/community", status=503, times=10)
    with pytest.raises(WorkplaceError) as caught:
        c.community(token)
    assert caught.value.kind is FailureKind.TRANSIENT
    assert len(wp.requests_to("/community")) == c.retry.attempts


def test_calls_slow_down_when_usage_passes_80_percent(wp: SimulatedWorkplace) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.app_usage = {"call_count": 50, "total_cputime": 10, "total_time": 12}
    c.community(token)
    c.community(token)
    assert waits == []
    wp.app_usage = {"call_count": 95, "total_cputime": 10, "total_time": 12}
    c.community(token)
    c.community(token)
    assert len(waits) == 1 and waits[0] > 5
    wp.app_usage = None
    wp.business_usage = {
        "504942447160640": [
            {"type": "pages", "call_count": 100, "total_cputime": 1, "total_time": 1,
             "estimated_time_to_regain_access": 1}
        ]
    }  # fmt: skip
    c.community(token)
    c.community(token)
    assert waits[-1] == 10.0  # the advised minute, capped at the client's longest pause


def test_usage_headers_parse_both_shapes() -> None:
    assert usage_percent({"x-app-usage": '{"call_count":81,"total_time":3}'}) == (81.0, None)
    bucu = '{"1":[{"type":"x","call_count":5,"total_time":90,"estimated_time_to_regain_access":2}]}'
    assert usage_percent({"x-business-use-case-usage": bucu}) == (90.0, 120.0)
    assert usage_percent({"x-app-usage": "not json"}) == (0.0, None)
    assert pacing_delay(79, None, 10) == 0.0
    assert 0 < pacing_delay(85, None, 10) < pacing_delay(99, None, 10) <= 10


def test_token_errors_are_classified_and_not_retried(wp: SimulatedWorkplace) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.fail("/community", status=400, code=190)
    with pytest.raises(WorkplaceError) as caught:
        c.community(token)
    assert caught.value.kind is FailureKind.REAUTH
    wp.fail("/community", status=400, code=102)
    with pytest.raises(WorkplaceError) as caught:
        c.community(token)
    assert caught.value.kind is FailureKind.REAUTH
    wp.uninstall()
    with pytest.raises(WorkplaceError) as caught:
        c.community(token)
    assert (caught.value.kind, caught.value.code, caught.value.subcode) == (
        FailureKind.UNINSTALLED,
        190,
        458,
    )
    assert waits == []
    assert token not in str(caught.value)


def test_after_the_shutdown_calls_are_gone_or_unreachable(wp: SimulatedWorkplace) -> None:
    waits: list[float] = []
    c = client(wp, waits)
    token = install_token(wp, c)
    wp.shut_down()
    with pytest.raises(WorkplaceError) as caught:
        c.community(token)
    assert caught.value.kind is FailureKind.GONE and caught.value.status == 404
    url = wp.url
    wp.stop()
    dead = WorkplaceClient(url, APP_ID, SECRET, retry=RetryPolicy(sleep=waits.append))
    with pytest.raises(WorkplaceError) as caught:
        dead.community(token)
    assert caught.value.kind is FailureKind.UNREACHABLE
    assert token not in str(caught.value)
