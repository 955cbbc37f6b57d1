"""Notifications and the SIEM on the local stack: a replayed brute-force attack raises an alert
through the real path (webhook, sync, detection), and notify_queue and siem_timer in the local
functions host tell the simulated Graph mailbox, the Teams and generic webhook receivers and the
Logs Ingestion endpoint, each once, however often the attack is redelivered."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local.scenario import brute_force, ordinary_day
from local.sim_graph import SimUser
from local.stack import Stack, local_stack
from shared.notify import render
from shared.services import get_services

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SENDER = "vigil-notify@contoso.com"
SOC = "soc@contoso.com"
pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(azurite_connection_string: str) -> Iterator[Stack]:
    env = {
        "NOTIFY_TEAMS_WEBHOOK_URL": "local",
        "NOTIFY_WEBHOOK_URL": "local",
        "LOG_ANALYTICS_DCE_ENDPOINT": "local",
        "NOTIFY_EMAIL_TO": SOC,
        "GOVERNANCE_MAIL_SENDER": SENDER,
    }
    with local_stack(port=None, triggers=False, extra_env=env) as s:
        s.graph.add_user(
            SimUser(
                id="00000000-0000-4000-8000-0000000000aa", user_principal_name=SENDER, mail=SENDER
            )
        )
        yield s


def drain(stack: Stack) -> None:
    stack.host.run_timer("sync_timer")
    functions = ("detect_queue", "govern_queue", "notify_queue")
    while any(stack.host.process_queue_once(f) for f in functions):
        pass
    stack.host.run_timer("siem_timer")


def test_a_new_alert_is_notified_everywhere_once_and_sent_to_the_siem(stack: Stack) -> None:
    assert stack.notify is not None
    receiver, ingestion = stack.notify.receiver, stack.notify.ingestion
    assert receiver is not None and ingestion is not None
    wp = stack.workplace
    assert stack.install().status_code == 200
    victim = wp.members[1]
    deliveries = ordinary_day(wp, START, random.Random(1)) + brute_force(
        wp, victim, START + timedelta(minutes=30)
    )
    for d in deliveries:
        assert (
            wp.deliver(stack.webhook_url, wp.security_envelope(list(d.changes))).status_code == 200
        )
    drain(stack)

    (alert,) = get_services().alerts.for_tenant(wp.community_id)
    link = f"{stack.api}/console#/alert/{alert.id}"
    (card,) = receiver.received("teams", accepted=True)
    content = card.json()["attachments"][0]["content"]
    assert content["body"][0]["text"] == alert.title
    assert content["actions"][0]["url"] == link
    (hook,) = receiver.received("hooks", accepted=True)
    secret = stack.env["NOTIFY_WEBHOOK_SECRET"]
    assert render.verify(hook.body, hook.headers["X-Vigil-Signature-256"], secret)
    assert hook.json()["alert"]["userEmail"] == victim.email
    mails = [m for m in stack.graph.sent_mail if m["sender"] == SENDER]
    soc = [m for m in mails if m["message"]["toRecipients"][0]["emailAddress"]["address"] == SOC]
    assert len(soc) == 1 and link in soc[0]["message"]["body"]["content"]
    (row,) = ingestion.rows("Custom-VigilAlerts_CL")
    assert row["AlertId"] == alert.id

    # Workplace redelivers the attack: no new alert, nothing notified or sent again.
    for d in deliveries[-3:]:
        again = wp.security_envelope(list(d.changes), entry_time=2)
        assert wp.deliver(stack.webhook_url, again).status_code == 200
    drain(stack)
    assert len(receiver.received()) == 2
    assert len([m for m in stack.graph.sent_mail if m["sender"] == SENDER]) == len(mails)
    assert len(ingestion.rows("Custom-VigilAlerts_CL")) == 1
