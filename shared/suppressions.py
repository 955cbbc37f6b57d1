"""Suppressions: an analyst's "not again for N days" when resolving an alert as benign.

A suppression names a detector, a user and the alert's distinguishing value (a country, an IP
range, an admin action). For N days of event time after the alert's last activity, a finding of
that detector for that user and value raises no alert. A finding of the same detector and user
with another value is raised and names the suppression in `suppressionsEvaluated`, so a person
can see it was considered. `apply_suppressions` is the pure decision; detection calls it where
findings become alerts.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.detection.base import Finding
from shared.models import Alert, short_hash, utc

# Which fact distinguishes an alert, per detector (others: the first of these facts present).
_PREFERRED = {
    "vigil.infrequent_country": "country",
    "vigil.anonymous_ip": "ip",
    "vigil.suspicious_ip": "ip",
    "vigil.unusual_admin": "action",
}
_ORDER = ("action", "country", "ip")
_KINDS = {"action": "admin action", "country": "country", "ip": "IP range"}


@dataclass(frozen=True)
class Suppression:
    id: str
    tenant_id: str
    detector_id: str
    user_id: str
    kind: str  # "country", "IP range", "admin action" or "user" (the detector for the user)
    value: str  # the country code, the network (CIDR), the action; "" for "user"
    start: datetime  # event time: the alert's last activity
    until: datetime  # event time
    alert_id: str = ""
    created_by: str = ""
    created_at: datetime | None = None
    classification: str = ""

    def covers_time(self, t: datetime) -> bool:
        return self.start <= utc(t) <= self.until

    def describe(self) -> str:
        what = f"{self.kind} {self.value}" if self.value else "any value"
        return f"suppression {self.id} ({self.detector_id}, {what}, until {self.until:%Y-%m-%d})"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenantId": self.tenant_id,
            "detectorId": self.detector_id,
            "userId": self.user_id,
            "kind": self.kind,
            "value": self.value,
            "from": utc(self.start).isoformat(),
            "until": utc(self.until).isoformat(),
            "alertId": self.alert_id,
            "createdBy": self.created_by,
            "createdDateTime": utc(self.created_at).isoformat() if self.created_at else None,
            "classification": self.classification,
        }


def distinguishing(detector_id: str, facts: dict[str, Any]) -> tuple[str, str]:
    """(kind, value) that tells this alert from others of its detector and user."""
    for name in (_PREFERRED.get(detector_id), *_ORDER):
        value = facts.get(name) if name else None
        if isinstance(value, str) and value:
            if name == "ip":
                return _KINDS["ip"], _network(value)
            return _KINDS[str(name)], value.upper() if name == "country" else value
    return "user", ""


def _network(ip: str) -> str:
    """The range an IP stands for: its /24 (IPv4) or /48 (IPv6); the text itself otherwise."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _matches(s: Suppression, kind: str, value: str, facts: dict[str, Any]) -> bool:
    if s.kind == "user":
        return True
    if s.kind == _KINDS["ip"]:
        ip = facts.get("ip")
        try:
            return isinstance(ip, str) and ipaddress.ip_address(ip) in ipaddress.ip_network(s.value)
        except ValueError:
            return value == s.value
    return (kind, value) == (s.kind, s.value)


def apply_suppressions(
    findings: Sequence[tuple[str, Finding]], suppressions: Sequence[Suppression]
) -> list[tuple[str, Finding]]:
    """The (user id, finding) pairs still to raise: a finding a suppression covers is dropped;
    one it was considered for (same detector and user, in its time) names it."""
    kept: list[tuple[str, Finding]] = []
    for user, f in findings:
        relevant = [
            s
            for s in suppressions
            if s.detector_id in (f.detector_id, f.policy_id)
            and s.user_id == user
            and s.covers_time(f.last)
        ]
        if not relevant:
            kept.append((user, f))
            continue
        kind, value = distinguishing(f.detector_id, f.facts)
        if any(_matches(s, kind, value, f.facts) for s in relevant):
            continue
        notes = tuple(f"{s.describe()}: not this {kind} ({value})" for s in relevant)
        kept.append((user, replace(f, suppressions_evaluated=(*f.suppressions_evaluated, *notes))))
    return kept


def from_alert(alert: Alert, days: int, by: str, now: datetime, classification: str) -> Suppression:
    kind, value = distinguishing(alert.detector_id, alert.evidence.facts)
    start = utc(alert.last_activity_time)
    return Suppression(
        id=short_hash(alert.id, str(days), utc(now).isoformat(), length=16),
        tenant_id=alert.tenant_id,
        detector_id=alert.policy_id or alert.detector_id,
        user_id=alert.user_id,
        kind=kind,
        value=value,
        start=start,
        until=start + timedelta(days=days),
        alert_id=alert.id,
        created_by=by,
        created_at=utc(now),
        classification=classification,
    )


class SuppressionStore:
    """Per tenant (partition), by id; few rows: analysts write them one at a time."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def save(self, s: Suppression) -> None:
        self._table.upsert_entity(
            {
                "PartitionKey": s.tenant_id,
                "RowKey": s.id,
                "Body": json.dumps(s.as_json()),
                "Until": utc(s.until),
            }
        )

    def for_tenant(self, tenant_id: str) -> list[Suppression]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [_parse(e) for e in rows]

    def all(self, tenant_id: str = "") -> list[Suppression]:
        if tenant_id:
            return self.for_tenant(tenant_id)
        return sorted((_parse(e) for e in self._table.list_entities()), key=lambda s: s.until)

    def delete(self, suppression_id: str) -> Suppression | None:
        rows = self._table.query_entities("RowKey eq @id", parameters={"id": suppression_id})
        for e in rows:
            try:
                self._table.delete_entity(e["PartitionKey"], e["RowKey"])
            except ResourceNotFoundError:
                return None
            return _parse(e)
        return None


def _parse(e: dict[str, Any]) -> Suppression:
    d = json.loads(e["Body"])
    return Suppression(
        id=d["id"],
        tenant_id=d["tenantId"],
        detector_id=d["detectorId"],
        user_id=d["userId"],
        kind=d["kind"],
        value=d["value"],
        start=utc(datetime.fromisoformat(d["from"])),
        until=utc(datetime.fromisoformat(d["until"])),
        alert_id=d.get("alertId", ""),
        created_by=d.get("createdBy", ""),
        created_at=utc(datetime.fromisoformat(d["createdDateTime"]))
        if d.get("createdDateTime")
        else None,
        classification=d.get("classification", ""),
    )
