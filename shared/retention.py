"""Retention: old rows are deleted by partition or by key range, never found by scanning a table.

Each query below names its partitions (or a key range of one partition), so what it reads is
what it deletes, plus at most the few bookkeeping rows still in use; the size of the tables
does not enter into it. The cut-offs are wall clock minus the retention: retention is about how
long data is stored, not about what happened when, so (unlike detection) it may use the clock.

- Activities (`<source>_<tenant>_<YYYYMMDD>`): whole event days before the cut-off, per known
  Workplace community and Entra tenant (a key range over that tenant's day partitions).
- Alerts (partition: tenant; row key: inverted ticks of when the alert was raised, in event
  time, so the oldest sort last): the key range older than the cut-off, per known tenant; each
  alert's id index row (`shared/id_index.py`) is deleted before it.
- Notifications (partition: tenant; row key `<alert id>|<destination>`): an expired alert's
  records (its key range), deleted just before the alert, once each was last written more
  than NOTIFY_KEEP_DAYS ago (no notify message that must find it can be left; until then the
  alert waits too). Each destination's daily cap (partition `~notify`, row key
  `daily|<destination>|<day>`): as the detection daily limits below.
- SIEM outbox `sent` records (partition `sent`, row key: what was sent): those sent on days more
  than SIEM_SENT_KEEP_DAYS ago, found by their day's index partition `sent_<YYYYMMDD>`. A `sent`
  record keeps a redelivered message from sending its alert or batch twice; a message lives at
  most a week in its queue, so older records guard nothing. `pending` rows are never deleted.
- Quarantine (partition: source, `detection` or `queue`; row key: ticks of receipt, or of the
  earliest event, so the oldest sort first): the key range older than the activity cut-off.
- Held events (partition `<source>_<community>`; row key: ticks of receipt): the key range
  older than the activity cut-off, per community that ever had events held (the table's
  `communities` partition lists them, installed or not).
- Daily alert limits (detection state, partition: tenant; row key `daily|<policy>|<day>`): the
  `daily|` key range of each tenant holds only the days not yet cleaned (policies x a week).
- Install `state` nonces (partition `state_<expiry day>`): the expired days' partitions, and the
  expired rows of the partition states had before they carried their day.

Bounded without retention (no time in their keys, and no need): directory staging (at most one
snapshot in progress per community, dropped when it completes), event-count tallies (folded
hourly into one total per community), the inbox (drained every minute), Entra pending detection
messages (deleted once queued), sync and delta state (a row per tenant and log), profiles, users,
groups and the Graph identity cache (one row per person or group), posture (a row per
recommendation and community), throttle and API key rows (a few per tenant). Kept on purpose:
the governance log (`Actions`), the audit log (`Audit`) and analysts' suppressions, the record
of what Vigil and its analysts did.

The one scan: until the id index is complete, a run that finished its deletions writes the
index rows of alerts and governance actions stored before the index existed (`IdIndex.backfill`,
once per deployment).
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from azure.data.tables import TableClient, TableTransactionError

from shared import storage as st
from shared.activities import day_partitions
from shared.alerts import AlertStore
from shared.config import SOURCES
from shared.entra.normalize import SOURCE as ENTRA
from shared.governance.records import ActionStore
from shared.held import HeldEvents
from shared.held import partition as held_partition
from shared.id_index import IdIndex
from shared.inbox import WebhookInbox
from shared.installs import InstallStates
from shared.models import utc
from shared.notify.records import CAPS_PARTITION
from shared.quarantine import QUEUE_PARTITION
from shared.siem.outbox import SENT, SENT_ON, sent_on
from shared.storage import MAX_BATCH, delete_rows, inverted_ticks, ticks_key
from shared.workplace.normalize import SOURCE

log = logging.getLogger(__name__)

# Deliveries; activities detection could not judge; queue messages no delivery could read.
QUARANTINE_PARTITIONS = (*SOURCES, "detection", QUEUE_PARTITION)
DAILY_LIMIT_KEEP_DAYS = 7  # a late redelivery for an event day still finds its day's count
QUEUE_MESSAGE_DAYS = 7  # a queue message's time to live (the Storage default Vigil keeps)
NOTIFY_KEEP_DAYS = QUEUE_MESSAGE_DAYS + 1  # a notification record outlives its messages
SIEM_SENT_KEEP_DAYS = QUEUE_MESSAGE_DAYS + 1  # and so does a `sent` record
RUN_SECONDS = 8 * 60  # stop deleting in time for host.json's 10-minute functionTimeout
DELETE_WORKERS = 8  # delete transactions in flight at once
KEYS = ["PartitionKey", "RowKey"]
ENTRA_TENANT = re.compile(r"[0-9A-Za-z][0-9A-Za-z.-]{0,253}")  # GRAPH_TENANT_ID: a GUID or domain


@dataclass(frozen=True)
class Cutoffs:
    """What is old enough to go; None: kept forever (retention 0)."""

    activity_day: date | None  # event days before this one
    alert_time: datetime | None  # alerts raised (event time) before this
    quarantine_time: datetime | None  # deliveries received before this
    daily_limit_day: date
    state_day: date  # install states that expired on a day before this one
    notify_day: date  # notification records last sent (or decided) on a day before this one
    siem_sent_day: date  # SIEM `sent` records of days before this one

    @classmethod
    def at(cls, now: datetime, activity_days: int, alert_days: int) -> Cutoffs:
        now = utc(now)
        activity = now - timedelta(days=activity_days) if activity_days else None
        return cls(
            activity_day=activity.date() if activity else None,
            alert_time=now - timedelta(days=alert_days) if alert_days else None,
            quarantine_time=activity,
            daily_limit_day=now.date() - timedelta(days=DAILY_LIMIT_KEEP_DAYS),
            state_day=now.date(),
            notify_day=now.date() - timedelta(days=NOTIFY_KEEP_DAYS),
            siem_sent_day=now.date() - timedelta(days=SIEM_SENT_KEEP_DAYS),
        )


@dataclass
class Deleted:
    activities: int = 0
    alerts: int = 0
    quarantine: int = 0
    held: int = 0
    daily_limits: int = 0
    install_states: int = 0
    notifications: int = 0  # records of expired alerts, and old daily-cap rows
    siem_sent: int = 0  # `sent` records (each with its index row)
    skipped_tenants: list[str] = field(default_factory=list)
    finished: bool = True  # False: the time ran out; the next run carries on


def expired_activities(table: TableClient, source: str, tenant: str, before: date) -> Iterator[Any]:
    """The keys of the tenant's activities on event days before `before`, partition by partition."""
    lo, hi = day_partitions(source, tenant, before)
    rows = table.query_entities(
        "PartitionKey ge @lo and PartitionKey lt @hi",
        parameters={"lo": lo, "hi": hi},
        select=KEYS,
    )
    # A tenant id that is a prefix of another's is told apart by the day after it.
    return (e for e in rows if e["PartitionKey"][len(lo) :].isdigit())


