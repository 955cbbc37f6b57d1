"""The Entra pull: sign-ins and directory audits from Graph into the activity log, per timer run.

Each log of the tenant has a watermark (shared/entra/state.py): every record created up to it
has been read. A run reads windows `ge watermark - ENTRA_OVERLAP_MINUTES` .. `le min(watermark +
STEP, now)` page by page (`@odata.nextLink`, saved after each page, so a run that ends early
resumes at that page), until a window ends at the run's time. The first run starts the watermark
ENTRA_BACKFILL_DAYS back, so the back-fill is read a day (STEP) at a time across runs.

Records arrive late: Microsoft's retired latency table gave 2 min (95th percentile) and 5 min
(99th) for sign-ins and audits; field reports see 5-30 min. The overlap (default 30 min) is
read again every run; a record's activity id is its Graph id, so a re-read never doubles, and
only records not already stored are queued for detection.

Pacing: the reporting APIs allow 5 requests per 10 s per app and tenant; a run takes at most
ENTRA_MAX_REQUESTS_PER_RUN requests, at most 4 in any 10 s (Pacer). A 429 ends the run
(its Retry-After is kept: no run asks again before then); nothing sleeps longer than a token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared import telemetry
from shared.activities import ActivityStore, partition_key, row_key, work_items
from shared.config import Settings
from shared.entra.normalize import RecordError, audit_activity, signin_activity
from shared.entra.pending import PendingDetection
from shared.entra.state import LogState, LogStateStore
from shared.governance.graph import GraphClient
from shared.governance.graph_results import GraphError
from shared.logsafe import quoted
from shared.models import Activity, short_hash
from shared.quarantine import QuarantineDeps, quarantine
from shared.workplace.counts import stored_keys

log = logging.getLogger(__name__)

SIGN_INS, AUDITS = "signIns", "directoryAudits"
LOGS = (SIGN_INS, AUDITS)
TIME_FIELD = {SIGN_INS: "createdDateTime", AUDITS: "activityDateTime"}
MAPPERS: dict[str, Callable[[dict[str, Any], str, datetime], Activity]] = {
    SIGN_INS: signin_activity,
    AUDITS: audit_activity,
}
STEP = timedelta(days=1)  # one back-fill window
PAGE_SIZE = 1000  # the reporting APIs' maximum (and default)
NON_PREMIUM = "Authorization_RequestFromNonPremiumTenantOrB2CTenant"
LICENCE_RECHECK = timedelta(hours=1)
FORBIDDEN_RECHECK = timedelta(minutes=15)
WINDOW_REQUESTS = 4  # requests in any ...
WINDOW_S = 10.0  # ... 10 seconds: under the 5 per 10 s Graph allows per app and tenant


class Pacer:
    """At most WINDOW_REQUESTS requests in any WINDOW_S seconds of one run (a sliding window):
    the first ones go at once, a later one waits (at most WINDOW_S) for the oldest to age out."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            now = self._clock()
            if len(self._sent) >= WINDOW_REQUESTS:
                wait = self._sent[0] + WINDOW_S - now
                if wait > 0:
                    self._sleep(wait)
                    now = self._clock()
                self._sent.popleft()
            self._sent.append(now)


@dataclass
class PullResult:
    requests: int = 0
    records: int = 0
    stored: int = 0  # activities new to the log (queued for detection)
    quarantined: int = 0
    throttled: bool = False
    by_log: Counter[str] = field(default_factory=Counter)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PullDeps:
    """What the Entra pull reads and writes; Graph is reached only when first needed."""

    settings: Settings
    log_states: LogStateStore
    activities: ActivityStore
    activities_table: TableClient  # which records are already stored
    quarantine: QuarantineDeps
    enqueue_detection: Callable[[str], None]
    graph: Callable[[], GraphClient]
    pending: PendingDetection  # by-key detection messages not yet known to be queued


def _beta(graph_url: str) -> str:
    return graph_url.rsplit("/", 1)[0] + "/beta"


