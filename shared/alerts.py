"""Alerts in Table Storage: one partition per tenant, newest first by first activity time."""

from __future__ import annotations

import json
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.models import Alert, Evidence, utc
from shared.storage import inverted_ticks


def alert_row_key(alert: Alert) -> str:
    return f"{inverted_ticks(alert.first_activity_time)}_{alert.id}"


def to_entity(a: Alert) -> dict[str, Any]:
    return {
        "PartitionKey": a.tenant_id,
        "RowKey": alert_row_key(a),
        "AlertId": a.id,
        "Source": a.source,
        "DetectorId": a.detector_id,
        "Title": a.title,
        "Description": a.description,
        "Severity": a.severity,
        "Category": a.category,
        "MitreTechniques": json.dumps(list(a.mitre_techniques)),
        "UserId": a.user_id,
        "UserEmail": a.user_email,
        "FirstActivityTime": utc(a.first_activity_time),
        "LastActivityTime": utc(a.last_activity_time),
        "CreatedTime": utc(a.created_time),
        "Facts": json.dumps(a.evidence.facts, default=str),
        "ActivityIds": json.dumps(list(a.evidence.activity_ids)),
        "SuppressionsEvaluated": json.dumps(list(a.evidence.suppressions_evaluated)),
        "DedupKey": a.dedup_key,
        "Actions": json.dumps(list(a.actions)),
        "EventCount": a.event_count,
    }


def from_entity(e: dict[str, Any]) -> Alert:
    return Alert(
        id=e["AlertId"],
        tenant_id=e["PartitionKey"],
        source=e.get("Source", ""),
        detector_id=e["DetectorId"],
        title=e["Title"],
        description=e.get("Description", ""),
        severity=e["Severity"],
        category=e.get("Category", ""),
        mitre_techniques=tuple(json.loads(e.get("MitreTechniques", "[]"))),
        user_id=e.get("UserId", ""),
        user_email=e.get("UserEmail", ""),
        first_activity_time=utc(e["FirstActivityTime"]),
        last_activity_time=utc(e["LastActivityTime"]),
        created_time=utc(e["CreatedTime"]),
        evidence=Evidence(
            facts=json.loads(e.get("Facts", "{}")),
            activity_ids=tuple(json.loads(e.get("ActivityIds", "[]"))),
            suppressions_evaluated=tuple(json.loads(e.get("SuppressionsEvaluated", "[]"))),
        ),
        dedup_key=e.get("DedupKey", ""),
        actions=tuple(json.loads(e.get("Actions", "[]"))),
        status=e.get("Status", "new"),
        classification=e.get("Classification", "unknown"),
        determination=e.get("Determination", "unknown"),
        event_count=int(e.get("EventCount", 0)),
    )


class AlertStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def save(self, alert: Alert) -> str:
        """Create or refresh an alert; triage fields (status, classification) are left alone."""
        entity = to_entity(alert)
        self._table.upsert_entity(entity, mode=UpdateMode.MERGE)
        return str(entity["RowKey"])

    def get(self, tenant_id: str, row_key: str) -> Alert | None:
        try:
            return from_entity(self._table.get_entity(tenant_id, row_key))
        except ResourceNotFoundError:
            return None

    def for_tenant(self, tenant_id: str) -> list[Alert]:
        rows = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [from_entity(e) for e in rows]