def expired_alerts(table: TableClient, tenant: str, before: datetime) -> Iterator[Any]:
    """Alerts of the tenant raised before `before` (event time; their keys sort last)."""
    return iter(
        table.query_entities(
            "PartitionKey eq @pk and RowKey gt @k",
            parameters={"pk": tenant, "k": inverted_ticks(before) + "~"},  # "~" sorts after "_<id>"
            select=[*KEYS, "AlertId"],
        )
    )


def expired_quarantine(table: TableClient, source: str, before: datetime) -> Iterator[Any]:
    """Deliveries of the source quarantined from an inbox entry received before `before`."""
    return iter(
        table.query_entities(
            "PartitionKey eq @pk and RowKey lt @k",
            parameters={"pk": source, "k": ticks_key(before)},
            select=[*KEYS, "BodyBlob"],
        )
    )


def expired_held(table: TableClient, tenant: str, before: datetime) -> Iterator[Any]:
    """The community's held events (no active install) whose delivery arrived before `before`."""
    return iter(
        table.query_entities(
            "PartitionKey eq @pk and RowKey lt @k",
            parameters={"pk": held_partition(SOURCE, tenant), "k": ticks_key(before)},
            select=KEYS,
        )
    )


def alert_notifications(table: TableClient, tenant: str, alert_id: str) -> list[Any]:
    """The alert's notification records (one per destination), with when each was last worked."""
    return list(
        table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": tenant, "lo": f"{alert_id}|", "hi": f"{alert_id}}}"},  # "}" > "|"
            select=[*KEYS, "Day", "UpdatedAt"],
        )
    )


def expired_sent(table: TableClient, before: date) -> Iterator[Any]:
    """The SIEM outbox's index rows of the days before `before` (what each day sent)."""
    return iter(
        table.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi",
            parameters={"lo": SENT_ON, "hi": sent_on(before)},
            select=KEYS,
        )
    )


def expired_daily_limits(table: TableClient, tenant: str, before: date) -> Iterator[Any]:
    """The tenant's daily-limit rows for event days before `before`."""
    rows = table.query_entities(
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        parameters={"pk": tenant, "lo": "daily|", "hi": "daily}"},  # "}" follows "|"
        select=KEYS,
    )
    return (e for e in rows if e["RowKey"].rpartition("|")[2] < before.isoformat())


