"""Alerts in Table Storage: one partition per tenant, newest first by when raised; an open alert
grows with later findings of its incident (`merge`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.id_index import IdIndex, Location
from shared.models import Alert, Evidence, utc
from shared.storage import inverted_ticks

# Status an analyst closes an alert with: findings no longer join it (a missing status is open).
CLOSED = frozenset({"resolved"})
MAX_IDS = 200  # activity ids kept on a growing alert
MAX_LIST = 50  # values kept per list fact (IPs, actions, targets...)
Merged = Literal["created", "merged", "unchanged", "closed"]


def alert_row_key(alert: Alert) -> str:
    """Newest first by when the alert was raised (its creation's event time: never moves while
    the alert grows, unlike its first activity, which a late activity can move earlier)."""
    return f"{inverted_ticks(alert.created_time)}_{alert.id}"


def merge_facts(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Facts of an alert that grows: lists are joined, numbers (counts, speeds) keep the highest,
    `first`/`last` times the earliest/latest, and other values the first one given."""
    out = dict(old)
    for k, v in new.items():
        mine = old.get(k)
        if mine is None:
            out[k] = v
        elif isinstance(mine, list) and isinstance(v, list):
            joined = list(mine)
            joined += [x for x in v if x not in joined]
            out[k] = joined[:MAX_LIST]
        elif isinstance(mine, bool) or isinstance(v, bool):
            out[k] = bool(mine) or bool(v)
        elif isinstance(mine, int | float) and isinstance(v, int | float):
            out[k] = max(mine, v)
        elif k == "first" and isinstance(mine, str) and isinstance(v, str):
            out[k] = min(mine, v)
        elif k == "last" and isinstance(mine, str) and isinstance(v, str):
            out[k] = max(mine, v)
    return out


SEVERITY_ORDER = ("informational", "low", "medium", "high")


def grown(old: Alert, new: Alert) -> Alert:
    """`old` with what `new` (a later finding of the same incident) adds; `old` itself when it
    adds nothing (a redelivery)."""
    ids = list(old.evidence.activity_ids)
    added = [i for i in new.evidence.activity_ids if i not in ids]
    if not added:
        return old
    facts = merge_facts(old.evidence.facts, new.evidence.facts)
    suppressions = list(old.evidence.suppressions_evaluated)
    suppressions += [x for x in new.evidence.suppressions_evaluated if x not in suppressions]
    severity = max(old.severity, new.severity, key=SEVERITY_ORDER.index)
    return replace(
        old,
        severity=severity,
        first_activity_time=min(utc(old.first_activity_time), utc(new.first_activity_time)),
        last_activity_time=max(utc(old.last_activity_time), utc(new.last_activity_time)),
        evidence=Evidence(facts, tuple((ids + added)[-MAX_IDS:]), tuple(suppressions)),
        event_count=old.event_count + len(added),
    )


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
        "PolicyId": a.policy_id,
        "RecommendedActions": a.recommended_actions,
        # Written only when true: an extension of the alert never clears the mark.
        **({"Capped": True} if a.capped else {}),
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
        policy_id=e.get("PolicyId", ""),
        recommended_actions=e.get("RecommendedActions", ""),
        capped=bool(e.get("Capped", False)),
        assigned_to=e.get("AssignedTo", ""),
    )


def to_graph(a: Alert) -> dict[str, Any]:
    """The alert as a Graph security alert (v2) resource, plus Vigil's evidence fields."""
    return {
        "id": a.id,
        "title": a.title,
        "description": a.description,
        "severity": a.severity,
        "status": a.status,
        "classification": a.classification,
        "determination": a.determination,
        "assignedTo": a.assigned_to,
        "category": a.category,
        "mitreTechniques": list(a.mitre_techniques),
        "serviceSource": a.source,
        "detectionSource": "vigil",
        "detectorId": a.detector_id,
        "providerAlertId": a.id,
        "tenantId": a.tenant_id,
        "createdDateTime": utc(a.created_time).isoformat(),
        "firstActivityDateTime": utc(a.first_activity_time).isoformat(),
        "lastActivityDateTime": utc(a.last_activity_time).isoformat(),
        "recommendedActions": a.recommended_actions,
        "evidence": [
            {
                "@odata.type": "#microsoft.graph.security.userEvidence",
                "userAccount": {
                    "accountName": a.user_email,
                    "userPrincipalName": a.user_email,
                    "azureAdUserId": "",
                    "userSid": a.user_id,
                },
            }
        ],
        "ruleId": a.policy_id or a.detector_id,
        "dedupKey": a.dedup_key,
        "eventCount": a.event_count,
        "relatedEventIds": list(a.evidence.activity_ids),
        "facts": a.evidence.facts,
        "suppressionsEvaluated": list(a.evidence.suppressions_evaluated),
        "governanceActions": list(a.actions),
        "dailyLimitReached": a.capped,
        "userId": a.user_id,
        "userEmail": a.user_email,
    }


