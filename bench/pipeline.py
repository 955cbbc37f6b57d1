"""`make bench`: storage cost, throughput, webhook latency and memory of the whole pipeline.

Runs the real handlers in the local functions host on Azurite, fed by signed webhooks from the
simulated Workplace tenant, at two scales (1,000 users / 100,000 activities, and ten times that).
Results go to bench/results.json (flat keys, merged) and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import statistics
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import detection, entra, labelled
from bench.community import Shape, deliveries, members
from bench.counting import StorageCounter
from local.stack import APP_SECRET, Stack, free_port, local_stack, seed_graph_users
from shared import storage as st
from shared.activities import to_entity
from shared.services import get_services
from shared.storage import upsert_batches
from shared.workplace.counts import EventCountStore
from shared.workplace.normalize import normalise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "docs" / "BENCHMARKS.md"
# Extra settings for the run, e.g. host.json overrides: BENCH_ENV='{"AzureFunctionsJobHost__...": "1"}'.
BENCH_ENV: dict[str, str] = json.loads(os.environ.get("BENCH_ENV", "{}"))
TARGETS = {"tx_per_1000": 200.0, "ratio": 0.3, "webhook_p99_ms": 50.0, "memory_mb": 256.0}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakMemory:
    """Samples the process's resident memory every 20 ms while a phase runs."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakMemory:
        self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    tx: Counter[str] = field(default_factory=Counter)
    peak_mb: float = 0.0

    def add(self, other: Phase) -> None:
        """Fold in another stretch of the same function's work."""
        self.seconds += other.seconds
        self.tx.update(other.tx)
        self.peak_mb = max(self.peak_mb, other.peak_mb)


def measured(name: str, counter: StorageCounter, work: Callable[[], None]) -> Phase:
    before = counter.snapshot()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        work()
        seconds = time.perf_counter() - t0
    after = counter.snapshot()
    after.subtract(before)
    return Phase(name, seconds, Counter({k: v for k, v in after.items() if v}), mem.peak)


