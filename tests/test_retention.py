"""Retention on Azurite: what is past its retention goes, the rest stays, and the storage
requests it takes depend on what is deleted, not on how much is kept."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from retention_timer import retention_timer
from shared import retention
from shared import storage as st
from shared.detection.daily_limit import DailyLimits
from shared.installs import InstallStates
from shared.models import Alert, Install
from shared.quarantine import quarantine
from shared.services import Services
from shared.storage import ticks_key
from tests.detect_samples import TENANT, act
from tests.test_alerts_api import alert

NOW = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NEIGHBOUR = TENANT + "1"  # a community whose id starts with TENANT's: never in its key range


@pytest.fixture
def requests_made() -> Iterator[list[str]]:
    seen: list[str] = []

    def hook(request: Any) -> None:
        seen.append(f"{request.http_request.method} {request.http_request.url}")

    st.REQUEST_HOOKS.append(hook)
    yield seen
    st.REQUEST_HOOKS.remove(hook)


def install(svc: Services, community: str) -> None:
    svc.installs.save(Install(community, "Contoso", "i1", "install", "active", NOW - 900 * DAY))


def activities(svc: Services, tenant: str, day: datetime, n: int) -> None:
    svc.activities.write(
        [
            act(at=day + i * timedelta(seconds=7), user=f"{i % 9}", tenant_id=tenant)
            for i in range(n)
        ]
    )


def rows(svc: Services, table: str) -> list[dict[str, Any]]:
    return list(svc.storage.table(table).list_entities())


def seed_expired(svc: Services, shift: timedelta) -> None:
    """The same amount of expired data each time (`shift` keeps it apart from earlier seeds)."""
    for age in (181, 200):
        activities(svc, TENANT, NOW - age * DAY - shift, 30)
    svc.alerts.save(alert_at(f"old{shift.days}", NOW - 400 * DAY - shift))
    body = b'{"object": "page"'
    received = NOW - 190 * DAY - shift
    key = f"{ticks_key(received)}_{hashlib.sha256(body).hexdigest()[:24]}"
    quarantine(svc.quarantine_deps, "workplace", key, body, "not JSON", received)


def alert_at(alert_id: str, first: datetime) -> Alert:
    a = alert(1, tenant=TENANT)
    return replace(
        a, id=alert_id, first_activity_time=first, last_activity_time=first, created_time=first
    )


def test_old_rows_go_and_newer_stay(svc: Services) -> None:
    install(svc, TENANT)
    seed_expired(svc, timedelta(0))
    for age in (179, 10):
        activities(svc, TENANT, NOW - age * DAY, 20)
    activities(svc, NEIGHBOUR, NOW - 300 * DAY, 5)  # not installed: not ours to judge
    svc.alerts.save(alert_at("recent", NOW - 300 * DAY))
    big = b"x" * 700_000  # parked as a blob: goes with its row
    old_key = f"{ticks_key(NOW - 185 * DAY)}_big"
    quarantine(svc.quarantine_deps, "workplace", old_key, big, "too large", NOW - 185 * DAY)
    new_key = f"{ticks_key(NOW - 5 * DAY)}_new"
    quarantine(svc.quarantine_deps, "workplace", new_key, b"[]", "not an object", NOW - 5 * DAY)
    limits = DailyLimits(svc.storage.table(st.DETECTION_STATE))
    for days_ago in (30, 8, 7, 6, 0):
        assert limits.reserve(TENANT, "vigil.anonymous_ip", (NOW - days_ago * DAY).date(), "a", 5)
    states = svc.install_states
    stale = states.issue(NOW - 2 * DAY, timedelta(minutes=10))
    live = states.issue(NOW, timedelta(minutes=10))
    legacy_table = svc.storage.table(st.INSTALL_STATES)
    for name, expires in (("legacy-old", NOW - DAY), ("legacy-live", NOW + DAY)):
        key = hashlib.sha256(name.encode()).hexdigest()  # a state's row key is its hash
        legacy_table.create_entity({"PartitionKey": "state", "RowKey": key, "ExpiresAt": expires})
    blobs_before = {b.name for b in svc.storage.container("inbox").list_blobs()}
    assert any(n.startswith("quarantine/") for n in blobs_before)

    deleted = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)

    assert (deleted.activities, deleted.alerts, deleted.quarantine) == (60, 1, 2)
    assert (deleted.daily_limits, deleted.install_states) == (2, 2)
    days = {r["PartitionKey"] for r in rows(svc, st.ACTIVITIES)}
    assert days == {
        f"workplace_{TENANT}_{NOW - 179 * DAY:%Y%m%d}",
        f"workplace_{TENANT}_{NOW - 10 * DAY:%Y%m%d}",
        f"workplace_{NEIGHBOUR}_{NOW - 300 * DAY:%Y%m%d}",
    }
    assert [a.id for a in svc.alerts.for_tenant(TENANT)] == ["recent"]
    assert [r["RowKey"] for r in rows(svc, st.QUARANTINE)] == [new_key]
    assert not any(
        n.startswith("quarantine/")
        for n in (b.name for b in svc.storage.container("inbox").list_blobs())
    )
    daily = sorted(
        r["RowKey"] for r in rows(svc, st.DETECTION_STATE) if r["RowKey"].startswith("daily|")
    )
    assert [d.rpartition("|")[2] for d in daily] == [
        (NOW - n * DAY).date().isoformat() for n in (7, 6, 0)
    ]
    left = {r["RowKey"] for r in rows(svc, st.INSTALL_STATES)}
    assert left == {hashlib.sha256(s.encode()).hexdigest() for s in (live, "legacy-live")}
    assert hashlib.sha256(stale.encode()).hexdigest() not in left
    # Both kinds of state still work after the change of keys.
    assert states.consume(live, NOW) and states.consume("legacy-live", NOW)
    # A second pass finds nothing more to delete.
    again = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)
    assert (again.activities, again.alerts, again.quarantine, again.install_states) == (0, 0, 0, 0)


def test_a_run_stopped_midway_is_finished_by_the_next(svc: Services) -> None:
    retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)  # creates its tables
    seed_expired(svc, timedelta(0))
    tables = retention.Tables(
        activities=svc.storage.table(st.ACTIVITIES),
        alerts=svc.storage.table(st.ALERTS),
        quarantine=svc.storage.table(st.QUARANTINE),
        detection_state=svc.storage.table(st.DETECTION_STATE),
        install_states=svc.storage.table(st.INSTALL_STATES),
        held=svc.storage.table(st.HELD_EVENTS),
    )
    cutoffs = retention.Cutoffs.at(NOW, 180, 365)
    asked: list[int] = []

    def out_of_time_after_40_rows() -> bool:
        asked.append(1)
        return len(asked) <= 40

    first = retention.purge(
        tables, [TENANT], cutoffs, NOW, svc.inbox, keep_going=out_of_time_after_40_rows, workers=3
    )
    assert not first.finished and first.activities == 40
    assert len(rows(svc, st.ACTIVITIES)) == 20 and len(rows(svc, st.ALERTS)) == 1
    second = retention.purge(tables, [TENANT], cutoffs, NOW, svc.inbox)
    assert second.finished and (second.activities, second.alerts, second.quarantine) == (20, 1, 1)
    assert rows(svc, st.ACTIVITIES) == [] and rows(svc, st.QUARANTINE) == []


def test_zero_keeps_activities_and_alerts_forever(svc: Services) -> None:
    seed_expired(svc, timedelta(0))
    deleted = retention.run(svc.storage, svc.inbox, [TENANT], 0, 0, NOW)
    assert (deleted.activities, deleted.alerts, deleted.quarantine) == (0, 0, 0)
    assert len(rows(svc, st.ACTIVITIES)) == 60 and len(rows(svc, st.ALERTS)) == 1


def test_requests_do_not_grow_with_what_is_kept(svc: Services, requests_made: list[str]) -> None:
    install(svc, TENANT)
    retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)  # creates its tables
    seed_expired(svc, timedelta(0))
    activities(svc, TENANT, NOW - 5 * DAY, 10)
    requests_made.clear()
    retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)
    small = list(requests_made)

    # 22 kept partitions instead of 1 (560 rows instead of 10), 40 more alerts, and the same
    # amount of expired data again.
    for age in range(1, 170, 8):
        activities(svc, TENANT, NOW - age * DAY, 25)
    for n in range(40):
        svc.alerts.save(alert(n, tenant=TENANT))
    seed_expired(svc, 3 * DAY)
    requests_made.clear()
    deleted = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)
    assert deleted.activities == 60 and deleted.alerts == 1
    assert len(requests_made) == len(small), (small, requests_made)
    reads = [r for r in requests_made if r.startswith("GET")]
    assert all("PartitionKey" in r for r in reads), reads  # no query without a partition bound


def test_the_timer_cleans_the_installed_communities(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.functions.timer import TimerRequest

    install(svc, TENANT)
    seed_expired(svc, timedelta(0))
    monkeypatch.setattr("retention_timer.now", lambda: NOW)  # the handler's wall clock
    retention_timer.build().get_user_function()(TimerRequest(past_due=False))
    assert rows(svc, st.ACTIVITIES) == [] and rows(svc, st.ALERTS) == []


def test_state_partitions_carry_the_expiry_day() -> None:
    assert InstallStates.partition("20261201.abc") == "state_20261201"
    assert InstallStates.partition("abc") == "state"
    assert InstallStates.partition("2026120.abc") == "state"


def test_cutoffs_are_wall_clock_minus_the_retention() -> None:
    c = retention.Cutoffs.at(NOW, 180, 365)
    assert c.activity_day == date(2026, 6, 4) and c.alert_time == NOW - 365 * DAY
    assert c.daily_limit_day == date(2026, 11, 24) and c.state_day == date(2026, 12, 1)


def test_held_events_and_detection_quarantine_go_by_their_key_times(svc: Services) -> None:
    from shared.held import HeldEvent, HeldEvents
    from shared.quarantine import quarantine_activities

    install(svc, TENANT)  # uninstalled later: its held events are found by its partition
    held = HeldEvents(svc.storage.table(st.HELD_EVENTS))
    old, new = act(at=NOW - 200 * DAY, tenant_id=TENANT), act(at=NOW - DAY, tenant_id=TENANT)
    stranger = act(at=NOW - 300 * DAY, tenant_id="777000777")  # a community never installed
    held.hold(
        [
            HeldEvent("e1", NOW - 200 * DAY, old, "no active install"),
            HeldEvent("e2", NOW - DAY, new, "no active install"),
            HeldEvent("e3", NOW - 300 * DAY, stranger, "no active install"),
        ]
    )
    quarantine_activities(
        svc.quarantine_deps, [old], "detection raised ValueError", NOW - 199 * DAY
    )
    quarantine_activities(svc.quarantine_deps, [new], "detection raised ValueError", NOW)

    deleted = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)

    assert (deleted.held, deleted.quarantine) == (2, 1)
    kept = [r for r in rows(svc, st.HELD_EVENTS) if "Entry" in r]  # less the communities index
    assert [r["Entry"] for r in kept] == ["e2"]
    (left,) = rows(svc, st.QUARANTINE)
    assert left["PartitionKey"] == "detection" and left["RowKey"] > st.ticks_key(NOW - 2 * DAY)