def expired_states(table: TableClient, before: date, now: datetime) -> Iterator[Any]:
    """Install states that expired on a day before `before`, and expired states of the old
    undated partition (which no longer grows)."""
    prefix = InstallStates.PREFIX
    dated = table.query_entities(
        "PartitionKey ge @lo and PartitionKey lt @hi",
        parameters={"lo": prefix, "hi": f"{prefix}{before:%Y%m%d}"},
        select=KEYS,
    )
    yield from dated
    legacy = table.query_entities(
        "PartitionKey eq @pk",
        parameters={"pk": InstallStates.LEGACY_PARTITION},
        select=[*KEYS, "ExpiresAt"],
    )
    yield from (e for e in legacy if utc(e["ExpiresAt"]) <= now)


@dataclass(frozen=True)
class Tables:
    activities: TableClient
    alerts: TableClient
    quarantine: TableClient
    detection_state: TableClient
    install_states: TableClient
    held: TableClient
    notifications: TableClient
    siem_outbox: TableClient
    alert_index: IdIndex | None = None  # None: alerts without index rows (tests)


def purge(
    tables: Tables,
    tenants: Iterable[str],
    cutoffs: Cutoffs,
    now: datetime,
    inbox: WebhookInbox | None = None,
    *,
    entra_tenants: Iterable[str] = (),
    keep_going: Callable[[], bool] = lambda: True,
    workers: int = 1,
) -> Deleted:
    """Delete everything older than the cut-offs for the known tenants (Workplace communities,
    and Entra tenants). Safe to stop at any point (`keep_going` false: no further rows are
    taken) and to run again."""
    out = Deleted()

    def delete(table: TableClient, rows: Iterable[Any]) -> int:
        return delete_rows(table, _while(rows, keep_going, out), workers)

    known = [(SOURCE, t) for t in sorted(set(tenants))]
    known += [(ENTRA, t) for t in sorted(set(entra_tenants))]
    for source, tenant in known:
        if not _bounded(source, tenant):
            out.skipped_tenants.append(tenant)  # not a key range we can bound: left alone
            continue
        if cutoffs.activity_day is not None:
            rows = expired_activities(tables.activities, source, tenant, cutoffs.activity_day)
            out.activities += delete(tables.activities, rows)
        if cutoffs.alert_time is not None:
            rows = expired_alerts(tables.alerts, tenant, cutoffs.alert_time)
            notified = _notified(tables, tenant, rows, cutoffs, out)
            out.alerts += delete(tables.alerts, _unindexed(notified, tables.alert_index))
        rows = expired_daily_limits(tables.detection_state, tenant, cutoffs.daily_limit_day)
        out.daily_limits += delete(tables.detection_state, rows)
    rows = expired_daily_limits(tables.notifications, CAPS_PARTITION, cutoffs.daily_limit_day)
    out.notifications += delete(tables.notifications, rows)
    out.siem_sent += _delete_sent(tables.siem_outbox, delete, cutoffs.siem_sent_day, out)
    if cutoffs.quarantine_time is not None:
        for community in HeldEvents(tables.held).communities(SOURCE):
            if community.isascii() and community.isdigit():  # ids are checked before holding
                rows = expired_held(tables.held, community, cutoffs.quarantine_time)
                out.held += delete(tables.held, rows)
    for source in QUARANTINE_PARTITIONS:
        if cutoffs.quarantine_time is not None:
            rows = expired_quarantine(tables.quarantine, source, cutoffs.quarantine_time)
            out.quarantine += delete(tables.quarantine, _unparked(rows, inbox))
    rows = expired_states(tables.install_states, cutoffs.state_day, now)
    out.install_states += delete(tables.install_states, rows)
    return out


def _bounded(source: str, tenant: str) -> bool:
    """Whether the tenant id bounds its key ranges: a Workplace community's digits, an Entra
    tenant's GUID or domain (a tenant that is a prefix of another is told apart by the
    `_<day>` after it)."""
    if source == ENTRA:
        return bool(ENTRA_TENANT.fullmatch(tenant))
    return tenant.isascii() and tenant.isdigit()


def _notified(
    tables: Tables, tenant: str, alerts: Iterable[Any], cutoffs: Cutoffs, out: Deleted
) -> Iterator[Any]:
    """The expired alerts, each one's notification records deleted just before it (so a record
    never outlives its alert); an alert notified too recently waits, with its records, for a
    later run (its notify message may still be delivered and must find its record)."""
    for alert in alerts:
        alert_id = str(alert["RowKey"]).partition("_")[2]
        records = alert_notifications(tables.notifications, tenant, alert_id)
        if any(_last_worked(r) >= cutoffs.notify_day for r in records):
            continue
        out.notifications += delete_rows(tables.notifications, records)
        yield alert


