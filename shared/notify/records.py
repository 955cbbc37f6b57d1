"""One record per alert and destination (Table Storage, written under its ETag), so an alert is
notified once per destination however often its message is delivered; and each destination's
daily cap, exact across workers (the detection daily limit's slots, `daily_limit.py`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.detection.daily_limit import DailyLimits
from shared.models import utc

Status = Literal["pending", "sending", "sent", "failed", "over_cap"]
Kind = Literal["alert", "cap_notice", "none"]
TERMINAL = frozenset({"sent", "failed", "over_cap"})
CAPS_PARTITION = "~notify"  # the days' cap slots, apart from the tenants' records


@dataclass(frozen=True)
class NotifyRecord:
    tenant_id: str
    alert_id: str
    destination: str
    kind: Kind  # what this alert sends here: itself, the day's cap notice, or nothing
    day: date  # the UTC day of sending it counts against
    status: Status = "pending"
    attempts: int = 0
    intent_at: datetime | None = None  # a send began; its answer not yet saved
    lease_until: datetime | None = None
    error: str = ""  # the last failure, in words (never a URL or a secret)
    updated_at: datetime | None = None

    @property
    def row_key(self) -> str:
        return f"{self.alert_id}|{self.destination}"

    def to_entity(self) -> dict[str, Any]:
        e: dict[str, Any] = {
            "PartitionKey": self.tenant_id,
            "RowKey": self.row_key,
            "AlertId": self.alert_id,
            "Destination": self.destination,
            "Kind": self.kind,
            "Day": self.day.isoformat(),
            "Status": self.status,
            "Attempts": self.attempts,
            "Error": self.error[:1000],
        }
        for name, value in (
            ("IntentAt", self.intent_at),
            ("LeaseUntil", self.lease_until),
            ("UpdatedAt", self.updated_at),
        ):
            if value is not None:
                e[name] = utc(value)
        return e

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> NotifyRecord:
        def when(name: str) -> datetime | None:
            return utc(e[name]) if e.get(name) is not None else None

        return cls(
            tenant_id=e["PartitionKey"],
            alert_id=e["AlertId"],
            destination=e["Destination"],
            kind=e["Kind"],
            day=date.fromisoformat(e["Day"]),
            status=e["Status"],
            attempts=int(e.get("Attempts", 0)),
            intent_at=when("IntentAt"),
            lease_until=when("LeaseUntil"),
            error=e.get("Error", ""),
            updated_at=when("UpdatedAt"),
        )

    def evolve(self, **changes: Any) -> NotifyRecord:
        return replace(self, **changes)


class RecordConflict(RuntimeError):
    """Another delivery changed the record first."""


class NotifyStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._caps = DailyLimits(table)

    def read(
        self, tenant_id: str, alert_id: str, destination: str
    ) -> tuple[NotifyRecord, str] | None:
        try:
            e = self._table.get_entity(tenant_id, f"{alert_id}|{destination}")
        except ResourceNotFoundError:
            return None
        return NotifyRecord.from_entity(e), str(e.metadata["etag"])

    def save(self, record: NotifyRecord, etag: str | None) -> str:
        """Create (`etag` None) or replace while unchanged; returns the new ETag."""
        entity = record.to_entity()
        try:
            if etag is None:
                meta = self._table.create_entity(entity)
            else:
                meta = self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            raise RecordConflict(f"notification {record.row_key} changed meanwhile") from None
        return str(meta["etag"])

    def all(self, tenant_id: str) -> list[NotifyRecord]:
        rows = self._table.query_entities("PartitionKey eq @p", parameters={"p": tenant_id})
        return [NotifyRecord.from_entity(e) for e in rows]

    def within_cap(self, destination: str, day: date, alert_id: str, cap: int) -> bool:
        """True when the alert has (or already had) one of the day's `cap` slots."""
        return self._caps.reserve(CAPS_PARTITION, destination, day, alert_id, cap)

    def first_over_cap(self, destination: str, day: date, alert_id: str) -> bool:
        """True for exactly one alert per destination and day: the one whose notice is sent."""
        return self._caps.reserve(CAPS_PARTITION, f"{destination}-notice", day, alert_id, 1)
