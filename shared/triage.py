"""Alert triage: list and read alerts, and change one in the Graph security alert (v2)
vocabulary, with its history (who, when, what) kept on the alert itself.

The alert's ETag guards every change: a client that sends `If-Match` gets 412 when someone else
(an analyst, or detection growing the alert) wrote it since it read it. The history lives in
the same entity, so a change and its history entry are written together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared import query_params as q
from shared.access import Principal
from shared.alerts import AlertStore, from_entity, to_graph
from shared.config import SOURCES
from shared.id_index import usable_id
from shared.models import utc
from shared.paging import TokenSigner
from shared.storage import join_text, split_text

STATUSES = ("new", "inProgress", "resolved")
SEVERITIES = ("informational", "low", "medium", "high")
CLASSIFICATIONS = ("unknown", "truePositive", "falsePositive", "informationalExpectedActivity")
DETERMINATIONS = (
    "unknown",
    "apt",
    "malware",
    "securityPersonnel",
    "securityTesting",
    "unwantedSoftware",
    "other",
    "multiStagedAttack",
    "compromisedAccount",
    "phishing",
    "maliciousUserActivity",
    "notMalicious",
    "notEnoughDataToValidate",
    "confirmedUserActivity",
    "lineOfBusinessApplication",
)
BENIGN = ("falsePositive", "informationalExpectedActivity")
PATCH_FIELDS = ("status", "classification", "determination", "assignedTo", "comment", "suppress")
LIST_PARAMS = (
    "since",
    "detector",
    "user",
    "tenant",
    "status",
    "severity",
    "classification",
    "source",
    "top",
    "next",
)
MAX_PAGE = 200
MAX_HISTORY = 200
MAX_SUPPRESS_DAYS = 365
_COLUMNS = {
    "status": "Status",
    "classification": "Classification",
    "determination": "Determination",
    "assignedTo": "AssignedTo",
}
_DEFAULTS = {"status": "new", "classification": "unknown", "determination": "unknown"}


class Conflict(Exception):
    """The alert changed since the caller read it (a 412)."""


@dataclass(frozen=True)
class AlertChange:
    """What a PATCH asks for: new field values, a comment, and an optional suppression."""

    values: dict[str, str]
    comment: str = ""
    suppress_days: int = 0


def parse_change(body: bytes) -> AlertChange:
    """A PATCH body; BadInput names the field and the values it allows."""
    data = q.json_object(body)
    if not data:
        raise q.BadInput(f"body: expected a JSON object with any of {', '.join(PATCH_FIELDS)}")
    unknown = sorted(set(data) - set(PATCH_FIELDS))
    if unknown:
        raise q.BadInput(f"{unknown[0]}: not a field of an alert; use {', '.join(PATCH_FIELDS)}")
    values: dict[str, str] = {}
    for name, allowed in (
        ("status", STATUSES),
        ("classification", CLASSIFICATIONS),
        ("determination", DETERMINATIONS),
    ):
        if name in data:
            if data[name] not in allowed:
                raise q.BadInput(f"{name}: {data[name]!r} is not one of {', '.join(allowed)}")
            values[name] = data[name]
    for name, limit in (("assignedTo", 200), ("comment", 2000)):
        if name in data and (not isinstance(data[name], str) or len(data[name]) > limit):
            raise q.BadInput(f"{name}: expected a string of at most {limit} characters")
    if "assignedTo" in data:
        values["assignedTo"] = data["assignedTo"].strip()
    days = 0
    if "suppress" in data:
        suppress = data["suppress"]
        asked = suppress.get("days") if isinstance(suppress, dict) else None
        if not isinstance(asked, int) or isinstance(asked, bool):
            raise q.BadInput('suppress: expected {"days": N}')
        days = asked
        if not 1 <= days <= MAX_SUPPRESS_DAYS:
            raise q.BadInput(f"suppress.days: expected an integer from 1 to {MAX_SUPPRESS_DAYS}")
        if values.get("status") != "resolved" or values.get("classification") not in BENIGN:
            raise q.BadInput(
                "suppress: only with status resolved and classification falsePositive or "
                "informationalExpectedActivity"
            )
    return AlertChange(values, str(data.get("comment", "")).strip(), days)


def history(entity: Mapping[str, Any]) -> list[dict[str, Any]]:
    text = join_text("History", dict(entity))
    return list(json.loads(text)) if text else []


def alert_json(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The alert as Graph v2 (`history` only in the detail)."""
    return to_graph(from_entity(dict(entity)))


