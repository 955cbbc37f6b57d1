"""`make run`: Vigil on the embedded default stack, with live simulated traffic, until Ctrl-C."""

from __future__ import annotations

import logging
import os
import random
import threading
from datetime import UTC, datetime

from local import entra_scenario
from local.azurite import ROOT
from local.scenario import brute_force, ordinary_day
from local.stack import Stack, local_stack

log = logging.getLogger("vigil.run")
TRAFFIC_EVERY_S = 15.0
ATTACK_EVERY_S = 60.0


def traffic(stack: Stack, stop: threading.Event, sources: list[str]) -> None:
    """Ordinary logins every few seconds, and a brute-force attack every minute, for each source:
    Workplace webhooks, and Entra sign-ins the simulated Graph serves for sync_timer to pull."""
    rng, wp, people = random.Random(), stack.workplace, list(stack.graph.users.values())
    next_attack, elapsed = 20.0, 0.0
    while not stop.wait(TRAFFIC_EVERY_S if elapsed else 3.0):
        elapsed += TRAFFIC_EVERY_S
        now = datetime.now(UTC)
        attack = elapsed >= next_attack
        if attack:
            next_attack += ATTACK_EVERY_S
        if "entra" in sources:
            records = rng.sample(entra_scenario.ordinary_sign_ins(people, now, rng), k=3)
            if attack:
                target = rng.choice(people)
                log.warning("ATTACK (Entra): password guessing against %s", target.id)
                records += entra_scenario.password_guessing(target, now)
            entra_scenario.publish(stack.graph, records)
            log.info("Entra: %d sign-ins logged for sync_timer to pull", len(records))
        if "workplace" not in sources:
            continue
        deliveries = rng.sample(ordinary_day(wp, now, rng), k=3)
        if attack:
            victim = rng.choice(wp.members)
            log.warning("ATTACK: password guessing against %s from abroad", victim.email)
            deliveries += brute_force(wp, victim, now)
        for d in deliveries:
            envelope = wp.security_envelope(list(d.changes))
            status = wp.deliver(stack.webhook_url, envelope).status_code
            log.info("webhook delivered: %s -> %s", d.label, status)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    # The host's per-invocation lines would drown the story; Vigil's own log tells it.
    for noisy in ("azure", "urllib3", "msal", "local.functions_host"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # VIGIL_SOURCES=workplace,entra (or entra alone) runs those sources; default: Workplace.
    chosen = os.environ.get("VIGIL_SOURCES") or "workplace"
    sources = [s.strip() for s in chosen.split(",") if s.strip()]
    with local_stack(
        port=7071,
        schedule="*/10 * * * * *",
        prefix="vigil",
        azurite_location=ROOT / ".azurite",
        extra_env={"VIGIL_SOURCES": ",".join(sources)},
    ) as stack:
        key_file, token_file = ROOT / ".local" / "function_key", ROOT / ".local" / "analyst_token"
        key_file.parent.mkdir(exist_ok=True)
        for path, secret in ((key_file, stack.function_key), (token_file, stack.analyst_token)):
            path.write_text(secret)
            path.chmod(0o600)
        log.info("functions host: %s (function key in %s)", stack.api, key_file)
        log.info("signed-in analyst: Authorization: Bearer <%s>", token_file)
        log.info("analyst console: %s/console (sign in as analyst or reader)", stack.api)
        log.info("simulated Workplace: %s, Graph: %s", stack.workplace.url, stack.graph.graph_url)
        log.info("sources: %s (status: %s/sources/status)", ", ".join(sources), stack.api)
        notify = stack.notify
        if notify and notify.receiver:
            log.info("notifications: local Teams/webhook receiver on %s", notify.receiver.base_url)
        if notify and notify.ingestion:
            log.info("SIEM: local Logs Ingestion endpoint %s", notify.ingestion.endpoint)
        if "workplace" in sources:
            status = stack.install().status_code
            log.info("install: the simulated admin approved; callback answered %s", status)
        log.info("alerts are raised by detect_queue and acted on by govern_queue; Ctrl-C stops.")
        stop = threading.Event()
        worker = threading.Thread(target=traffic, args=(stack, stop, sources), daemon=True)
        worker.start()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            stop.set()
            worker.join(timeout=5)


if __name__ == "__main__":
    main()