def _first_request(s: LogState, deps: PullDeps) -> tuple[str, dict[str, str]]:
    assert s.window_start is not None and s.window_end is not None
    name = TIME_FIELD[s.log]
    flt = f"{name} ge {_iso(s.window_start)} and {name} le {_iso(s.window_end)}"
    params = {"$top": str(PAGE_SIZE)}
    if s.log == SIGN_INS and deps.settings.entra_noninteractive_signins:
        kinds = "signInEventTypes/any(t: t eq 'interactiveUser' or t eq 'nonInteractiveUser')"
        params["$filter"] = f"({flt}) and {kinds}"
        return f"{_beta(deps.settings.graph_url)}/auditLogs/signIns", params
    params["$filter"] = flt
    return f"/auditLogs/{s.log}", params


def _failed(s: LogState, exc: GraphError, now: datetime) -> LogState:
    """The log's state after Graph refused a page: throttled, unlicensed, forbidden or error."""
    if exc.status == 429:
        wait = timedelta(seconds=exc.retry_after if exc.retry_after is not None else 60)
        return replace(
            s,
            state="throttled",
            reason=f"Graph answered 429 (Retry-After {wait.total_seconds():.0f} s); the next run "
            "resumes at the saved page",
            resume_after=now + wait,
        )
    if exc.status == 403 and exc.code == NON_PREMIUM:
        return replace(
            s,
            state="unlicensed",
            reason="the tenant has no Microsoft Entra ID P1 or P2 licence, which Graph requires "
            "to read sign-in logs; Vigil asks again every hour (directory audits are unaffected)",
            resume_after=now + LICENCE_RECHECK,
        )
    if exc.status in (401, 403):
        return replace(
            s,
            state="forbidden",
            reason=f"Graph refused ({exc.status} {exc.code}): grant the app AuditLog.Read.All "
            "(application permission, admin consent)",
            resume_after=now + FORBIDDEN_RECHECK,
        )
    if exc.status == 400 and s.next_link:  # an expired skiptoken: read the window again
        return replace(s, next_link="", state="error", reason=f"{exc.code}: window restarted")
    return replace(s, state="error", reason=f"Graph error {exc.status} {exc.code}")


def _store(
    deps: PullDeps, s: LogState, records: list[Any], now: datetime, result: PullResult
) -> LogState:
    """A page's records as activities; an unreadable record is quarantined with its reason."""
    acts: list[Activity] = []
    unknown: Counter[str] = Counter()
    names: dict[str, str] = {}
    kept = 0
    for rec in records:
        try:
            if not isinstance(rec, dict):
                raise RecordError(f"record is a {type(rec).__name__}, not an object")
            a = MAPPERS[s.log](rec, s.tenant_id, now)
        except (RecordError, RecursionError) as exc:
            body = json.dumps(rec, default=str).encode("utf-8", "backslashreplace")
            key = short_hash(s.tenant_id, s.log, body.decode("utf-8", "replace"))
            kept += _quarantine_once(deps, key, body, f"{s.log}: {str(exc)[:500]}", now)
            continue
        acts.append(a)
        if a.type in ("other", "login_failure_other"):
            names[a.event_id] = a.event_name if a.type == "other" else _code(rec)
    seen = stored_keys(deps.activities_table, acts)
    unique = {(a.tenant_id, a.event_id): a for a in acts}
    fresh = [a for a in unique.values() if (partition_key(a), row_key(a)) not in seen]
    unknown.update(names[a.event_id] for a in fresh if a.event_id in names)  # counted once
    batches = work_items(fresh)
    # Carried in the message (v2) ones are queued before the write: a crash in between queues
    # them again (detection is idempotent), never not at all. By-key ones need the row first:
    # kept as pending before the write, forgotten once queued (shared/entra/pending.py).
    for b in batches:
        if b.activities:
            deps.enqueue_detection(b.to_message())
    by_key = [b.to_message() for b in batches if not b.activities]
    waiting = deps.pending.keep(by_key) if by_key else []
    deps.activities.write(acts)
    for message in by_key:
        deps.enqueue_detection(message)
    if waiting:
        deps.pending.done(waiting)
    result.quarantined += kept
    result.records += len(records)
    result.stored += len(fresh)
    result.by_log[s.log] += len(fresh)
    if unknown:
        log.warning(
            "entra: %d %s records Vigil does not map (kept as unknown): %s",
            sum(unknown.values()),
            s.log,
            ", ".join(f"{quoted(n)} x{c}" for n, c in unknown.most_common(20)),
        )
    return replace(
        s.with_unknown(dict(unknown)),
        records=s.records + len(records),
        quarantined=s.quarantined + kept,
    )


