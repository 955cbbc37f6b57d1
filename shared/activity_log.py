"""The activity log as an analyst reads it: a time range (at most 31 days) of one or all
tenants (Workplace communities, Entra tenants), of one source or all, filtered, newest first,
paged; the same rows as CSV for an auditor.

Only the day partitions in range are read (`<source>_<tenant>_<YYYYMMDD>`), each with a
row-key range for the exact times; filters reach Table Storage only as query parameters. An IP
range (CIDR) is checked here, on the rows of the partitions in range.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from shared import query_params as q
from shared.activities import from_entity
from shared.config import SOURCES
from shared.ipintel import IpIntel
from shared.models import Activity, Alert, utc
from shared.paging import TokenSigner, query_digest
from shared.storage import inverted_ticks

MAX_RANGE = timedelta(days=31)
MAX_TOP = 1000
MAX_CSV_ROWS = 10_000
PARAMS = (
    "from",
    "to",
    "tenant",
    "user",
    "event",
    "outcome",
    "ip",
    "country",
    "alert",
    "source",
    "top",
    "next",
    "format",
)
CSV_FIELDS = (
    "time",
    "user",
    "event",
    "outcome",
    "ip",
    "country",
    "isp",
    "userAgent",
    "target",
    "community",
    "activityId",
)


@dataclass(frozen=True)
class ActivityQuery:
    start: datetime  # inclusive
    end: datetime  # exclusive
    tenants: tuple[str, ...]
    user: str = ""
    event: str = ""  # a Workplace event name (LOGIN_FAILED) or Vigil's kind (login_failed)
    outcome: str = ""
    ip: str = ""  # one address: a table filter; a range: checked on each row
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    country: str = ""
    event_ids: frozenset[str] | None = None  # an alert's related activities
    source: str = "workplace"  # the source of `tenants`
    # (source, tenant) pairs to read instead of `tenants` of `source` (several sources at once)
    scopes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def related_to(cls, alert: Alert) -> ActivityQuery:
        """An alert's related activities: its ids, in the days of its first to last activity."""
        return cls(
            start=alert.first_activity_time,
            end=alert.last_activity_time + timedelta(microseconds=1),
            tenants=(alert.tenant_id,),
            event_ids=frozenset(alert.evidence.activity_ids),
            source=alert.source or "workplace",
        )

    def partitions(self) -> list[str]:
        """The day partitions in range, newest day first, communities in order."""
        days: list[str] = []
        day = self.end - timedelta(microseconds=1)
        while day.date() >= self.start.date():
            days.append(f"{day:%Y%m%d}")
            day -= timedelta(days=1)
        scopes = sorted(self.scopes or {(self.source, t) for t in self.tenants})
        return [f"{s}_{t}_{d}" for d in days for s, t in scopes]

    def table_filter(self, pk: str, after: str | None) -> tuple[str, dict[str, Any]]:
        low = inverted_ticks(self.end) + "~"  # newer than `end` sorts below this
        params: dict[str, Any] = {"pk": pk, "lo": max(low, after) if after else low}
        params["hi"] = inverted_ticks(self.start) + "~"
        clauses = ["PartitionKey eq @pk", "RowKey gt @lo", "RowKey lt @hi"]
        if self.user:
            clauses.append("( actor_id eq @user or actor_email eq @email )")
            params["user"], params["email"] = self.user, self.user.lower()
        if self.event:
            clauses.append("( event_name eq @event or type eq @event )")
            params["event"] = self.event
        for column, value in (("outcome", self.outcome), ("ip", self.ip)):
            if value:
                clauses.append(f"{column} eq @{column}")
                params[column] = value
        if self.country:
            clauses.append("country eq @country")
            params["country"] = self.country.upper()
        return " and ".join(clauses), params

    def keeps(self, a: Activity) -> bool:
        if self.event_ids is not None and a.event_id not in self.event_ids:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(a.ip) in self.network
            except ValueError:
                return False
        return True


@dataclass(frozen=True)
class Position:
    """Where a page starts: a partition of the query, and the last row key read in it."""

    partition: str = ""
    after: str = ""

    def as_json(self) -> dict[str, str]:
        return {"pk": self.partition, "rk": self.after}


