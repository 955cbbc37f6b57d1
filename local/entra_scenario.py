"""Simulated Entra ID traffic: sign-in and directory-audit records in Graph's documented shape.

What the simulated Graph's `/auditLogs` serve (local/sim_graph_feeds.py): ordinary sign-ins from
the office, an MFA prompt now and then, and password guessing from abroad (error 50126).
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from local.sim_graph import SimulatedGraph, SimUser

Place = tuple[str, str, float, float]  # where a sign-in comes from: ip, country, lat, lon
OFFICES: list[Place] = [
    ("198.51.100.10", "GB", 51.5072, -0.1276),
    ("198.51.100.20", "PL", 52.2297, 21.0122),
]
ATTACKER: Place = ("203.0.113.66", "BR", -23.5505, -46.6333)
INVALID_PASSWORD, MFA_REQUIRED = 50126, 50074


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"  # Graph writes 7 fraction digits


def sign_in(
    at: datetime,
    *,
    user_id: str,
    upn: str,
    code: int = 0,
    ip: str = "203.0.113.45",
    country: str = "NL",
    lat: float = 52.3676,
    lon: float = 4.9041,
    record_id: str | None = None,
) -> dict[str, Any]:
    """One `signIn` (v1.0 shape)."""
    return {
        "id": record_id or str(uuid.uuid4()),
        "createdDateTime": stamp(at),
        "userId": user_id,
        "userPrincipalName": upn,
        "userDisplayName": upn.split("@")[0],
        "appId": "00000002-0000-0ff1-ce00-000000000000",
        "appDisplayName": "Office 365 Exchange Online",
        "ipAddress": ip,
        "clientAppUsed": "Browser",
        "isInteractive": True,
        "correlationId": str(uuid.uuid4()),
        "conditionalAccessStatus": "notApplied",
        "riskDetail": "hidden",
        "riskLevelAggregated": "hidden",
        "riskLevelDuringSignIn": "hidden",
        "riskState": "none",
        "riskEventTypes_v2": [],
        "resourceDisplayName": "Office 365 Exchange Online",
        "resourceId": "00000002-0000-0ff1-ce00-000000000000",
        "status": {"errorCode": code, "failureReason": "" if code == 0 else "Failed."},
        "deviceDetail": {"deviceId": "", "operatingSystem": "Windows 10", "browser": "Edge 121"},
        "location": {
            "city": "",
            "state": "",
            "countryOrRegion": country,
            "geoCoordinates": {"altitude": None, "latitude": lat, "longitude": lon},
        },
    }


def audit(
    at: datetime,
    name: str,
    *,
    actor_id: str,
    actor_upn: str,
    target_id: str,
    target_upn: str,
    record_id: str | None = None,
) -> dict[str, Any]:
    """One `directoryAudit` by a user on a user."""
    return {
        "id": record_id or f"Directory_{uuid.uuid4().hex[:5].upper()}_{uuid.uuid4().int % 10**9}",
        "category": "UserManagement",
        "correlationId": str(uuid.uuid4()),
        "result": "success",
        "resultReason": "",
        "activityDisplayName": name,
        "activityDateTime": stamp(at),
        "loggedByService": "Core Directory",
        "operationType": "Update",
        "initiatedBy": {
            "user": {"id": actor_id, "userPrincipalName": actor_upn, "ipAddress": "198.51.100.10"},
            "app": None,
        },
        "targetResources": [
            {
                "id": target_id,
                "type": "User",
                "userPrincipalName": target_upn,
                "modifiedProperties": [],
            }
        ],  # fmt: skip
        "additionalDetails": [],
    }


def _sign_in_from(place: Place, user: SimUser, at: datetime, code: int) -> dict[str, Any]:
    ip, country, lat, lon = place
    upn = user.user_principal_name
    return sign_in(
        at, user_id=user.id, upn=upn, code=code, ip=ip, country=country, lat=lat, lon=lon
    )


def ordinary_sign_ins(
    users: list[SimUser], start: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """Each user signs in from their office; some get an MFA prompt first (not a failure)."""
    out = []
    for i, user in enumerate(users):
        office = OFFICES[int(user.id[-1], 16) % len(OFFICES)]
        at = start + timedelta(minutes=i, seconds=rng.randint(0, 50))
        codes = [MFA_REQUIRED, 0] if rng.random() < 0.3 else [0]
        for j, code in enumerate(codes):
            out.append(_sign_in_from(office, user, at + timedelta(seconds=20 * j), code))
    return out


def password_guessing(victim: SimUser, start: datetime, attempts: int = 14) -> list[dict[str, Any]]:
    """Wrong passwords from abroad, 12 s apart (error 50126)."""
    return [
        _sign_in_from(ATTACKER, victim, start + timedelta(seconds=12 * i), INVALID_PASSWORD)
        for i in range(attempts)
    ]


def publish(graph: SimulatedGraph, sign_ins: list[dict[str, Any]]) -> None:
    graph.audit_logs.add("signIns", *sign_ins)
