"""`make demo`: replay a fixed scenario through the local stack, print a summary, exit 0 if it held.

The scenario: an admin installs Vigil, the community has an ordinary morning, one account is
brute-forced from abroad, one delivery is redelivered, and a forged delivery is refused. Vigil
must store every activity once, raise one alert and require the victim to sign in again, once.
With `VIGIL_SOURCES=entra` (or `workplace,entra`) the Entra source has the same morning and
attack in its sign-in log, pulled from the simulated Graph by sync_timer.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from local import entra_scenario
from local.scenario import ATTACKER_COUNTRY, brute_force, ordinary_day
from local.stack import Stack, local_stack
from shared import storage as st
from shared.services import get_services

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a fixed morning: replay gives the same alerts
DEADLINE_S = 90.0


def say(text: str) -> None:
    print(text, flush=True)


class Checks:
    """The demo's checks, each said as it is made."""

    def __init__(self) -> None:
        self.made = 0
        self.failed: list[str] = []

    def __call__(self, name: str, ok: bool, detail: str) -> None:
        self.made += 1
        self.failed += [] if ok else [name]
        say(f"  {'ok ' if ok else 'FAIL'} {name}: {detail}")


def wait_for(what: str, check: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)  # polling the stack's observable state, with a deadline
    say(f"  timed out waiting for {what}")
    return False


def wait_for_the_pipeline(source: str, tenant: str, stored: Callable[[], bool]) -> None:
    """Until `stored()` holds, the tenant has an alert and a governance action ended (or time)."""
    svc, deadline = get_services(), time.monotonic() + DEADLINE_S
    wait_for(f"{source} activities", stored, deadline)
    wait_for(f"an {source} alert", lambda: len(svc.alerts.for_tenant(tenant)) >= 1, deadline)
    wait_for(
        f"an {source} governance action",
        lambda: any(a.status in ("succeeded", "failed") for a in svc.actions.for_tenant(tenant)),
        deadline,
    )


def play(stack: Stack, check: Checks) -> None:
    wp = stack.workplace

    say("1. An admin installs Vigil (the simulated Workplace admin approves).")
    reply = stack.install()
    check("install", reply.status_code == 200, f"callback answered {reply.status_code}")
    say("2. Workplace verifies the webhook subscription.")
    reply = stack.verify_subscription()
    check("webhook verification", reply.status_code == 200, f"challenge: {reply.status_code}")

    say("3. Traffic: an ordinary morning, then password guessing against one account.")
    victim = wp.members[1]
    deliveries = ordinary_day(wp, START, random.Random(7))
    deliveries += brute_force(wp, victim, START + timedelta(minutes=30))
    bodies = []
    for d in deliveries:
        envelope = wp.security_envelope(list(d.changes), entry_time=int(START.timestamp()))
        status = wp.deliver(stack.webhook_url, envelope).status_code
        bodies.append(envelope)
        say(f"   webhook: {d.label} -> {status}")
    sent = {(c[0], repr(sorted(c[1].items()))) for d in deliveries for c in d.changes}
    accepted = sum(1 for x in wp.deliveries if x.status_code == 200)
    check("deliveries stored", accepted == len(deliveries), f"{accepted}/{len(deliveries)} got 200")

    say("4. Workplace redelivers one envelope; someone posts a forged one.")
    replay = wp.deliver(stack.webhook_url, bodies[-2]).status_code
    forged = wp.deliver(stack.webhook_url, bodies[-1], signature="bad").status_code
    check("replay accepted", replay == 200, str(replay))
    check("forgery refused", forged == 401, str(forged))

    say("5. Waiting for sync_timer, detect_queue and govern_queue to do their work...")
    svc, tenant = get_services(), wp.community_id
    activities = svc.storage.table(st.ACTIVITIES)

    def count_activities() -> int:
        return sum(1 for _ in activities.list_entities(select=["RowKey"]))

    wait_for_the_pipeline("Workplace", tenant, lambda: count_activities() >= len(sent))
    stored = count_activities()
    check("activities stored once", stored == len(sent), f"{stored} of {len(sent)} distinct")
    alerts = svc.alerts.for_tenant(tenant)
    check("one alert", len(alerts) == 1, f"{len(alerts)} alert(s)")
    for alert in alerts:
        say(f"   ALERT [{alert.severity}] {alert.title}")
        say(f"         {alert.description}")
    about = [(a.user_email, ATTACKER_COUNTRY in str(a.evidence.facts)) for a in alerts]
    check("alert is about the victim", about.count((victim.email, True)) == 1, victim.email)
    actions = svc.actions.for_tenant(tenant)
    for a in actions:
        say(f"   ACTION {a.action} {a.target}: {a.status} (Graph request-id {a.request_id})")
    done = [(a.status, a.target) for a in actions]
    check("sessions revoked once", done == [("succeeded", victim.email)], f"{len(done)} action(s)")
    revokes = [r for r in stack.graph.graph_requests() if r.path.endswith("/revokeSignInSessions")]
    check("Graph saw one revoke", len(revokes) == 1, f"{len(revokes)} revokeSignInSessions call(s)")