def _quarantine_once(deps: PullDeps, key: str, body: bytes, reason: str, now: datetime) -> int:
    """Keep the record in quarantine; 1 when it is new there (an overlap re-read finds it)."""
    try:
        deps.quarantine.table.get_entity("entra", key, select=["RowKey"])
        return 0
    except ResourceNotFoundError:
        quarantine(deps.quarantine, "entra", key, body, reason, now)
        return 1


def _code(rec: dict[str, Any]) -> str:
    status = rec.get("status")
    return f"errorCode {status.get('errorCode')}" if isinstance(status, dict) else "errorCode ?"


def pull_log(
    deps: PullDeps, graph: Any, s: LogState, now: datetime, pacer: Pacer, result: PullResult
) -> LogState:
    """Read the log's windows up to `now` within the run's request budget; returns its state."""
    store = deps.log_states
    settings = deps.settings
    if s.resume_after is not None and now < s.resume_after:
        return s
    origin = s.origin or now - timedelta(days=settings.entra_backfill_days)
    mark = s.watermark or origin
    s = replace(s, origin=origin, watermark=mark, last_run_at=now, resume_after=None)
    overlap = timedelta(minutes=settings.entra_overlap_minutes)
    while result.requests < settings.entra_max_requests_per_run:
        if s.next_link and s.window_end is not None:
            url, params, end = s.next_link, None, s.window_end
        else:
            end = min(mark + STEP, now)
            s = replace(s, window_start=max(origin, mark - overlap), window_end=end)
            url, params = _first_request(s, deps)
        pacer.take()
        result.requests += 1
        try:
            page = graph.report_page(url, params)
        except GraphError as exc:
            s = _failed(s, exc, now)
            store.save(s)
            log.warning("entra: %s of tenant %s: %s", s.log, s.tenant_id, s.reason)
            result.throttled = exc.status == 429
            return s
        values = page.get("value")
        s = _store(deps, s, values if isinstance(values, list) else [], now, result)
        link = page.get("@odata.nextLink")
        state = "current" if end >= now else "backfilling"
        if isinstance(link, str) and link:
            s = replace(s, next_link=link, state=state, reason="")
        else:
            mark = max(mark, end)
            s = replace(s, next_link="", watermark=mark, state=state, reason="")
        store.save(s)
        if not s.next_link and end >= now:
            break
    return s


def pull(
    deps: PullDeps, now: datetime, graph: Any = None, pacer: Pacer | None = None
) -> PullResult:
    """One run over the tenant's logs: sign-ins, then directory audits; a 429 ends the run."""
    tenant, _ = deps.settings.graph_app()
    graph = graph if graph is not None else deps.graph()
    pacer = pacer or Pacer()
    store = deps.log_states
    result = PullResult()
    requeued = deps.pending.requeue(deps.enqueue_detection)
    if requeued:
        log.warning("entra: %d detection messages an interrupted pull left queued now", requeued)
    states = [store.get(tenant, name) for name in LOGS]
    # The limit is per app and tenant: after a 429 on either log, neither is asked before then.
    if any(s.state == "throttled" and s.resume_after and now < s.resume_after for s in states):
        return result
    for s in states:
        pull_log(deps, graph, s, now, pacer, result)
        if result.throttled:
            break
    telemetry.activities_ingested(result.stored)
    if result.records or result.quarantined:
        log.info(
            "entra: %d requests, %d records -> %d new activities (%d quarantined)",
            result.requests,
            result.records,
            result.stored,
            result.quarantined,
            extra={"requests": result.requests, "records": result.records},
        )
    return result
