"""The labelled month rendered as Microsoft Entra ID, and the Entra pull measured on Azurite.

Quality (`run`, pure, seconds): the same 120 people, ordinary work, traps and attacks as
`bench/labelled.py`, rendered as the records Entra logs them as: each Workplace sign-in a
`signIn` (error 0; a failed one 50126, a wrong password) with Entra's `location` (the country's
centroid as its `geoCoordinates`), each admin or account action a `directoryAudit` (the names in
AUDIT_NAMES). File work and sending on someone's behalf are not in Entra's sign-in or audit logs,
so they are not rendered; neither are the attacks made only of them (unusual impersonation, three
of the 24). Each record is mapped by the pull's own code (`shared.entra.pull.MAPPERS`) and is
readable from Graph LATENCY after its event (Microsoft's former latency table: 2 min at the 95th
percentile, 5 min at the 99th); the timer pulls every minute and detection takes what was read
as one batch, scored as the Workplace month is.

Pipeline (`measure`, Azurite, the local functions host): the first `days` of that month's
records, moved to end a few minutes ago, served by the simulated Graph and pulled by the real
`sync_timer` (back-fill, paging, pacing at 4 requests per 10 s) with detection draining the queue
between runs; storage transactions counted exactly (bench/counting.py).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import labelled as month
from bench.counting import StorageCounter
from local.entra_scenario import audit, sign_in
from shared import storage as st
from shared.entra.pull import MAPPERS, Pacer
from shared.ipintel import AnonymousRecord, GeoRecord, IpIntel, geo
from shared.models import Activity

TENANT = "3c5a1f0e-8b2d-4e6f-9a7c-1d2e3f4a5b6c"
SIGN_INS = {"LOGIN": 0, "LOGIN_FAILED": 50126}
# Workplace's admin and account events as the directory-audit activities Entra logs for them.
AUDIT_NAMES = {
    "ACCOUNT_CREATED": "Add user",
    "ADMIN_ROLE_CHANGED": "Update role",
    "ACCOUNT_ACTIVATED": "Enable account",
    "ACCOUNT_DEACTIVATED": "Disable account",
    "ACCOUNT_DELETED": "Delete user",
    "EMAIL_CHANGED": "Update user",
    "CUSTOM_INTEGRATION_EDIT": "Add service principal",
    "FORCED_PASSWORD_RESET": "Set force change user password",
    "DOMAIN_ADDED": "Add verified domain",
    "DOMAIN_REMOVED": "Set domain authentication",
    "ADMIN_CREATED": "Add member to role",
}
# Price per transaction (README, Cost: LRS list prices, USD).
TABLE_TX_USD = 0.00036 / 10_000
QUEUE_OP_USD = 0.05 / 10_000


def object_id(workplace_id: str) -> str:
    """The person's Entra object id (a GUID made from their Workplace id)."""
    return str(uuid.UUID(int=int(workplace_id)))


def latency(rng: random.Random) -> timedelta:
    """When Entra has the record readable after its event: most in 1-2 min, 4 % up to 5, 1 %
    up to 15 (the overlap re-read covers 30)."""
    r = rng.random()
    span = (30, 120) if r < 0.95 else (120, 300) if r < 0.99 else (300, 900)
    return timedelta(seconds=rng.uniform(*span))


Record = tuple[datetime, str, dict[str, Any]]  # event time, log, record


def render(t: month.Traffic) -> tuple[list[Record], Counter[str]]:
    """Each change Entra logs as its record; the events it does not log, counted."""
    rng = random.Random(13)
    out: list[Record] = []
    skipped: Counter[str] = Counter()
    for at, _, v in t.changes:
        event = v["event"]
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if event in SIGN_INS:
            c = geo.country(v["ip_country"])
            lat, lon = (c.latitude, c.longitude) if c else (0.0, 0.0)
            out.append(
                (at, "signIns", sign_in(
                    at, user_id=object_id(v["actor_id"]), upn=v["actor_email"],
                    code=SIGN_INS[event], ip=v["ip"], country=v["ip_country"], lat=lat, lon=lon,
                    record_id=rid,
                ))
            )  # fmt: skip
        elif event in AUDIT_NAMES:
            rec = audit(at, AUDIT_NAMES[event], actor_id=object_id(v["actor_id"]),
                        actor_upn=v["actor_email"], target_id=object_id(v["target_id"]),
                        target_upn=v["target_email"],
                        record_id=f"Directory_{rid[:5].upper()}_{rng.randrange(10**9)}")  # fmt: skip
            rec["initiatedBy"]["user"]["ipAddress"] = v["ip"]
            out.append((at, "directoryAudits", rec))
        else:
            skipped[event] += 1
    return out, skipped


