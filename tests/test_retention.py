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
from shared.notify.records import CAPS_PARTITION, NotifyRecord, NotifyStore
from shared.quarantine import quarantine
from shared.services import Services
from shared.siem.outbox import PENDING, SENT, SiemOutbox, alert_key
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
        notifications=svc.storage.table(st.NOTIFICATIONS),
        siem_outbox=svc.storage.table(st.SIEM_OUTBOX),
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


def notified(store: NotifyStore, a: Alert, destination: str, at: datetime) -> None:
    """The alert's record as delivery leaves it: decided on `at`'s day, sent at `at`."""
    record = NotifyRecord(a.tenant_id, a.id, destination, "alert", at.date(), updated_at=at)
    store.save(record.evolve(status="sent"), None)


def test_notification_records_go_with_their_alert_once_no_message_can_need_them(
    svc: Services,
) -> None:
    store = NotifyStore(svc.storage.table(st.NOTIFICATIONS))
    old, old_late, recent = (
        alert_at("old", NOW - 400 * DAY),
        alert_at("old-late", NOW - 390 * DAY),  # raised a year ago, notified two days ago
        alert_at("recent", NOW - 30 * DAY),
    )
    for a in (old, old_late, recent):
        svc.alerts.save(a)
    for destination in ("email", "webhook"):
        notified(store, old, destination, NOW - 399 * DAY)
        notified(store, recent, destination, NOW - 30 * DAY)
    notified(store, old_late, "email", NOW - 2 * DAY)
    for days_ago in (30, 8, 7, 0):
        assert store.within_cap("email", (NOW - days_ago * DAY).date(), f"c{days_ago}", 5)

    deleted = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)

    assert deleted.alerts == 1 and deleted.notifications == 2 + 2  # old's two, two cap days
    assert sorted(a.id for a in svc.alerts.for_tenant(TENANT)) == ["old-late", "recent"]
    left = sorted(r["RowKey"] for r in rows(svc, st.NOTIFICATIONS) if r["PartitionKey"] == TENANT)
    assert left == ["old-late|email", "recent|email", "recent|webhook"]
    caps = [r["RowKey"] for r in rows(svc, st.NOTIFICATIONS) if r["PartitionKey"] == CAPS_PARTITION]
    assert sorted(k.rpartition("|")[2] for k in caps) == [
        (NOW - n * DAY).date().isoformat() for n in (7, 0)
    ]
    # Once its notification is old enough, the late one goes too, with its record.
    later = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW + 7 * DAY)
    assert (later.alerts, later.notifications) == (1, 1 + 1)  # and the cap day now 14 days old
    assert [a.id for a in svc.alerts.for_tenant(TENANT)] == ["recent"]


def test_sent_siem_records_go_by_their_day_and_waiting_rows_stay(svc: Services) -> None:
    outbox = SiemOutbox(svc.storage.table(st.SIEM_OUTBOX))
    sent_long_ago = [alert_at(f"s{n}", NOW - 20 * DAY) for n in range(150)]  # two transactions
    sent_lately, waiting = alert_at("lately", NOW - DAY), alert_at("waiting", NOW - 300 * DAY)
    for a in [*sent_long_ago, sent_lately, waiting]:
        assert outbox.add_alert(a)
    outbox.mark_sent([alert_key(a) for a in sent_long_ago], NOW - 9 * DAY, "b1")
    outbox.mark_sent([alert_key(sent_lately)], NOW - 7 * DAY, "b2")
    table = svc.storage.table(st.SIEM_OUTBOX)
    # A run that stopped between a record and its index row: the record is gone already.
    table.delete_entity(SENT, alert_key(sent_long_ago[120]))

    deleted = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)

    assert deleted.siem_sent == 150
    by_partition: dict[str, list[str]] = {}
    for r in rows(svc, st.SIEM_OUTBOX):
        by_partition.setdefault(r["PartitionKey"], []).append(r["RowKey"])
    assert by_partition == {
        PENDING: [alert_key(waiting)],  # never sent: never deleted, however old
        SENT: [alert_key(sent_lately)],
        f"sent_{NOW - 7 * DAY:%Y%m%d}": [alert_key(sent_lately)],
    }
    assert not outbox.add_alert(sent_lately)  # still within a message's life: not sent twice
    again = retention.run(svc.storage, svc.inbox, [TENANT], 180, 365, NOW)
    assert again.siem_sent == 0


def test_the_entra_tenant_is_cleaned_by_its_own_partitions(svc: Services) -> None:
    from shared.quarantine import quarantine as keep

    entra = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    for age in (200, 10):
        svc.activities.write(
            [replace(act(at=NOW - age * DAY, tenant_id=entra), source="entra") for _ in range(1)]
        )
    svc.alerts.save(replace(alert_at("entra-old", NOW - 400 * DAY), tenant_id=entra))
    received = NOW - 190 * DAY
    keep(svc.quarantine_deps, "entra", f"{ticks_key(received)}_x", b"{}", "no id", received)

    deleted = retention.run(svc.storage, svc.inbox, [], 180, 365, NOW, entra_tenants=[entra])

    assert (deleted.activities, deleted.alerts, deleted.quarantine) == (1, 1, 1)
    assert [r["PartitionKey"] for r in rows(svc, st.ACTIVITIES)] == [
        f"entra_{entra}_{NOW - 10 * DAY:%Y%m%d}"
    ]
    assert svc.alerts.for_tenant(entra) == [] and rows(svc, st.QUARANTINE) == []
    odd = retention.run(svc.storage, svc.inbox, [], 180, 365, NOW, entra_tenants=["x' or 1"])
    assert odd.skipped_tenants == ["x' or 1"]
