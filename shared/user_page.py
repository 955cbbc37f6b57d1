"""The user page: one person as Vigil knows them, from stored data only.

Directory record, activity in the last 30 days (countries, IPs and devices with counts, read
from the 30 day partitions of their community), open alerts, governance actions, and the
learning state of each baseline the detections keep for them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableClient

from shared.activity_log import ActivityLog, ActivityQuery, Position
from shared.alerts import AlertStore, to_graph
from shared.detection.profiles import UserProfile
from shared.detection.state import ProfileStore
from shared.governance.actions_api import record_json
from shared.governance.records import ActionFilter, ActionStore
from shared.groups import GroupStore
from shared.models import UserRecord, utc
from shared.users import UserStore

WINDOW = timedelta(days=30)
MAX_ROWS = 50_000  # activities counted for the page; beyond it the counts say they are partial
TOP_VALUES = 50


@dataclass
class UserPage:
    users: UserStore
    users_table: TableClient
    groups: GroupStore
    activities: ActivityLog
    alerts: AlertStore
    actions: ActionStore
    profiles: ProfileStore
    learning: timedelta

    def find(self, ident: str, tenant: str = "") -> UserRecord | None:
        """A user by Workplace id or e-mail (case-insensitive), in `tenant` or any community."""
        if "@" not in ident:
            if tenant:
                return self.users.get(tenant, ident)
            where, params = "RowKey eq @id", {"id": ident}
        else:
            where, params = "Email eq @email", {"email": ident.lower()}
            if tenant:
                where += " and PartitionKey eq @pk"
                params["pk"] = tenant
        for entity in self.users_table.query_entities(where, parameters=params):
            return self.users.get(str(entity["PartitionKey"]), str(entity["RowKey"]))
        return None

    def answer(self, user: UserRecord, now: datetime) -> dict[str, Any]:
        end = utc(now)
        query = ActivityQuery(
            start=end - WINDOW,
            end=end,
            tenants=(user.tenant_id,),
            user=user.user_id,
            source=self.activities.source_of(user.tenant_id),
        )
        countries: Counter[str] = Counter()
        ips: Counter[str] = Counter()
        devices: Counter[str] = Counter()
        first: datetime | None = None
        last: datetime | None = None
        counted = 0
        for _, a in self.activities.rows(query, Position()):
            counted += 1
            countries[a.country or "unknown"] += 1
            if a.ip:
                ips[a.ip] += 1
            if a.user_agent:
                devices[a.user_agent] += 1
            first = a.time if first is None else min(first, a.time)
            last = a.time if last is None else max(last, a.time)
            if counted >= MAX_ROWS:
                break
        names = self.groups.names(user.tenant_id)
        alerts = self.alerts.page(tenant_id=user.tenant_id, user=user.user_id, limit=200).alerts
        open_alerts = [to_graph(a) for a in alerts if a.status != "resolved"]
        actions = self.actions.query(
            ActionFilter(tenant_id=user.tenant_id, user=user.email or user.user_id), limit=100
        )
        profile, _ = self.profiles.get(user.tenant_id, user.user_id)
        return {
            "id": user.user_id,
            "email": user.email,
            "community": user.tenant_id,
            "directory": {
                "status": user.status,
                "admin": user.is_admin,
                "groups": [{"id": g, "name": names.get(g, "")} for g in user.groups],
                "loginMethod": user.auth_method or "unknown",
                "firstSeen": _iso(user.first_seen),
                "lastSeen": _iso(user.last_seen),
                "deactivatedAt": _iso(user.deactivated_at),
            },
            "last30Days": {
                "from": (end - WINDOW).isoformat(),
                "to": end.isoformat(),
                "activities": counted,
                "complete": counted < MAX_ROWS,
                "firstActivity": _iso(first),
                "lastActivity": _iso(last),
                "countries": _counts(countries),
                "ips": _counts(ips),
                "devices": _counts(devices),
            },
            "openAlerts": open_alerts,
            "governanceActions": [record_json(r) for r in actions],
            "baselines": baselines(profile, self.learning, end),
        }


def baselines(profile: UserProfile, learning: timedelta, now: datetime) -> dict[str, Any]:
    """Each baseline the detections keep: how much it holds and whether it is still learning
    (learning ends `learning` after the user's first activity, by event time)."""
    until = profile.first_seen + learning if profile.first_seen else None
    state = "not started" if until is None else ("learning" if now < until else "learned")
    out: dict[str, Any] = {
        "firstActivity": _iso(profile.first_seen),
        "learningUntil": _iso(until),
        "state": state,
    }
    for name, seen in (
        ("countries", profile.countries),
        ("isps", profile.isps),
        ("adminActions", profile.admin),
        ("impersonation", profile.impersonated),
    ):
        out[name] = {"known": sorted(seen), "count": len(seen)}
    return out


def _counts(counter: Counter[str]) -> list[dict[str, Any]]:
    return [{"value": v, "count": n} for v, n in counter.most_common(TOP_VALUES)]


def _iso(t: datetime | None) -> str | None:
    return utc(t).isoformat() if t else None