def arrivals(records: list[Record]) -> list[tuple[datetime, Activity]]:
    """(when the pull can read it, the activity the pull makes of it)."""
    rng = random.Random(17)
    out = []
    for at, log, rec in records:
        readable = at + latency(rng)
        out.append((readable, MAPPERS[log](rec, TENANT, readable)))
    return out


@dataclass(frozen=True)
class ScenarioGeo:
    """The scenario's own IP -> country, standing in for the MaxMind city database Vigil reads
    in Azure: a directory audit carries its IP but no location, so its country is looked up."""

    countries: dict[str, str]

    def geo(self, ip: str) -> GeoRecord | None:
        country = self.countries.get(ip)
        return GeoRecord(country) if country else None

    def asn(self, ip: str) -> tuple[int, str] | None:
        return None

    def anonymous(self, ip: str) -> AnonymousRecord | None:
        return None


def intel(t: month.Traffic) -> IpIntel:
    """The Workplace month's IP data, and every scenario IP's country (as a geo database)."""
    places = ScenarioGeo({v["ip"]: v["ip_country"] for _, _, v in t.changes if v["ip_country"]})
    return IpIntel((places,), month.INTEL.ranges, month.INTEL.tor_exits)


def run() -> dict[str, Any]:
    """The replay with an IP geolocation database (MaxMind's, configured in Azure), and the
    recall without one."""
    result = replay(geolocate=True)
    result["recall_without_geolocation"] = replay(geolocate=False)["recall"]
    return result


def replay(geolocate: bool) -> dict[str, Any]:
    t, labelled = month.scenario()
    records, skipped = render(t)
    users = {a.actor_id for _, a in arrivals(records)}
    rendered_incidents = []
    dropped: list[str] = []
    for i in labelled:
        user = object_id(i.user)
        if any(
            object_id(v["actor_id"]) == user and i.start <= at <= i.end
            for at, _, v in t.changes
            if v["event"] in SIGN_INS or v["event"] in AUDIT_NAMES
        ):
            rendered_incidents.append(month.Incident(i.detector, user, i.start, i.end))
        else:
            dropped.append(i.detector)
    ip_data = intel(t) if geolocate else month.INTEL
    result = month.score(arrivals(records), rendered_incidents, ip_data)
    result.update(
        records=len(records),
        sign_ins=sum(1 for _, log, _ in records if log == "signIns"),
        not_rendered=dict(skipped.most_common()),
        incidents_not_rendered=dict(Counter(dropped)),
        entra_users=len(users),
    )
    return result


def flat(result: dict[str, Any]) -> dict[str, Any]:
    out = {f"entra.{k}": v for k, v in month.flat(result).items()}
    out["entra.detect.records"] = result["records"]
    return out


def report(result: dict[str, Any]) -> str:
    dropped = ", ".join(f"{d} x{n}" for d, n in result["incidents_not_rendered"].items())
    lines = [
        f"## Detection quality on Entra ID (the labelled month as {result['records']:,} sign-in "
        f"and directory-audit records, {result['incidents']} attacks)",
        "",
        "Generated by `bench/entra.py` (`python -m bench.entra --quality-only`): the Workplace "
        "month's people, work and attacks as Entra logs them, mapped by the pull's code, each "
        "readable 0.5-2 min after its event (5 % later, up to 15 min), pulled every minute. Not "
        f"in Entra's logs, so not rendered: {', '.join(result['not_rendered'])} events, and the "
        f"attacks made only of them ({dropped or 'none'}).",
        "",
        "| Detector | Recall |",
        "|---|---|",
    ]
    lines += [f"| `{d}` | {r:.0%} |" for d, r in result["recall"].items()]
    lines += [
        "",
        "Directory audits carry their IP but no location: their country is the IP's, looked up "
        "(the replay stands in for the MaxMind city database with the scenario's own IP "
        "countries). Without a geolocation database: "
        + ", ".join(
            f"`{d}` {r:.0%}"
            for d, r in result["recall_without_geolocation"].items()
            if r != result["recall"][d]
        )
        + " (a first admin action from abroad scores too low without its country).",
        "",
        f"- False alerts: {len(result['false_alerts'])} "
        f"({result['false_alerts_per_1000_user_days']:.2f} per 1,000 user-days)"
        + (f": {result['false_alerts']}" if result["false_alerts"] else "."),
        f"- Alerts per incident: {result['alerts_per_incident']:.2f}; other detectors' alerts on "
        f"the same attacks: {result['related_alerts']}.",
        f"- Time from the record's event to its alert: p50 {result['time_to_alert_p50_s']:.0f} s,"
        f" p95 {result['time_to_alert_p95_s']:.0f} s after the record became readable (plus "
        "Entra's own latency before that).",
        "",
    ]
    return "\n".join(lines)