@dataclass
class ActivityLog:
    table: TableClient
    signer: TokenSigner
    intel: Callable[[], IpIntel]
    alert_lookup: Callable[[str], Alert | None]
    communities: Callable[[], list[str]]
    entra_tenants: Callable[[], list[str]] = list  # the Entra tenants read (the Entra source on)
    scanned: list[str] = field(default_factory=list)  # partitions read (tests check the range)

    def rows(self, query: ActivityQuery, start: Position) -> Iterator[tuple[Position, Activity]]:
        """Matching activities from `start` on, each with the position just after it."""
        partitions = query.partitions()
        index = 0
        if start.partition:
            if start.partition not in partitions:
                raise q.BadInput("next: not a continuation token of this query")
            index = partitions.index(start.partition)
        for i, pk in enumerate(partitions[index:], start=index):
            after = start.after if i == index else ""
            where, params = query.table_filter(pk, after or None)
            self.scanned.append(pk)
            for entity in self.table.query_entities(where, parameters=params):
                activity = from_entity(entity)
                if query.keeps(activity):
                    yield Position(pk, str(entity["RowKey"])), activity

    def parse(self, params: Mapping[str, str]) -> tuple[ActivityQuery, Position, int, str]:
        """The query, where it starts, the page size and the format; BadInput names what is
        wrong."""
        q.known(params, PARAMS)
        fmt = q.choice(params, "format", ("json", "csv")) or "json"
        start, end = q.time(params, "from", required=True), q.time(params, "to", required=True)
        assert start is not None and end is not None
        if end <= start:
            raise q.BadInput("to: must be later than from")
        if end - start > MAX_RANGE:
            raise q.BadInput("to: at most 31 days after from (ask for several ranges)")
        top = q.integer(params, "top", 100, 1, MAX_CSV_ROWS if fmt == "csv" else MAX_TOP)
        tenant = q.text(params, "tenant", key=True)
        source = q.choice(params, "source", SOURCES)
        scopes = self._scopes(tenant, source)
        ip_text, network, ip = q.text(params, "ip", 64), None, ""
        if "/" in ip_text:
            network = q.network(params, "ip")
        elif ip_text:
            try:
                ip = str(ipaddress.ip_address(ip_text))
            except ValueError:
                raise q.BadInput(
                    "ip: expected an IP address or a CIDR range such as 203.0.113.0/24"
                ) from None
        event_ids = None
        alert_id = q.text(params, "alert")
        if alert_id:
            alert = self.alert_lookup(alert_id)
            if alert is None:
                raise q.BadInput(f"alert: no alert {alert_id!r}")
            event_ids = frozenset(alert.evidence.activity_ids)
            scopes = ((alert.source or "workplace", alert.tenant_id),)
        country = q.text(params, "country", 2)
        if country and not country.isalpha():
            raise q.BadInput("country: expected a two-letter ISO country code such as GB")
        query = ActivityQuery(
            start=start,
            end=end,
            tenants=tuple(t for _, t in scopes),
            scopes=scopes,
            user=q.text(params, "user"),
            event=q.text(params, "event", 100),
            outcome=q.choice(params, "outcome", ("success", "failure")),
            ip=ip,
            network=network,
            country=country,
            event_ids=event_ids,
        )
        position = Position()
        if params.get("next"):
            p = self.signer.verify(params["next"], query_digest(params, "activities"))
            position = Position(str(p.get("pk", "")), str(p.get("rk", "")))
        return query, position, top, fmt

    def source_of(self, tenant: str) -> str:
        """The source a tenant's activities come from (its Entra tenant, else Workplace)."""
        return "entra" if tenant in self.entra_tenants() else "workplace"

    def _scopes(self, tenant: str, source: str) -> tuple[tuple[str, str], ...]:
        """The (source, tenant) pairs asked for: a tenant of the source (or of either), or every
        Workplace community and Entra tenant of the source (or of both)."""
        known = [("workplace", c) for c in self.communities()]
        known += [("entra", t) for t in self.entra_tenants()]
        if tenant:
            named = [(s, t) for s, t in known if t == tenant and source in ("", s)]
            return tuple(named) or ((source or "workplace", tenant),)
        return tuple((s, t) for s, t in known if source in ("", s))

    def page(self, params: Mapping[str, str]) -> tuple[list[Activity], str | None, str]:
        """One page: the activities, the next token (None at the end) and the format."""
        query, position, top, fmt = self.parse(params)
        found: list[Activity] = []
        last = position
        for pos, activity in self.rows(query, position):
            if len(found) == top:
                token = self.signer.sign(last.as_json(), query_digest(params, "activities"))
                return found, token, fmt
            found.append(activity)
            last = pos
        return found, None, fmt

    def as_json(self, a: Activity) -> dict[str, Any]:
        info = self.intel().lookup(a.ip, a.country) if a.ip else None
        return {
            "id": a.event_id,
            "time": utc(a.time).isoformat(),
            "community": a.tenant_id,
            "kind": a.type,
            "event": a.event_name,
            "category": a.category,
            "outcome": a.outcome,
            "userId": a.actor_id,
            "userEmail": a.actor_email,
            "targetId": a.target_id,
            "targetEmail": a.target_email,
            "ip": a.ip,
            "country": a.country or (info.country if info else ""),
            "isp": info.isp if info else "",
            "userAgent": a.user_agent,
            "interactive": a.interactive,
            "administrative": a.administrative,
            "impersonated": a.impersonated,
        }

    def csv_text(self, activities: list[Activity], header: bool) -> str:
        """The auditor's columns, one row per activity (with the header row on the first page)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        if header:
            writer.writerow(CSV_FIELDS)
        for a in activities:
            j = self.as_json(a)
            user = a.actor_email or a.actor_id
            target = a.target_email or a.target_id
            row = [j["time"], user, a.event_name, a.outcome, a.ip, j["country"], j["isp"],
                   a.user_agent, target, a.tenant_id, a.event_id]  # fmt: skip
            writer.writerow([_cell(str(v)) for v in row])
        return out.getvalue()


def _cell(value: str) -> str:
    """A value a spreadsheet shows as text, never runs as a formula (=, +, -, @ lead one)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
