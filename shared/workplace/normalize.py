"""Workplace `workplace_security` envelopes -> Vigil activities (pure, no I/O)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.models import Activity
from shared.workplace.events import ADMIN_FIELDS, ADMIN_IF_OTHER_TARGET, kind_of

SOURCE = "workplace"


class EnvelopeError(ValueError):
    """The envelope is not a workplace_security delivery Vigil can read."""


@dataclass(frozen=True)
class Normalised:
    activities: list[Activity]
    rejected: list[str]  # one reason per change that could not become an activity


def event_id(field: str, value: dict[str, Any]) -> str:
    """Identity of an event (none is sent): the change field and the whole value, canonically.

    A redelivery maps to the same id even when it arrives in another envelope.
    """
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{field}|{canonical}".encode()).hexdigest()[:40]


def _parse_time(value: dict[str, Any], entry_time: Any) -> datetime:
    stamp = value.get("timestamp")
    if isinstance(stamp, str) and stamp:
        try:
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").astimezone(UTC)
        except ValueError:
            try:
                return datetime.fromisoformat(stamp).astimezone(UTC)
            except ValueError:
                pass
    if isinstance(entry_time, int | float) and not isinstance(entry_time, bool):
        return datetime.fromtimestamp(entry_time, UTC)
    raise EnvelopeError(
        f"event has no usable time (timestamp={stamp!r}, entry.time={entry_time!r})"
    )


def _text(value: dict[str, Any], key: str) -> str:
    v = value.get(key)
    return "" if v is None else str(v)


def activity_from_change(entry: dict[str, Any], field: str, value: dict[str, Any]) -> Activity:
    event = _text(value, "event")
    if not event:
        raise EnvelopeError("change value has no `event`")
    kind = kind_of(event)
    actor_id, target_id = _text(value, "actor_id"), _text(value, "target_id")
    if not actor_id:
        raise EnvelopeError(f"{event}: change value has no `actor_id`")
    # Route by the community the actor (or target) belongs to; entry.id is the company id.
    tenant = (
        _text(value, "actor_community_id")
        or _text(value, "target_community_id")
        or _text(entry, "id")
    )
    impersonated = bool(value.get("impersonator_id"))
    administrative = field in ADMIN_FIELDS or (
        field in ADMIN_IF_OTHER_TARGET and bool(target_id) and target_id != actor_id
    )
    interactive = value.get("is_interactive") is not False
    return Activity(
        source=SOURCE,
        tenant_id=tenant,
        event_id=event_id(field, value),
        time=_parse_time(value, entry.get("time")),
        type=kind.type,
        event_name=event,
        category=field,
        outcome=kind.outcome,
        actor_id=actor_id,
        actor_email=_text(value, "actor_email").lower(),
        target_id=target_id or actor_id,
        target_email=(_text(value, "target_email") or _text(value, "actor_email")).lower(),
        ip=_text(value, "ip"),
        country=_text(value, "ip_country").upper(),
        user_agent=_text(value, "useragent"),
        interactive=interactive,
        administrative=administrative,
        impersonated=impersonated,
        raw=json.dumps({"entry_id": entry.get("id"), "field": field, "value": value}),
    )


def parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("object") != "workplace_security":
        got = envelope.get("object") if isinstance(envelope, dict) else type(envelope).__name__
        raise EnvelopeError(f"expected object 'workplace_security', got {got!r}")
    if not isinstance(envelope.get("entry"), list):
        raise EnvelopeError("envelope has no `entry` list")
    return envelope


def normalise(body: bytes) -> Normalised:
    """Fan out entry[] x changes[] into activities; a bad change is reported, not fatal."""
    envelope = parse_envelope(body)
    activities: list[Activity] = []
    rejected: list[str] = []
    for i, entry in enumerate(envelope["entry"]):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            rejected.append(f"entry[{i}]: no `changes` list")
            continue
        for j, change in enumerate(changes):
            try:
                if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                    raise EnvelopeError("change has no `value` object")
                activities.append(
                    activity_from_change(entry, str(change.get("field", "")), change["value"])
                )
            except EnvelopeError as exc:
                rejected.append(f"entry[{i}].changes[{j}]: {exc}")
    return Normalised(activities, rejected)