def play_entra(stack: Stack, check: Checks) -> None:
    graph = stack.graph
    people = list(graph.users.values())
    victim = people[1]
    now = datetime.now(UTC)  # the pull reads the log up to now
    say("E1. Entra's sign-in log: ordinary sign-ins (some MFA prompts), then password guessing.")
    # Logged a little late, as Entra does: within the overlap every pull reads again.
    start = now - timedelta(minutes=25)
    records = entra_scenario.ordinary_sign_ins(people, start, random.Random(7))
    records += entra_scenario.password_guessing(victim, now - timedelta(minutes=12))
    entra_scenario.publish(graph, records)
    say(f"   {len(records)} sign-ins logged; sync_timer pulls them from Graph")
    svc, tenant = get_services(), graph.tenant_id
    activities = svc.storage.table(st.ACTIVITIES)

    def stored() -> int:
        rows = activities.list_entities(select=["RowKey", "source"])
        return sum(1 for r in rows if r["source"] == "entra")

    wait_for_the_pipeline("Entra", tenant, lambda: stored() >= len(records))
    n = stored()
    check("Entra sign-ins stored once", n == len(records), f"{n} stored, {len(records)} logged")
    alerts = svc.alerts.for_tenant(tenant)
    for alert in alerts:
        say(f"   ALERT [{alert.severity}] {alert.title}")
    check(
        "one Entra alert, about the victim",
        [a.user_id for a in alerts] == [victim.id],
        f"{len(alerts)} alert(s)",
    )
    actions = [a for a in svc.actions.for_tenant(tenant) if a.status == "succeeded"]
    check(
        "sessions revoked on the Entra user",
        [(a.action, a.target) for a in actions] == [("revoke_sessions", victim.id)],
        f"{len(actions)} action(s)",
    )


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    say("Vigil demo: Azurite + simulated Workplace + simulated Microsoft Graph, one scenario.")
    chosen = os.environ.get("VIGIL_SOURCES") or "workplace"
    sources = [x.strip() for x in chosen.split(",") if x.strip()]
    env = {"VIGIL_SOURCES": ",".join(sources), "ENTRA_BACKFILL_DAYS": "1"}
    with local_stack(port=None, schedule="*/2 * * * * *", extra_env=env) as stack:
        say(
            f"   functions host on {stack.host.base_url}, Workplace sim {stack.workplace.url}, "
            f"Graph sim {stack.graph.graph_url}; sources: {', '.join(sources)}"
        )
        check = Checks()
        if "workplace" in sources:
            play(stack, check)
        if "entra" in sources:
            play_entra(stack, check)
    held, failed = check.made - len(check.failed), check.failed
    say(f"\nDemo: {held} of {check.made} checks held" + (", not all." if failed else "."))
    if failed:
        say("Failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
