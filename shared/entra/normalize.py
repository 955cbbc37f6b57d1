"""Entra ID sign-in and directory-audit records (Graph's wire format) -> Vigil activities (pure).

The boundary: every value that reaches a table key or a date computation is checked here, and a
record that fails raises `RecordError` with its reason (the pull keeps it in quarantine). Record
ids become activity ids, so reading a record again (the overlap window) overwrites, never doubles.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from shared.boundary import MAX_FIELD_CHARS, in_range, range_text
from shared.entra.audits import SELF_SERVICE, type_of
from shared.entra.codes import kind_of
from shared.models import Activity, utc

SOURCE = "entra"
SIGN_IN = "signIn"  # the category of sign-in activities
MAX_RAW_CHARS = 420_000
_RECORD_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # GUIDs, "Directory_7KQ2M_120934871"
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NULLS = ("", "<null>")


class RecordError(ValueError):
    """A record Vigil cannot read: quarantined with this reason."""


def _ci(d: dict[str, Any], key: str) -> Any:
    """A key regardless of case (Microsoft's own examples write `Type` for `type`)."""
    if key in d:
        return d[key]
    low = key.lower()
    return next((v for k, v in d.items() if isinstance(k, str) and k.lower() == low), None)


def _text(d: dict[str, Any] | None, key: str) -> str:
    if not isinstance(d, dict):
        return ""
    v = _ci(d, key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise RecordError(f"`{key}` is a {type(v).__name__}, not a string")
    if len(v) > MAX_FIELD_CHARS:
        raise RecordError(f"`{key}` is {len(v)} characters (at most {MAX_FIELD_CHARS})")
    return "" if v in _NULLS else v


def _obj(d: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    v = _ci(d, key) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else None


def _record_id(rec: dict[str, Any]) -> str:
    rid = _text(rec, "id")
    if not _RECORD_ID.fullmatch(rid):
        raise RecordError(f"`id` {rid[:40]!r} is not an Entra record id")
    return rid


def _object_id(d: dict[str, Any] | None, key: str, what: str) -> str:
    oid = _text(d, key)
    if oid and not _GUID.fullmatch(oid):
        raise RecordError(f"{what} `{key}` {oid[:40]!r} is not an object id (GUID)")
    return oid.lower()


def _time(rec: dict[str, Any], key: str, now: datetime) -> datetime:
    stamp = _text(rec, key)
    try:
        t = utc(datetime.fromisoformat(stamp))  # 7 fraction digits: Python 3.11+ reads them
    except (ValueError, OverflowError):
        raise RecordError(f"`{key}` {stamp[:64]!r} is not a timestamp") from None
    if not in_range(t, now):
        raise RecordError(f"`{key}` {stamp[:64]!r} is outside {range_text(now)}")
    return t


def _raw(rec: dict[str, Any]) -> str:
    raw = json.dumps(rec, ensure_ascii=False)
    if len(raw) > MAX_RAW_CHARS:
        raise RecordError(f"record is {len(raw)} characters as JSON (at most {MAX_RAW_CHARS})")
    return raw


def _coordinates(location: dict[str, Any] | None) -> tuple[float | None, float | None]:
    geo = _obj(location, "geoCoordinates")
    lat, lon = (_ci(geo, "latitude"), _ci(geo, "longitude")) if geo else (None, None)
    ok = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in (lat, lon)
    )
    if not ok or not (-90 <= lat <= 90 and -180 <= lon <= 180):  # type: ignore[operator]
        return None, None
    if lat == 0 and lon == 0:  # what an unlocated sign-in shows
        return None, None
    return float(lat), float(lon)  # type: ignore[arg-type]


def _error_code(status: dict[str, Any] | None) -> int:
    code = _ci(status, "errorCode") if status else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise RecordError(f"`status.errorCode` {str(code)[:20]!r} is not a number")
    return code


def _interactive(rec: dict[str, Any]) -> bool:
    types = _ci(rec, "signInEventTypes")  # beta
    if isinstance(types, list) and types:
        return "interactiveUser" in types
    return _ci(rec, "isInteractive") is not False


def signin_activity(rec: dict[str, Any], tenant_id: str, now: datetime) -> Activity:
    """One `signIn` (v1.0, or beta with `signInEventTypes`) as an activity of its user."""
    rid = _record_id(rec)
    user_id = _object_id(rec, "userId", "sign-in")
    upn = _text(rec, "userPrincipalName").lower()
    if not user_id:
        raise RecordError("sign-in has no `userId`")
    kind = kind_of(_error_code(_obj(rec, "status")))
    location = _obj(rec, "location")
    lat, lon = _coordinates(location)
    device = _obj(rec, "deviceDetail")
    browser, system = _text(device, "browser"), _text(device, "operatingSystem")
    agent = _text(rec, "userAgent") or " / ".join(p for p in (browser, system) if p)
    return Activity(
        source=SOURCE,
        tenant_id=tenant_id,
        event_id=rid,
        time=_time(rec, "createdDateTime", now),
        type=kind.type,
        event_name=f"signIn.{kind.cls}",
        category=SIGN_IN,
        outcome=kind.outcome,
        actor_id=user_id,
        actor_email=upn,
        target_id=user_id,
        target_email=upn,
        ip=_text(rec, "ipAddress"),
        country=_text(location, "countryOrRegion").upper()[:2],
        user_agent=agent,
        interactive=_interactive(rec),
        raw=_raw(rec),
        latitude=lat,
        longitude=lon,
    )


def _target(rec: dict[str, Any]) -> tuple[str, str]:
    """The user the audit acted on (object id, UPN), else the first target's id and name."""
    targets = _ci(rec, "targetResources")
    targets = [t for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []
    for t in targets:
        if _text(t, "type").lower() == "user":
            return _object_id(t, "id", "target"), _text(t, "userPrincipalName").lower()
    if targets:
        t = targets[0]
        return _text(t, "id")[:128], (_text(t, "displayName") or _text(t, "id"))[:256]
    return "", ""


def audit_activity(rec: dict[str, Any], tenant_id: str, now: datetime) -> Activity:
    """One `directoryAudit` as an administrative activity of whoever initiated it."""
    rid = _record_id(rec)
    name = _text(rec, "activityDisplayName")
    if not name:
        raise RecordError("directory audit has no `activityDisplayName`")
    initiated = _obj(rec, "initiatedBy")
    user, app = _obj(initiated, "user"), _obj(initiated, "app")
    actor_id = _object_id(user, "id", "initiatedBy.user")
    actor_email = _text(user, "userPrincipalName").lower()
    if not actor_id and app:  # an app or the system acted
        actor_id = _object_id(app, "servicePrincipalId", "initiatedBy.app") or _text(app, "appId")
        actor_email = _text(app, "displayName") or _text(app, "servicePrincipalName")
    if not actor_id:
        raise RecordError(f"{name}: no initiator (`initiatedBy.user.id` or `.app`)")
    target_id, target_email = _target(rec)
    result = _text(rec, "result").lower()
    return Activity(
        source=SOURCE,
        tenant_id=tenant_id,
        event_id=rid,
        time=_time(rec, "activityDateTime", now),
        type=type_of(name),
        event_name=name,
        category=_text(rec, "category") or "directoryAudit",
        outcome="success" if result == "success" else "failure",
        actor_id=actor_id,
        actor_email=actor_email,
        target_id=target_id or actor_id,
        target_email=target_email or actor_email,
        ip=_text(user, "ipAddress"),
        administrative=name not in SELF_SERVICE,
        raw=_raw(rec),
    )