@dataclass(frozen=True)
class AlertPage:
    alerts: list[Alert]
    last_row_key: str | None  # where the next page starts; None: no more


class AlertStore:
    """Alerts by tenant, each with its row in the id index (`IdIndex`), written first."""

    def __init__(self, table: TableClient, index: IdIndex) -> None:
        self.table, self.index = table, index

    def save(self, alert: Alert) -> str:
        """Create or refresh an alert; triage fields (status, classification) are left alone."""
        entity = to_entity(alert)
        self.index.record(alert.id, alert.tenant_id, entity["RowKey"])
        self.table.upsert_entity(entity, mode=UpdateMode.MERGE)
        return str(entity["RowKey"])

    def merge(self, alert: Alert) -> Merged:
        """Create the alert, or grow the stored one with it (activity ids joined, so a
        redelivery adds nothing). Guarded by the stored alert's ETag: a concurrent worker's
        change is re-read and merged again. An alert an analyst closed is left alone ("closed").
        Triage fields (status, classification) are never written here."""
        key = alert_row_key(alert)
        for _ in range(16):
            try:
                e = self.table.get_entity(alert.tenant_id, key)
            except ResourceNotFoundError:
                # Indexed first: a crash before the alert leaves a row that finds nothing.
                self.index.record(alert.id, alert.tenant_id, key)
                try:
                    self.table.create_entity(to_entity(alert))
                    return "created"
                except ResourceExistsError:
                    continue
            if str(e.get("Status") or "new") in CLOSED:
                return "closed"
            old = from_entity(e)
            new = grown(old, alert)
            if new is old:
                return "unchanged"
            try:
                self.table.update_entity(
                    to_entity(new),
                    mode=UpdateMode.MERGE,
                    etag=e.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return "merged"
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        raise RuntimeError(f"alert {alert.id} kept changing while being merged")

    def get(self, tenant_id: str, row_key: str) -> Alert | None:
        try:
            return from_entity(self.table.get_entity(tenant_id, row_key))
        except ResourceNotFoundError:
            return None

    def page(
        self,
        *,
        tenant_id: str | None = None,
        since: datetime | None = None,
        detector: str | None = None,
        user: str | None = None,
        after: str | None = None,
        limit: int = 50,
        severity: str | None = None,
        status: str | None = None,
        classification: str | None = None,
        source: str | None = None,
    ) -> AlertPage:
        """Alerts newest first (by when raised), filtered, `limit` at a time, after the row key
        `after`.

        Row keys sort newest first within a tenant; across tenants the filtered rows are merged.
        Status and classification are checked here: an untriaged alert has neither property.
        """
        clauses, params = [], {}
        if tenant_id:
            clauses.append("PartitionKey eq @pk")
            params["pk"] = tenant_id
        if since is not None:  # newer than `since` = smaller inverted ticks
            clauses.append("RowKey lt @since")
            params["since"] = inverted_ticks(utc(since)) + "~"
        if after:
            clauses.append("RowKey gt @after")
            params["after"] = after
        if severity:
            clauses.append("Severity eq @sev")
            params["sev"] = severity
        if detector:
            clauses.append("DetectorId eq @det")
            params["det"] = detector
        if source:
            clauses.append("Source eq @src")
            params["src"] = source
        rows = self.table.query_entities(" and ".join(clauses) or "RowKey ne ''", parameters=params)
        found: list[dict[str, Any]] = []
        for e in rows:
            if user and user.lower() not in (
                str(e.get("UserId", "")),
                str(e.get("UserEmail", "")).lower(),
            ):
                continue
            if status and e.get("Status", "new") != status:
                continue
            if classification and e.get("Classification", "unknown") != classification:
                continue
            found.append(e)
            if tenant_id and len(found) > limit:
                break  # one partition comes back sorted: no need to read further
        found.sort(key=lambda e: (e["RowKey"], e["PartitionKey"]))
        page = found[:limit]
        more = len(found) > limit
        return AlertPage([from_entity(e) for e in page], page[-1]["RowKey"] if more else None)

    def stored_ids(self) -> Iterator[tuple[str, Location]]:
        """Every alert's id and where it is (a scan: the index's backfill)."""
        rows = self.table.query_entities(
            "RowKey ne ''", select=["PartitionKey", "RowKey", "AlertId"]
        )
        for row in rows:
            yield str(row["AlertId"]), Location(str(row["PartitionKey"]), str(row["RowKey"]))

    def for_tenant(self, tenant_id: str) -> list[Alert]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id})
        return [from_entity(e) for e in rows]
