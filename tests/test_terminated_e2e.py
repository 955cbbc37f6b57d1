"""A deactivation by webhook and the user's activity 40 seconds later, through the whole path
(webhook -> inbox -> sync timer -> detect queue): live (two timer runs) and as a backlog (one run)
give the same single alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.sim_workplace import SimMember
from local.stack import Stack
from shared.models import Alert
from shared.services import get_services
from tests.test_end_to_end import drain, stack

__all__ = ["stack"]  # the fixture: the whole path on Azurite and the simulators

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
pytestmark = pytest.mark.e2e


def send(stack: Stack, *changes: tuple[str, dict[str, object]]) -> None:
    wp = stack.workplace
    body = wp.security_envelope(list(changes), entry_time=int(START.timestamp()))
    assert wp.deliver(stack.webhook_url, body).status_code == 200


def terminated(victim: SimMember) -> list[Alert]:
    svc = get_services()
    return [
        a
        for a in svc.alerts.for_tenant(svc.installs.all()[0].community_id)
        if a.detector_id == "vigil.terminated_user" and a.user_id == victim.id
    ]


def test_deactivation_then_activity_within_a_minute_alerts_once_live_and_as_a_backlog(
    stack: Stack,
) -> None:
    wp = stack.workplace
    assert stack.install().status_code == 200
    admin, live, backlog = wp.members[0], wp.members[2], wp.members[3]

    def deactivate(victim: SimMember, at: datetime) -> tuple[str, dict[str, object]]:
        return wp.change(
            "ACCOUNT_DEACTIVATED",
            actor=admin,
            target=victim,
            ip="198.51.100.10",
            ip_country="GB",
            timestamp=at,
        )

    def login(victim: SimMember, at: datetime) -> tuple[str, dict[str, object]]:
        return wp.change("LOGIN", actor=victim, ip="192.0.2.77", ip_country="GB", timestamp=at)

    off, on = START, START + timedelta(seconds=40)
    send(stack, deactivate(live, off))
    drain(stack)
    send(stack, login(live, on))
    drain(stack)
    send(stack, deactivate(backlog, off), login(backlog, on))
    drain(stack)
    (a,) = terminated(live)
    (b,) = terminated(backlog)
    assert a.first_activity_time == b.first_activity_time == on
    assert a.created_time == b.created_time == on and a.event_count == b.event_count == 1
    assert a.evidence.facts["terminated_at"] == b.evidence.facts["terminated_at"] == off.isoformat()
    # The same webhooks again: nothing new.
    send(stack, deactivate(live, off), login(live, on))
    drain(stack)
    assert [x.id for x in terminated(live)] == [a.id]
