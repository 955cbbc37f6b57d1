"""Only installed communities are detected on and governed (on Azurite, through the signed webhook
handler, the real drain and the detection handler): the others' events are held with the reason
and counted, and events that arrived shortly before an install became active are released once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from connect_http import connect_status, workplace_callbacks
from detect_queue import detect_queue
from local.sim_workplace import SimulatedWorkplace
from shared import services
from shared import storage as st
from shared.activities import ActivityBatch
from shared.clock import now as wall_clock
from shared.held import RELEASE_WINDOW, HeldEvents
from shared.models import Activity
from shared.services import Services
from shared.workplace import connect
from shared.workplace.client import RetryPolicy
from shared.workplace.inbox_drain import drain_inbox
from shared.workplace.normalize import normalise
from sync_timer import sync_timer
from tests.samples import (
    COMMUNITY,
    T0,
    deliver,
    envelope,
    failed_logins,
    held_rows,
    install,
    value,
)

http_fn = workplace_callbacks.build().get_user_function()
status_fn = connect_status.build().get_user_function()
detect_fn = detect_queue.build().get_user_function()
sync_fn = sync_timer.build().get_user_function()
NOW = T0 + timedelta(hours=1)
OTHER = "900000000000001"


class Boom(RuntimeError):
    pass


def status() -> dict[str, Any]:
    resp = status_fn(
        func.HttpRequest("GET", "http://127.0.0.1:7071/api/workplace/status", body=b"")
    )
    assert resp.status_code == 200
    data: dict[str, Any] = json.loads(resp.get_body())
    return data


def run_detection(svc: Services) -> int:
    """Every queued detection message through the handler, as the host would; how many."""
    q = svc.storage.queue(svc.settings.activity_queue)
    n = 0
    while batch := list(q.receive_messages(messages_per_page=32, max_messages=32)):
        for m in batch:
            detect_fn(QueueMessage(id=m.id, body=m.content, dequeue_count=1))
            q.delete_message(m)
            n += 1
    return n


def stored(svc: Services, community: str) -> int:
    rows = svc.storage.table(st.ACTIVITIES).list_entities(select=["PartitionKey"])
    return sum(str(e["PartitionKey"]).startswith(f"workplace_{community}_") for e in rows)


def queued(svc: Services, queue: str) -> int:
    props = svc.storage.queue(queue).get_queue_properties()
    return int(props.approximate_message_count or 0)


def in_community(community: str, changes: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return [
        (f, {**v, "actor_community_id": community, "target_community_id": community})
        for f, v in changes
    ]


def test_a_brute_force_in_a_community_without_an_install_is_held_and_never_acted_on(
    svc: Services,
) -> None:
    install(svc)
    secret = svc.settings.webhook_secret()
    attack = failed_logins(12, ip="203.0.113.5", country="BR")
    deliver(envelope(*in_community(OTHER, attack)), secret)
    deliver(envelope(*attack), secret)  # the same attack where Vigil is installed: it alerts
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.held, result.activities) == (12, 12)
    assert run_detection(svc) == 1
    assert [a.tenant_id for a in svc.alerts.for_tenant(COMMUNITY)] == [COMMUNITY]
    assert svc.alerts.for_tenant(OTHER) == []
    assert stored(svc, OTHER) == 0 and svc.users.for_tenant(OTHER) == []
    assert queued(svc, svc.settings.govern_queue) == 1  # the installed community's alert only
    held = list(held_rows(svc))
    assert len(held) == 12
    assert all(f"community {OTHER} has no Vigil install" in e["Reason"] for e in held)
    shown = status()
    assert shown["held_events"] == {"total": 12, "by_community": {OTHER: 12}}
    assert [i["held_events"] for i in shown["installs"]] == [0]
    # no install: stays held
    assert drain_inbox(svc.inbox_drain_deps, NOW + timedelta(minutes=1)).released == 0


def test_an_uninstalled_communitys_later_events_are_held(
    wp: SimulatedWorkplace, svc: Services
) -> None:
    svc.workplace.retry = RetryPolicy(sleep=lambda s: None)
    location = connect.start_install(svc.connect_deps, T0).headers["Location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    code = wp.issue_install_code(svc.settings.redirect_uri(), state=state)
    assert (
        connect.complete_install(svc.connect_deps, {"code": code, "state": state}, T0).status == 200
    )
    secret = svc.settings.webhook_secret()
    deliver(envelope(*failed_logins(2)), secret)
    assert drain_inbox(svc.inbox_drain_deps, NOW).activities == 2
    body = urlencode({"signed_request": wp.uninstall_signed_request()}).encode()
    req = func.HttpRequest(
        "POST",
        "http://127.0.0.1:7071/api/workplace/uninstall",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body,
        route_params={"action": "uninstall"},
    )
    assert http_fn(req).status_code == 200
    run_detection(svc)
    deliver(envelope(*failed_logins(12, start=T0 + timedelta(minutes=5))), secret)
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.held, result.activities, result.released) == (12, 0, 0)
    assert stored(svc, COMMUNITY) == 2 and queued(svc, svc.settings.activity_queue) == 0
    reasons = {e["Reason"] for e in held_rows(svc)}
    assert reasons == {
        f"community {COMMUNITY}'s install is uninstalled, not active: held, not detected on"
    }
    assert status()["installs"][0]["held_events"] == 12


@pytest.mark.parametrize("gone", ["decommissioned", "needs_reauth"])
def test_events_of_an_install_that_is_not_active_are_held(svc: Services, gone: str) -> None:
    install(svc)
    svc.installs.set_status(COMMUNITY, gone, "test", T0)  # type: ignore[arg-type]
    svc.inbox.put("workplace", envelope(*failed_logins(3)), NOW)
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.held, result.activities) == (3, 0)
    (reason,) = {e["Reason"] for e in held_rows(svc)}
    assert f"is {gone}, not active" in reason


def test_events_within_the_window_before_activation_are_released_once_older_ones_stay(
    svc: Services,
) -> None:
    activation = NOW + timedelta(days=2)
    early = activation - RELEASE_WINDOW - timedelta(minutes=1)
    late = activation - timedelta(hours=1)
    svc.inbox.put("workplace", envelope(("login", value("LOGIN", at=T0))), early)
    svc.inbox.put("workplace", envelope(*failed_logins(3, start=T0 + timedelta(hours=1))), late)
    assert drain_inbox(svc.inbox_drain_deps, activation).held == 4
    install(svc, at=activation)
    result = drain_inbox(svc.inbox_drain_deps, activation + timedelta(minutes=1))
    assert (result.released, result.activities) == (3, 3)
    assert stored(svc, COMMUNITY) == 3 and queued(svc, svc.settings.activity_queue) == 1
    (left,) = held_rows(svc)
    assert left["event_name"] == "LOGIN"  # arrived before the window: held, with its reason
    assert status()["held_events"]["by_community"] == {COMMUNITY: 1}
    again = drain_inbox(svc.inbox_drain_deps, activation + timedelta(minutes=2))
    assert (again.released, again.activities) == (0, 0)
    assert queued(svc, svc.settings.activity_queue) == 1


def test_events_before_a_custom_integration_registers_are_released_once_through_a_crash(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with SimulatedWorkplace(app_id="", app_secret=vigil_env["WORKPLACE_APP_SECRET"]) as wp:
        monkeypatch.setenv("WORKPLACE_GRAPH_URL", wp.url)
        monkeypatch.setenv("WORKPLACE_ACCESS_TOKEN", wp.add_custom_integration())
        services.reset()
        svc = services.get_services()
        svc.workplace.retry = RetryPolicy(sleep=lambda s: None)
        start = wall_clock() - timedelta(minutes=30)
        member = wp.members[0]
        attack = [
            wp.change("LOGIN_FAILED", actor=member, ip="203.0.113.5", ip_country="BR",
                      timestamp=start + timedelta(seconds=10 * i))
            for i in range(12)
        ]  # fmt: skip
        body = json.dumps(wp.security_envelope(attack)).encode()
        deliver(body, vigil_env["WORKPLACE_APP_SECRET"])  # webhooks start before registration
        sync_fn(TimerRequest(past_due=False))  # drains (holds), then registers the integration
        assert svc.installs.get(wp.community_id) is not None
        assert stored(svc, wp.community_id) == 0
        assert status()["held_events"]["total"] == 12

        original = HeldEvents.delete
        calls = {"n": 0}

        def crash_once(self: HeldEvents, events: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise Boom("crash after re-feeding, before deleting what was held")
            original(self, events)

        monkeypatch.setattr(HeldEvents, "delete", crash_once)
        with pytest.raises(Boom):
            sync_fn(TimerRequest(past_due=False))
        sync_fn(TimerRequest(past_due=False))  # re-feeds again (idempotent), then deletes
        sync_fn(TimerRequest(past_due=False))  # nothing left to release
        assert stored(svc, wp.community_id) == 12
        assert status()["held_events"] == {"total": 0, "by_community": {}}
        (shown,) = status()["installs"]
        assert shown["counts_by_event"] == {"LOGIN_FAILED": 12}  # counted once
        assert run_detection(svc) == 2  # the crash re-fed one message; detection dedups it
        (alert,) = svc.alerts.for_tenant(wp.community_id)
        assert alert.event_count == 12
        assert queued(svc, svc.settings.govern_queue) == 1


def test_a_detection_message_poisoned_for_one_user_quarantines_them_and_completes_the_others(
    svc: Services,
) -> None:
    install(svc)
    good = normalise(envelope(*failed_logins(12, ip="203.0.113.5", country="BR")), NOW).activities
    year_one = datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC)
    poisoned = [
        Activity("workplace", COMMUNITY, f"bad{i}", year_one + timedelta(seconds=i),
                 "login_failed", "LOGIN_FAILED", "login", "failure", "100000000000009",
                 actor_email="mallory@contoso.com", ip="203.0.113.6", country="BR")
        for i in range(12)
    ]  # fmt: skip
    message = ActivityBatch(activities=tuple(poisoned + good)).to_message()
    detect_fn(QueueMessage(id="1", body=message.encode(), dequeue_count=1))  # completes
    (alert,) = svc.alerts.for_tenant(COMMUNITY)
    assert alert.user_email == "alice@contoso.com" and alert.event_count == 12
    (kept,) = svc.storage.table(st.QUARANTINE).list_entities()
    assert kept["PartitionKey"] == "detection" and "OverflowError" in kept["Reason"]
    body = b"".join(bytes(kept[f"Body{i}"]) for i in range(int(kept["Chunks"])))
    held = ActivityBatch.from_message(body).activities
    assert {a.event_id for a in held} == {a.event_id for a in poisoned}  # only that user's


def test_released_events_storage_refuses_are_quarantined_and_the_run_completes(
    svc: Services,
) -> None:
    # Valid one by one, but their tally (one JSON property) is beyond what a table row keeps.
    names = [("login", value(f"ODD_{i}_" + "N" * 4000)) for i in range(12)]
    svc.inbox.put("workplace", envelope(*names), NOW)
    svc.inbox.put("workplace", envelope(*failed_logins(3)), NOW + timedelta(seconds=1))
    assert drain_inbox(svc.inbox_drain_deps, NOW).held == 15
    install(svc, at=NOW + timedelta(minutes=5))
    result = drain_inbox(svc.inbox_drain_deps, NOW + timedelta(minutes=6))
    assert (result.released, result.activities, result.quarantined) == (15, 3, 1)
    assert list(held_rows(svc)) == []
    (kept,) = svc.storage.table(st.QUARANTINE).list_entities()
    assert kept["PartitionKey"] == "detection" and "PropertyValueTooLarge" in kept["Reason"]
