"""Posture recommendations, computed by `posture_timer` from stored data and stored; the API
serves the stored copy.

The first and only one so far: **Adopt SSO in Workplace**. Active users are the community's
members (directory status active) who signed in successfully in the last 30 days; each one's
method comes from the login events that say how (`login_method`), or else from the directory's
record of their auth method (a custom integration sees no login method in events). Healthy when
none of them signed in with a password.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.activity_log import ActivityLog, ActivityQuery, Position
from shared.models import Activity, UserRecord, utc
from shared.storage import join_text, split_text
from shared.users import UserStore

WINDOW = timedelta(days=30)
ADOPT_SSO = "adopt-sso"
HOW_TO_FIX = (
    "In Workplace, Admin Panel > Security > Authentication: turn on single sign-on with "
    "Microsoft Entra ID (SAML), then require SSO for everyone so password sign-in is no longer "
    "offered. Check the listed users can sign in through Entra ID first (their Workplace e-mail "
    "must match their Entra user principal name), and keep one break-glass admin with a password."
)


@dataclass(frozen=True)
class SignIns:
    """What the last 30 days' successful logins say about one user."""

    methods: frozenset[str]  # "sso" / "password" from the events; empty: they do not say


def login_method(a: Activity) -> str:
    if '"login_method"' not in a.raw:
        return ""
    method = json.loads(a.raw).get("value", {}).get("login_method")
    return method if method in ("sso", "password") else ""


def adopt_sso(
    tenant_id: str, users: Iterable[UserRecord], logins: Iterable[Activity], now: datetime
) -> dict[str, Any]:
    """The recommendation for one community (pure: records in, answer out)."""
    seen: dict[str, set[str]] = {}
    for a in logins:
        if a.type == "login" and a.outcome == "success":
            methods = seen.setdefault(a.actor_id, set())
            if method := login_method(a):
                methods.add(method)
    active = [u for u in users if u.status == "active" and u.user_id in seen]
    password = [
        u
        for u in active
        if "password" in seen[u.user_id] or (not seen[u.user_id] and u.auth_method == "password")
    ]
    unknown = [
        u for u in active if not seen[u.user_id] and u.auth_method not in ("sso", "password")
    ]
    share = len(password) / len(active) if active else 0.0
    return {
        "id": ADOPT_SSO,
        "title": "Adopt SSO in Workplace",
        "community": tenant_id,
        "state": "atRisk" if password else "healthy",
        "activeUsers": len(active),
        "passwordUsers": len(password),
        "unknownMethodUsers": len(unknown),
        "passwordShare": round(share, 4),
        "users": [
            {"id": u.user_id, "email": u.email} for u in sorted(password, key=lambda u: u.email)
        ],
        "window": {"from": (utc(now) - WINDOW).isoformat(), "to": utc(now).isoformat()},
        "computedDateTime": utc(now).isoformat(),
        "howToFix": HOW_TO_FIX,
    }


@dataclass
class PostureStore:
    table: TableClient

    def save(self, recommendation: dict[str, Any]) -> None:
        # A long list of users spans several properties (each within the 64 KiB limit).
        body = split_text("Body", json.dumps(recommendation))
        self.table.upsert_entity(
            {"PartitionKey": recommendation["id"], "RowKey": recommendation["community"], **body}
        )

    def all(self, tenant_id: str = "") -> list[dict[str, Any]]:
        if tenant_id:
            try:
                rows = [self.table.get_entity(ADOPT_SSO, tenant_id)]
            except ResourceNotFoundError:
                rows = []
        else:
            rows = list(self.table.list_entities())
        return [json.loads(join_text("Body", dict(e))) for e in rows]


def compute(
    communities: list[str], users: UserStore, log: ActivityLog, store: PostureStore, now: datetime
) -> int:
    """Recompute and store each community's recommendation; returns how many were stored."""
    for tenant in communities:
        query = ActivityQuery(start=utc(now) - WINDOW, end=utc(now), tenants=(tenant,),
                              event="login", outcome="success")  # fmt: skip
        logins = (a for _, a in log.rows(query, Position()))
        store.save(adopt_sso(tenant, users.for_tenant(tenant), logins, now))
    return len(communities)