def measure(days: int, shared_azurite: bool = False) -> dict[str, Any]:
    """The real pull and detection over the first `days` of the rendered month, on an Azurite
    of its own (or, `shared_azurite`, the one already listening on 10000-10002: its own tables
    and queues there, timings then shared with whatever else uses it)."""
    from bench.pipeline import measured
    from local.stack import free_port, local_stack
    from shared.services import get_services

    t, _ = month.scenario()
    records, _ = render(t)
    end = month.START + timedelta(days=days)
    chosen = [r for r in records if r[0] < end]
    shift = datetime.now(UTC) - timedelta(minutes=5) - max(at for at, _, _ in chosen)
    ports = None if shared_azurite else {n: free_port() for n in ("blob", "queue", "table")}
    counter = StorageCounter(table_port=ports["table"] if ports else 10002)
    st.REQUEST_HOOKS[:] = [counter]
    # The time the pull waits for Graph's reporting limit (4 requests per 10 s), to tell Vigil's
    # own work apart from it: the pacer's `take` timed, nothing else changed.
    waited = [0.0]
    take = Pacer.take

    def timed_take(self: Pacer) -> None:
        t0 = time.perf_counter()
        take(self)
        waited[0] += time.perf_counter() - t0

    Pacer.take = timed_take  # type: ignore[method-assign]
    env = {"VIGIL_SOURCES": "entra", "ENTRA_BACKFILL_DAYS": str(days + 1)}
    try:
        with local_stack(port=None, triggers=False, extra_env=env, azurite_ports=ports) as stack:
            for at, log, rec in chosen:
                field = "createdDateTime" if log == "signIns" else "activityDateTime"
                moved = {**rec, field: (at + shift).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"}
                stack.graph.audit_logs.add(log, moved)

            def drain() -> None:
                while stack.host.process_queue_once("detect_queue"):
                    pass

            def current() -> bool:
                from shared.entra.status import report as status

                logs = status(get_services().entra_status_deps, datetime.now(UTC))["tenants"][
                    stack.graph.tenant_id
                ]
                return all(logs[n]["state"] == "current" for n in ("signIns", "directoryAudits"))

            sync = measured("sync_timer", counter, lambda: stack.host.run_timer("sync_timer"))
            detect = measured("detect_queue", counter, drain)
            runs = 1
            while not current() and runs < 50:
                sync.add(
                    measured("sync_timer", counter, lambda: stack.host.run_timer("sync_timer"))
                )
                detect.add(measured("detect_queue", counter, drain))
                runs += 1
            svc = get_services()
            stored = sum(
                1
                for e in svc.storage.table(st.ACTIVITIES).list_entities(select=["PartitionKey"])
                if str(e["PartitionKey"]).startswith("entra_")
            )
            alerts = len(svc.alerts.for_tenant(stack.graph.tenant_id))
            requests = stack.graph.audit_logs.requests
    finally:
        st.REQUEST_HOOKS.clear()
        Pacer.take = take  # type: ignore[method-assign]
    tx: Counter[str] = Counter()
    for phase in (sync, detect):
        tx.update(phase.tx)
    for admin in ("table.admin", "queue.admin"):
        tx.pop(admin, None)
    table_tx = sum(v for k, v in tx.items() if k.startswith("table."))
    queue_ops = sum(v for k, v in tx.items() if k.startswith("queue."))
    per = 1_000_000 / max(stored, 1)
    return {
        "days": days,
        "azurite": "the Azurite shared with other runs" if shared_azurite else "its own Azurite",
        "records": len(chosen),
        "stored": stored,
        "alerts": alerts,
        "timer_runs": runs,
        "graph_requests": requests,
        "sync_seconds": round(sync.seconds, 2),
        "detect_seconds": round(detect.seconds, 2),
        "paced_seconds": round(waited[0], 2),
        "records_per_s": stored / (sync.seconds - waited[0]),
        "paced_records_per_s": stored / sync.seconds,
        "e2e_records_per_s": stored / (sync.seconds - waited[0] + detect.seconds),
        "tx_per_1000": 1000 * (table_tx + queue_ops) / max(stored, 1),
        "tx_by_kind_per_1000": {
            k: round(1000 * v / max(stored, 1), 2) for k, v in sorted(tx.items())
        },
        "usd_per_million": per * (table_tx * TABLE_TX_USD + queue_ops * QUEUE_OP_USD),
        "memory_peak_mb": {
            "sync_timer": round(sync.peak_mb, 1),
            "detect_queue": round(detect.peak_mb, 1),
        },
    }


def flat_measure(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "entra.sync.records_per_s": round(m["records_per_s"], 1),
        "entra.sync.paced_records_per_s": round(m["paced_records_per_s"], 1),
        "entra.e2e.records_per_s": round(m["e2e_records_per_s"], 1),
        "entra.storage.tx_per_1000": round(m["tx_per_1000"], 2),
        "entra.storage.usd_per_million_records": round(m["usd_per_million"], 2),
    }


def report_measure(m: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in m["tx_by_kind_per_1000"].items())
    return "\n".join(
        [
            f"## The Entra pull ({m['days']} days of the labelled month: {m['stored']:,} records)",
            "",
            "Generated by `bench/entra.py` (`python -m bench.entra`): the simulated Graph serves "
            "the records (1,000 a page); the real `sync_timer` back-fills them in "
            f"{m['timer_runs']} runs ({m['graph_requests']} reporting requests, paced at 4 per "
            "10 s) and detection drains the queue after each run, in the local functions host "
            f"on {m['azurite']}.",
            "",
            f"- Pull: {m['records_per_s']:.0f} records/s of `sync_timer`'s own work "
            f"({m['sync_seconds']} s, of which {m['paced_seconds']} s waiting for Graph's "
            f"reporting limit: {m['paced_records_per_s']:.0f} records/s with the waits); with "
            f"detection {m['e2e_records_per_s']:.0f} records/s. Graph's limit caps a pull at 400 "
            "records/s (4 pages of 1,000 per 10 s), and `ENTRA_MAX_REQUESTS_PER_RUN` (12) at "
            "12,000 records per timer run.",
            f"- Storage: {m['tx_per_1000']:.1f} transactions per 1,000 records ({kinds}); at list "
            f"prices ${m['usd_per_million']:.2f} per million records (sign-ins).",
            f"- Peak memory: {m['memory_peak_mb']}.",
            "",
        ]
    )


PULL_HEADING, QUALITY_HEADING = "## The Entra pull", "## Detection quality on Entra ID"


def _placed(text: str, heading: str, section: str, before: str) -> str:
    """The report with `section` (starting with `heading`) in place of the one there, or
    inserted before the heading `before` (else before the hand-written notes)."""
    from bench.pipeline import NOTES_MARKER

    start = text.find(heading)
    if start >= 0:
        ends = [i for m in ("\n## ", "\n" + NOTES_MARKER) if (i := text.find(m, start + 1)) >= 0]
        end = min(ends) + 1 if ends else len(text)
        return text[:start] + section + "\n" + text[end:]
    at = text.find(before)
    at = at if at >= 0 else text.find(NOTES_MARKER)
    at = at if at >= 0 else len(text)
    return text[:at] + section + "\n" + text[at:]


def main() -> int:
    import argparse
    import json

    from bench.pipeline import NOTES_MARKER, REPORT, write_results

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3, help="days of the month the pull reads")
    parser.add_argument("--quality-only", action="store_true", help="only the labelled replay")
    parser.add_argument(
        "--shared-azurite",
        action="store_true",
        help="measure on the Azurite already listening on 10000-10002 instead of its own",
    )
    args = parser.parse_args()
    quality = run()
    print(report(quality), flush=True)
    figures = flat(quality)
    text = REPORT.read_text() if REPORT.exists() else ""
    text = _placed(text, QUALITY_HEADING, report(quality), NOTES_MARKER)
    if not args.quality_only:
        started = time.perf_counter()
        m = measure(args.days, args.shared_azurite)
        print(report_measure(m), flush=True)
        print(f"(measured in {time.perf_counter() - started:.0f} s)")
        figures.update(flat_measure(m))
        text = _placed(text, PULL_HEADING, report_measure(m), "## Detection quality")
    write_results([], figures)
    REPORT.write_text(text)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