def etag_of(entity: Any) -> str:
    return str(entity.metadata["etag"])


class TriageStore:
    """The alerts table, read and written for triage (detection writes it through AlertStore)."""

    def __init__(self, alerts: AlertStore) -> None:
        self._table, self.alerts = alerts.table, alerts

    def find(self, alert_id: str) -> Any | None:
        """An alert's entity by id alone (ids are unique across tenants), with its ETag: two
        point reads through the id index. Until the index is complete (alerts stored before it
        existed), an id it misses is looked for by a scan, and its index row written."""
        if not usable_id(alert_id):
            return None
        index = self.alerts.index
        at = index.locate(alert_id)
        if at is not None:
            try:
                entity = self._table.get_entity(at.tenant_id, at.row_key)
            except ResourceNotFoundError:
                return None  # indexed, then not stored (a crash between): there is no alert
            return entity if entity.get("AlertId") == alert_id else None
        if index.complete():
            return None
        rows = self._table.query_entities("AlertId eq @id", parameters={"id": alert_id})
        found = next(iter(rows), None)
        if found is not None:
            index.record(alert_id, found["PartitionKey"], found["RowKey"])
        return found

    def change(
        self, alert_id: str, change: AlertChange, who: Principal, now: datetime, if_match: str
    ) -> tuple[Any, dict[str, Any]]:
        """Apply `change` (guarded by `if_match`, or by the ETag just read when none is given)
        and return the stored entity and the history entry; Conflict or LookupError."""
        for _ in range(3):  # without If-Match, a write that lost a race is redone on a re-read
            entity = self.find(alert_id)
            if entity is None:
                raise LookupError(alert_id)
            if if_match and if_match != etag_of(entity):
                raise Conflict(alert_id)
            changed = {
                name: {"from": entity.get(_COLUMNS[name], _DEFAULTS.get(name, "")), "to": value}
                for name, value in change.values.items()
                if entity.get(_COLUMNS[name], _DEFAULTS.get(name, "")) != value
            }
            entry: dict[str, Any] = {
                "time": utc(now).isoformat(),
                "by": who.as_json(),
                "changes": changed,
            }
            if change.comment:
                entry["comment"] = change.comment
            if change.suppress_days:
                entry["suppressDays"] = change.suppress_days
            past = history(entity)
            kept = [*past, entry][-MAX_HISTORY:]
            parts = split_text("History", json.dumps(kept))
            old_parts = sum(1 for k in entity if k == "History" or k.startswith("History"))
            for i in range(len(parts), old_parts):  # a shorter history blanks the parts left
                parts[f"History{i}"] = ""
            update = {
                "PartitionKey": entity["PartitionKey"],
                "RowKey": entity["RowKey"],
                **{_COLUMNS[n]: c["to"] for n, c in changed.items()},
                **parts,
            }
            try:
                self._table.update_entity(
                    update,
                    mode=UpdateMode.MERGE,
                    etag=etag_of(entity),
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                if if_match:
                    raise Conflict(alert_id) from None
                continue
            stored = self._table.get_entity(entity["PartitionKey"], entity["RowKey"])
            return stored, entry
        raise Conflict(alert_id)

    def page(
        self, params: Mapping[str, str], signer: TokenSigner
    ) -> tuple[list[dict[str, Any]], str | None]:
        """`GET /api/alerts`: alerts newest first, filtered and paged (signed tokens)."""
        q.known(params, LIST_PARAMS)
        since = q.time(params, "since")
        top = q.integer(params, "top", 50, 1, MAX_PAGE)
        after = signer.after(params, "alerts")
        page = self.alerts.page(
            tenant_id=q.text(params, "tenant", key=True) or None,
            since=since,
            detector=q.text(params, "detector") or None,
            user=q.text(params, "user") or None,
            after=after,
            limit=top,
            severity=q.choice(params, "severity", SEVERITIES) or None,
            status=q.choice(params, "status", STATUSES) or None,
            classification=q.choice(params, "classification", CLASSIFICATIONS) or None,
            source=q.choice(params, "source", SOURCES) or None,
        )
        token = signer.next_token(params, "alerts", page.last_row_key)
        return [to_graph(a) for a in page.alerts], token
