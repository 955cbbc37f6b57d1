"""The rows Log Analytics receives: the stream's columns, from an alert or an activity (pure)."""

from __future__ import annotations

import json
from typing import Any

from shared.alerts import to_graph
from shared.models import Activity, Alert, utc


def alert_row(alert: Alert) -> dict[str, Any]:
    """One `VigilAlerts_CL` row (the stream `Custom-VigilAlerts_CL`)."""
    return {
        "TimeGenerated": utc(alert.created_time).isoformat(),
        "AlertId": alert.id,
        "Tenant": alert.tenant_id,
        "Source": alert.source,
        "DetectorId": alert.detector_id,
        "Title": alert.title,
        "Severity": alert.severity,
        "Category": alert.category,
        "UserId": alert.user_id,
        "UserEmail": alert.user_email,
        "FirstActivity": utc(alert.first_activity_time).isoformat(),
        "LastActivity": utc(alert.last_activity_time).isoformat(),
        "EventCount": alert.event_count,
        "MitreTechniques": list(alert.mitre_techniques),
        "Alert": to_graph(alert),
    }


def activity_row(a: Activity) -> dict[str, Any]:
    """One `VigilActivities_CL` row (the stream `Custom-VigilActivities_CL`)."""
    return {
        "TimeGenerated": utc(a.time).isoformat(),
        "ActivityId": a.event_id,
        "Tenant": a.tenant_id,
        "Source": a.source,
        "ActivityType": a.type,
        "EventName": a.event_name,
        "Outcome": a.outcome,
        "ActorId": a.actor_id,
        "ActorEmail": a.actor_email,
        "TargetId": a.target_id,
        "TargetEmail": a.target_email,
        "IpAddress": a.ip,
        "Country": a.country,
        "UserAgent": a.user_agent,
        "Interactive": a.interactive,
        "Administrative": a.administrative,
    }


def encoded(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), default=str)