def _last_worked(record: Mapping[str, Any]) -> date:
    """The day a notification record was last written (its decision's day, if older)."""
    day = date.fromisoformat(str(record["Day"]))
    updated = record.get("UpdatedAt")
    return max(day, utc(updated).date()) if updated is not None else day


def _delete_sent(
    table: TableClient,
    delete: Callable[[TableClient, Iterable[Any]], int],
    before: date,
    out: Deleted,
) -> int:
    """The `sent` records of the days before `before`, then the index rows that named them (a
    crash in between: the next run finds the index rows again, and deleting a record that is
    gone already is no error)."""
    deleted, index = 0, expired_sent(table, before)
    while out.finished and (part := list(itertools.islice(index, MAX_BATCH))):
        records = [{"PartitionKey": SENT, "RowKey": r["RowKey"]} for r in part]
        try:
            deleted += delete(table, records)
        except TableTransactionError as exc:
            if exc.status_code != 404:
                raise
            for record in records:  # one is gone already (an interrupted run): one by one
                table.delete_entity(SENT, record["RowKey"])  # no error when it is gone
            deleted += len(records)
        delete(table, part)
    return deleted


def _while(rows: Iterable[Any], keep_going: Callable[[], bool], out: Deleted) -> Iterator[Any]:
    """The rows until `keep_going` says stop (asked before each row is taken, so a row is
    never half handled)."""
    iterator = iter(rows)
    while out.finished:
        if not keep_going():
            out.finished = False
            return
        row = next(iterator, None)
        if row is None:
            return
        yield row


def _unparked(rows: Iterable[Mapping[str, Any]], inbox: WebhookInbox | None) -> Iterator[Any]:
    """The rows, each one's parked body (a blob) deleted before the row that names it."""
    for row in rows:
        if row.get("BodyBlob") and inbox is not None:
            inbox.discard_parked(str(row["BodyBlob"]))
        yield row


def _unindexed(rows: Iterable[Mapping[str, Any]], index: IdIndex | None) -> Iterator[Any]:
    """The alert rows, each one's id index row deleted before it (a crash between leaves an
    expired alert the index no longer finds, and the next run deletes it)."""
    for row in rows:
        if index is not None:
            index.forget(str(row["AlertId"]))
        yield row


def run(
    storage: st.Storage,
    inbox: WebhookInbox,
    tenants: Iterable[str],
    activity_days: int,
    alert_days: int,
    now: datetime,
    entra_tenants: Iterable[str] = (),
) -> Deleted:
    """`retention_timer`: one pass over the known tenants with the configured retentions (and,
    until each is complete, the id indexes' backfill)."""
    ids, state = storage.table(st.ID_INDEX), storage.table(st.API_STATE)
    alerts = AlertStore(storage.table(st.ALERTS), IdIndex(ids, state, "alert"))
    actions = ActionStore(storage.table(st.ACTIONS), IdIndex(ids, state, "action"))
    tables = Tables(
        activities=storage.table(st.ACTIVITIES),
        alerts=storage.table(st.ALERTS),
        quarantine=storage.table(st.QUARANTINE),
        detection_state=storage.table(st.DETECTION_STATE),
        install_states=storage.table(st.INSTALL_STATES),
        held=storage.table(st.HELD_EVENTS),
        notifications=storage.table(st.NOTIFICATIONS),
        siem_outbox=storage.table(st.SIEM_OUTBOX),
        alert_index=alerts.index,
    )
    deadline = time.monotonic() + RUN_SECONDS

    def keep_going() -> bool:
        return time.monotonic() < deadline

    deleted = purge(
        tables,
        tenants,
        Cutoffs.at(now, activity_days, alert_days),
        now,
        inbox,
        entra_tenants=entra_tenants,
        keep_going=keep_going,
        workers=DELETE_WORKERS,
    )
    for store in (alerts, actions):
        if deleted.finished:
            indexed = store.index.backfill(store.stored_ids(), keep_going)
            deleted.finished = indexed is not None
            if indexed:
                log.info("retention: indexed the ids of %d earlier %ss", indexed, store.index.kind)
    if not deleted.finished:
        log.warning("retention: stopped after %d s; the next run carries on", RUN_SECONDS)
    if deleted.skipped_tenants:
        log.warning(
            "retention: tenants %s have ids that are not digits; their data was left alone",
            [t[:40] for t in deleted.skipped_tenants[:10]],
        )
    return deleted
