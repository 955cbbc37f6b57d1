"""Workplace `workplace_security` envelopes -> Vigil activities (pure, no I/O).

This is the boundary: every value of a delivery that reaches a table key, a URL path or a date
computation is checked here, and a change that fails is rejected with its reason (sync keeps it in
quarantine). Ids are digits; times lie within EARLIEST .. now + FUTURE_SLACK; text fields are
strings within a property's size.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.boundary import EARLIEST, FUTURE_SLACK, MAX_FIELD_CHARS, in_range
from shared.models import Activity, utc
from shared.workplace.events import ADMIN_FIELDS, ADMIN_IF_OTHER_TARGET, kind_of

SOURCE = "workplace"
MAX_RAW_CHARS = 420_000  # the change as stored: 14 of the 15 properties split_text gives it
_ID = re.compile(r"[0-9]{1,32}")


class EnvelopeError(ValueError):
    """The envelope (or one change of it) is not something Vigil can read."""


@dataclass(frozen=True)
class Normalised:
    activities: list[Activity]
    rejected: list[str]  # one reason per change that could not become an activity


def event_id(field: str, value: dict[str, Any]) -> str:
    """Identity of an event (none is sent): the change field and the whole value, canonically.

    A redelivery maps to the same id even when it arrives in another envelope.
    """
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        encoded = f"{field}|{canonical}".encode()
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): not storable text
        raise EnvelopeError("change holds text that is not valid Unicode") from None
    return hashlib.sha256(encoded).hexdigest()[:40]


def _range_error(what: str, shown: str, now: datetime) -> EnvelopeError:
    return EnvelopeError(
        f"{what} {shown} is outside {EARLIEST:%Y-%m-%d} .. {now + FUTURE_SLACK:%Y-%m-%dT%H:%M}Z"
    )


def _parse_stamp(stamp: str, now: datetime) -> datetime | None:
    """The timestamp in UTC (naive: taken as UTC), None when it is not one; out of range raises."""
    for parse in (lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S%z"), datetime.fromisoformat):
        try:
            parsed = parse(stamp)
        except ValueError:
            continue
        try:
            t = utc(parsed)
        except OverflowError:  # e.g. year 1 at +0100 is in year 0
            t = None
        if t is None or not in_range(t, now):
            raise _range_error("timestamp", repr(stamp[:64]), now)
        return t
    return None


def _parse_time(value: dict[str, Any], entry_time: Any, now: datetime) -> datetime:
    stamp = value.get("timestamp")
    if isinstance(stamp, str) and stamp:
        parsed = _parse_stamp(stamp, now)
        if parsed is not None:
            return parsed
    if isinstance(entry_time, int | float) and not isinstance(entry_time, bool):
        lo, hi = EARLIEST.timestamp(), (now + FUTURE_SLACK).timestamp()
        if not (math.isfinite(entry_time) and lo <= entry_time <= hi):
            raise _range_error("entry.time", repr(entry_time)[:40], now)
        return datetime.fromtimestamp(entry_time, UTC)
    raise EnvelopeError(
        f"event has no usable time (timestamp={str(stamp)[:64]!r}, "
        f"entry.time={str(entry_time)[:40]!r})"
    )


def _text(value: dict[str, Any], key: str) -> str:
    """A text field: absent or null is empty; anything but a string is refused."""
    v = value.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise EnvelopeError(f"`{key}` is a {type(v).__name__}, not a string")
    if len(v) > MAX_FIELD_CHARS:
        raise EnvelopeError(f"`{key}` is {len(v)} characters (at most {MAX_FIELD_CHARS})")
    return v


def _id(value: dict[str, Any], key: str) -> str:
    """An id (user, community): digits only, since it becomes a table key or a URL path."""
    v = value.get(key)
    text = (
        str(v) if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else _text(value, key)
    )
    if text and not _ID.fullmatch(text):
        raise EnvelopeError(f"`{key}` {text[:40]!r} is not a Workplace id (digits)")
    return text


def activity_from_change(
    entry: dict[str, Any], field: str, value: dict[str, Any], now: datetime
) -> Activity:
    event = _text(value, "event")
    if not event:
        raise EnvelopeError("change value has no `event`")
    kind = kind_of(event)
    actor_id, target_id = _id(value, "actor_id"), _id(value, "target_id")
    if not actor_id:
        raise EnvelopeError(f"{event}: change value has no `actor_id`")
    # Route by the community the actor (or target) belongs to; entry.id is the company id.
    tenant = (
        _id(value, "actor_community_id") or _id(value, "target_community_id") or _id(entry, "id")
    )
    if not tenant:
        raise EnvelopeError(f"{event}: no community (`actor_community_id` or entry `id`)")
    impersonated = bool(_text(value, "impersonator_id"))
    administrative = field in ADMIN_FIELDS or (
        field in ADMIN_IF_OTHER_TARGET and bool(target_id) and target_id != actor_id
    )
    interactive = value.get("is_interactive") is not False
    raw = json.dumps({"entry_id": entry.get("id"), "field": field, "value": value})
    if len(raw) > MAX_RAW_CHARS:
        raise EnvelopeError(f"change is {len(raw)} characters as JSON (at most {MAX_RAW_CHARS})")
    return Activity(
        source=SOURCE,
        tenant_id=tenant,
        event_id=event_id(field, value),
        time=_parse_time(value, entry.get("time"), now),
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
        raw=raw,
    )


def parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, 4,300+ digits, too deep
        raise EnvelopeError(f"body is not JSON Vigil can read: {str(exc)[:200]}") from None
    if not isinstance(envelope, dict) or envelope.get("object") != "workplace_security":
        got = envelope.get("object") if isinstance(envelope, dict) else type(envelope).__name__
        raise EnvelopeError(f"expected object 'workplace_security', got {str(got)[:80]!r}")
    if not isinstance(envelope.get("entry"), list):
        raise EnvelopeError("envelope has no `entry` list")
    return envelope


def normalise(body: bytes, now: datetime | None = None) -> Normalised:
    """Fan out entry[] x changes[] into activities; a bad change is reported, not fatal.

    `now` bounds event times (default: the wall clock).
    """
    now = utc(now) if now is not None else datetime.now(UTC)
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
                field = change.get("field", "")
                if not isinstance(field, str) or len(field) > MAX_FIELD_CHARS:
                    raise EnvelopeError("change `field` is not a string")
                activities.append(activity_from_change(entry, field, change["value"], now))
            except (EnvelopeError, RecursionError) as exc:  # RecursionError: absurdly deep value
                rejected.append(f"entry[{i}].changes[{j}]: {str(exc)[:200]}")
    return Normalised(activities, rejected)