def sign(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def deliver_all(
    stack: Stack,
    envelopes: Iterator[dict[str, Any]],
    latencies: list[float],
    distinct: array[int],
) -> int:
    session = requests.Session()
    sent = 0
    for envelope in envelopes:
        for entry in envelope["entry"]:
            for change in entry["changes"]:
                # 8 bytes per event, so the bookkeeping barely shows in the memory figures.
                distinct.append(hash(json.dumps(change, sort_keys=True)))
        body = json.dumps(envelope, separators=(",", ":")).encode()
        t0 = time.perf_counter()
        resp = session.post(stack.webhook_url, data=body, headers=sign(body), timeout=30)
        latencies.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise RuntimeError(f"webhook answered {resp.status_code}: {resp.text[:200]}")
        sent += 1
    return sent


def drain_queues(stack: Stack) -> None:
    while stack.host.process_queue_once("detect_queue"):
        pass


def bare_insert_rate(stack: Stack, shape: Shape) -> float:
    """Azurite's rate for plain batch upserts of the same activity entities, in this run."""
    svc = get_services()
    table = svc.storage.table("BareInsert")
    wp = stack.workplace
    entities: list[dict[str, Any]] = []
    for envelope in deliveries(wp, Shape(shape.users, min(shape.activities, 50_000))):
        body = json.dumps(envelope).encode()
        entities.extend(to_entity(a) for a in normalise(body).activities)
    t0 = time.perf_counter()
    upsert_batches(table, entities)
    return len(entities) / (time.perf_counter() - t0)


LISTED_MAX = 200_000  # activities: above it, stored ones are counted from the event tallies


def run_scale(shape: Shape, label: str) -> dict[str, Any]:
    ports = {name: free_port() for name in ("blob", "queue", "table")}
    counter = StorageCounter(table_port=ports["table"])
    st.REQUEST_HOOKS[:] = [counter]
    print(f"[{label}] {shape.users} users, {shape.activities} activities ...", flush=True)
    with local_stack(
        port=None,
        triggers=False,
        extra_env={"SYNC_MAX_ENVELOPES": "1000", **BENCH_ENV},
        azurite_ports=ports,
    ) as stack:
        stack.workplace.members = members(stack.workplace, shape.users)
        seed_graph_users(stack.workplace, stack.graph)
        if stack.install().status_code != 200:
            raise RuntimeError("install failed")
        latencies: list[float] = []
        distinct: array[int] = array("q")
        sent = [0]

        def webhooks() -> None:
            sent[0] = deliver_all(stack, deliveries(stack.workplace, shape), latencies, distinct)

        phases = [measured("connect_http", counter, webhooks)]
        print(f"  webhooks: {sent[0]} deliveries in {phases[0].seconds:.1f}s", flush=True)

        # Sync and detection take turns, one timer run (at most 20 pages of SYNC_MAX_ENVELOPES)
        # then the queue drained, as they overlap in Azure: the queue holds at most one run's
        # messages, about 2,000. (Draining all 10,000 of the ten-times run after the whole sync
        # measured Azurite instead: its queue scans every message on each get and delete, 66-300
        # ms apiece at that depth.)
        sync_phase, detect_phase = Phase("sync_timer"), Phase("detect_queue")
        while get_services().inbox.oldest(1):
            sync_phase.add(
                measured("sync_timer", counter, lambda: stack.host.run_timer("sync_timer"))
            )
            detect_phase.add(measured("detect_queue", counter, lambda: drain_queues(stack)))
        phases += [sync_phase, detect_phase]
        print(f"  sync: {sync_phase.seconds:.1f}s, detect: {detect_phase.seconds:.1f}s", flush=True)

        def govern() -> None:
            while stack.host.process_queue_once("govern_queue"):
                pass

        phases.append(measured("govern_queue", counter, govern))
        svc = get_services()
        community = stack.workplace.community_id
        tallied = sum(
            EventCountStore(svc.storage.table(st.EVENT_COUNTS)).totals(community).values()
        )
        # Listing is exact but Azurite sorts the whole table for every page of 1,000: a million
        # rows would take hours. Above LISTED_MAX the stored count is Vigil's exactly-once event
        # tallies, which every run at or below it checks against the listing.
        listed = (
            sum(1 for _ in svc.storage.table(st.ACTIVITIES).list_entities(select=["RowKey"]))
            if shape.activities <= LISTED_MAX
            else None
        )
        if listed is not None and listed != tallied:
            raise RuntimeError(f"{listed} activities stored but {tallied} tallied")
        stored = listed if listed is not None else tallied
        alerts = len(svc.alerts.for_tenant(community))
        bare = bare_insert_rate(stack, shape)
    st.REQUEST_HOOKS.clear()
    per_phase = {p.name: p for p in phases}
    webhook_tx = sum(v for k, v in per_phase["connect_http"].tx.items() if not k.endswith(".admin"))
    pipeline_tx: Counter[str] = Counter()
    for p in phases[1:]:
        pipeline_tx.update(p.tx)
    pipeline_tx.pop("table.admin", None)
    pipeline_tx.pop("queue.admin", None)
    e2e_seconds = per_phase["sync_timer"].seconds + per_phase["detect_queue"].seconds
    e2e_rate = stored / e2e_seconds if e2e_seconds else 0.0
    lat = sorted(latencies)
    return {
        "label": label,
        "users": shape.users,
        "activities_generated": shape.activities,
        "distinct_events": len(set(distinct)),
        "activities_stored": stored,
        "stored_counted_by": "listing (equal to the event tallies)"
        if listed is not None
        else "event tallies",
        "deliveries": sent[0],
        "alerts": alerts,
        "webhook_tx_per_delivery": webhook_tx / max(sent[0], 1),
        "tx_per_1000": 1000 * sum(pipeline_tx.values()) / max(stored, 1),
        "tx_by_kind_per_1000": {
            k: round(1000 * v / max(stored, 1), 2) for k, v in sorted(pipeline_tx.items())
        },
        "e2e_activities_per_s": e2e_rate,
        "azurite_insert_per_s": bare,
        "ratio_vs_azurite_insert": e2e_rate / bare if bare else 0.0,
        "webhook_p50_ms": statistics.median(lat),
        "webhook_p99_ms": lat[int(len(lat) * 0.99) - 1] if len(lat) >= 100 else lat[-1],
        "memory_peak_mb": {p.name: round(p.peak_mb, 1) for p in phases},
        "seconds": {p.name: round(p.seconds, 2) for p in phases},
        "tx_by_phase": {p.name: dict(sorted(p.tx.items())) for p in phases},
    }


BASE, X10 = "Base", "Ten times larger"


def write_results(runs: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    flat: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    flat.update(extra)
    labelled = {run["label"]: run for run in runs}
    for run in [r for r in runs if r["label"] == X10]:
        flat["x10.storage.tx_per_1000"] = round(run["tx_per_1000"], 2)
        flat["x10.e2e.activities_per_s"] = round(run["e2e_activities_per_s"], 1)
        flat["x10.e2e.ratio_vs_azurite_insert"] = round(run["ratio_vs_azurite_insert"], 3)
        flat["x10.webhook.p99_ms"] = round(run["webhook_p99_ms"], 2)
        for name, mb in run["memory_peak_mb"].items():
            flat[f"x10.memory.peak_mb.{name}"] = mb
    if BASE not in labelled:
        RESULTS.write_text(json.dumps(dict(sorted(flat.items())), indent=2) + "\n")
        return
    base = labelled[BASE]
    flat.update(
        {
            "storage.tx_per_1000": round(base["tx_per_1000"], 2),
            "storage.webhook_tx_per_delivery": round(base["webhook_tx_per_delivery"], 3),
            "e2e.activities_per_s": round(base["e2e_activities_per_s"], 1),
            "e2e.ratio_vs_azurite_insert": round(base["ratio_vs_azurite_insert"], 3),
            "webhook.p50_ms": round(base["webhook_p50_ms"], 2),
            "webhook.p99_ms": round(base["webhook_p99_ms"], 2),
        }
    )
    for name, mb in base["memory_peak_mb"].items():
        flat[f"memory.peak_mb.{name}"] = mb
    RESULTS.write_text(json.dumps(dict(sorted(flat.items())), indent=2) + "\n")


def report(runs: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` on a machine with "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        "a private Azurite 3.37.0 in memory started for the run, everything in one process (the local functions host calling the real "
        "handlers) except Azurite.",
        "",
        "How it is measured: storage transactions are counted exactly by an azure-core request hook (`raw_request_hook`) on "
        "every storage client (Vigil's and the host's queue client); webhook latency is the client-side "
        "time of each signed POST over loopback; end-to-end rate is activities stored divided by the time "
        "from the first sync to the last detection; memory is the peak resident set of the process while "
        "each function works (sampled every 20 ms, so it includes the host, the simulators and the "
        "Python runtime: an upper bound for the function itself).",
        "",
        f"Targets: ≤ {TARGETS['tx_per_1000']:.0f} storage transactions per 1,000 activities besides the "
        f"webhook's own write; ≥ {TARGETS['ratio']} of Azurite's bare-insert rate; webhook p99 < "
        f"{TARGETS['webhook_p99_ms']:.0f} ms; peak memory < {TARGETS['memory_mb']:.0f} MB per function.",
        "",
    ]
    for run in runs:
        lines += [
            f"## {run['label']}: {run['users']:,} users, {run['activities_generated']:,} activities",
            "",
            "| Figure | Value | Target |",
            "|---|---|---|",
            f"| Deliveries (10 changes each) | {run['deliveries']:,} | |",
            f"| Distinct events sent / stored ({run['stored_counted_by']}) | {run['distinct_events']:,} / {run['activities_stored']:,} | equal |",
            f"| Alerts raised | {run['alerts']} | |",
            f"| Storage tx per webhook delivery | {run['webhook_tx_per_delivery']:.2f} | 1 |",
            f"| Storage tx per 1,000 activities (besides the webhook's) | {run['tx_per_1000']:.1f} | ≤ 200 |",
            f"| End-to-end activities/s (inbox → detection done) | {run['e2e_activities_per_s']:.0f} | |",
            f"| Azurite bare batch inserts/s | {run['azurite_insert_per_s']:.0f} | |",
            f"| Ratio | {run['ratio_vs_azurite_insert']:.2f} | ≥ 0.3 |",
            f"| Webhook p50 / p99 | {run['webhook_p50_ms']:.1f} ms / {run['webhook_p99_ms']:.1f} ms | p99 < 50 ms |",
        ]
        for name, mb in run["memory_peak_mb"].items():
            lines.append(f"| Peak RSS while `{name}` works | {mb:.0f} MB | < 256 MB |")
        lines += [
            "",
            "Transactions per 1,000 activities by kind: "
            + ", ".join(f"{k} {v}" for k, v in run["tx_by_kind_per_1000"].items()),
            "",
            "Seconds per phase: " + ", ".join(f"{k} {v}" for k, v in run["seconds"].items()),
            "",
        ]
    return "\n".join(lines)


NOTES_MARKER = "<!-- Written by hand below this line; `make bench` keeps it. -->"


def kept_notes(path: Path) -> str:
    """The hand-written part of the report (from NOTES_MARKER on), which a new run keeps."""
    text = path.read_text() if path.exists() else ""
    at = text.find(NOTES_MARKER)
    return "\n" + text[at:] if at >= 0 else ""


QUALITY_HEADING = "## Detection quality"
ENTRA_DAYS = 21  # the whole labelled month through the Entra pull (bench/entra.py)


def quality_only() -> int:
    """The detection-quality part alone: figures merged, its report section replaced."""
    quality = detection.run()
    month = labelled.run()
    on_entra = entra.run()
    section = (
        detection.report(quality)
        + "\n"
        + labelled.report(month)
        + "\n"
        + entra.report(on_entra)
        + "\n"
    )
    print(section, flush=True)
    write_results([], {**detection.flat(quality), **labelled.flat(month), **entra.flat(on_entra)})
    text = REPORT.read_text() if REPORT.exists() else ""
    start = text.find(QUALITY_HEADING)
    end = text.find(NOTES_MARKER)
    head = text[:start] if start >= 0 else text[:end] if end >= 0 else text
    REPORT.write_text(head + section + "\n" + kept_notes(REPORT).lstrip("\n"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply both sizes (0.1 for a quick run)"
    )
    parser.add_argument("--no-x10", action="store_true", help="skip the ten-times-larger run")
    parser.add_argument(
        "--only-x10",
        action="store_true",
        help="only the ten-times-larger run: merges its x10.* figures into results.json and "
        "prints its report without rewriting docs/BENCHMARKS.md",
    )
    parser.add_argument(
        "--quality-only",
        action="store_true",
        help="only detection quality (the labelled scenarios, about a minute): merges their "
        "detect.* figures into results.json and rewrites only their part of docs/BENCHMARKS.md",
    )
    args = parser.parse_args()
    if args.quality_only:
        return quality_only()
    base = Shape(int(1000 * args.scale), int(100_000 * args.scale))
    x10 = Shape(base.users * 10, base.activities * 10)
    if args.only_x10:
        runs = [run_scale(x10, X10)]
        write_results(runs, {})
        print(report(runs, "python -m bench.pipeline --only-x10"))
        print(json.dumps(runs, indent=2))
        return 0
    quality = detection.run()
    month = labelled.run()
    on_entra = entra.run()
    print(detection.report(quality) + "\n" + labelled.report(month), flush=True)
    print(entra.report(on_entra), flush=True)
    pulled = entra.measure(ENTRA_DAYS)
    print(entra.report_measure(pulled), flush=True)
    runs = [run_scale(base, BASE)]
    if not args.no_x10:
        runs.append(run_scale(x10, X10))
    command = (
        "make bench"
        if args.scale == 1.0 and not args.no_x10
        else "python -m bench.pipeline " + " ".join(sys.argv[1:])
    )
    figures = {**detection.flat(quality), **labelled.flat(month), **entra.flat(on_entra)}
    write_results(runs, {**figures, **entra.flat_measure(pulled)})
    REPORT.write_text(
        report(runs, command)
        + "\n"
        + entra.report_measure(pulled)  # before the quality part, which --quality-only rewrites
        + "\n"
        + detection.report(quality)
        + "\n"
        + labelled.report(month)
        + "\n"
        + entra.report(on_entra)
        + "\n"
        + kept_notes(REPORT)
    )
    print(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
