"""The ingest boundary: every value that reaches a key, a URL or a date is checked where it enters,
and no delivery can make a sync run raise or stop the deliveries after it (on Azurite, through the
signed webhook handler and the real drain). Property-based with Hypothesis, then the cases seen."""

from __future__ import annotations

import itertools
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import storage as tables
from shared.boundary import EARLIEST
from shared.services import Services
from shared.workplace.inbox_drain import drain_inbox
from shared.workplace.normalize import EnvelopeError, event_id, normalise
from tests.samples import (
    COMMUNITY,
    T0,
    deliver,
    envelope,
    failed_logins,
    held_rows,
    install,
    value,
)

NOW = T0 + timedelta(hours=1)
OTHER = "900000000000001"  # a community Vigil is not installed in
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- what arbitrary deliveries are made of ----------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: Python's JSON writes and reads them
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "x\udfff"]),  # lone surrogates: JSON escapes, not storable
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
hostile_ids = st.sampled_from(["a/b#c?d", "", "12 34", "١٢٣", "1" * 40, "-5", "0x1F"]) | json_values
hostile_stamps = st.sampled_from(
    [
        "0001-01-01T00:00:00+0100",
        "9999-12-31T23:59:59-0100",
        "2003-12-31T23:59:59+0000",
        (NOW + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "2026-02-30T00:00:00+0000",
        "yesterday",
    ]
)
entry_times = st.sampled_from([True, True, False]).flatmap(
    lambda usual: st.just(int(T0.timestamp()))
    if usual
    else st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 0, 1072915199])
    | json_values
)
KEEP, DROP = object(), object()
OTHER_FIELDS = ["target_id", "event", "actor_email", "ip", "ip_country", "useragent",
                "impersonator_id", "is_interactive"]  # fmt: skip
_seq = itertools.count()


def sometimes(
    hostile: st.SearchStrategy[Any], usual: st.SearchStrategy[Any] | None = None, one_in: int = 4
) -> st.SearchStrategy[Any]:
    """`hostile` one time in `one_in`, else `usual` (KEEP: the field as it is)."""
    plain = st.just(KEEP) if usual is None else usual
    return st.sampled_from([True] * (one_in - 1) + [False]).flatmap(
        lambda usual: plain if usual else hostile
    )


def _apply(v: dict[str, Any], name: str, new: Any) -> None:
    if new is DROP:
        v.pop(name, None)
    elif new is not KEEP:
        v[name] = new


@st.composite
def change_values(draw: st.DrawFn) -> Any:
    """A change's `value`: a plausible event with some fields hostile, dropped, or anything."""
    v: dict[str, Any] = value(
        draw(st.sampled_from(["LOGIN", "LOGIN_FAILED", "ODD_EVENT"])),
        at=T0 + timedelta(seconds=draw(st.integers(0, 3000))),
    )
    v["actor_community_id"] = draw(sometimes(hostile_ids, st.sampled_from([COMMUNITY, OTHER])))
    _apply(v, "timestamp", draw(sometimes(hostile_stamps | st.just(DROP) | json_values, one_in=3)))
    _apply(v, "actor_id", draw(sometimes(st.just(DROP) | hostile_ids)))
    for name in draw(st.sets(st.sampled_from(OTHER_FIELDS), max_size=1)):
        _apply(v, name, draw(st.just(DROP) | json_values | st.just("x" * 5000)))
    v["seq"] = next(_seq)  # every change distinct, so its outcome is its own
    return v


def mostly(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`plausible` nine times in ten, any JSON value the tenth."""
    return st.sampled_from([True] * 9 + [False]).flatmap(
        lambda usual: plausible if usual else json_values
    )


changes = mostly(
    st.fixed_dictionaries(
        {
            "field": sometimes(json_values, st.sampled_from(["login", "admin"]), one_in=8),
            "value": mostly(change_values()),
        }
    )
)
entries = mostly(
    st.fixed_dictionaries(
        {
            "id": st.just(COMMUNITY) | hostile_ids,
            "time": entry_times,
            "changes": st.lists(changes, min_size=1, max_size=4),
        }
    )
)
deliveries = mostly(
    st.fixed_dictionaries(
        {
            "object": st.just("workplace_security"),
            "entry": st.lists(entries, min_size=1, max_size=2),
        }
    )
)


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()  # ASCII: a lone surrogate travels as its JSON escape


# --- the normaliser --------------------------------------------------------------------------


@settings(PROPERTY, max_examples=150)
@given(deliveries)
def test_the_normaliser_accounts_for_every_change_and_admits_only_checked_values(
    body: Any,
) -> None:
    try:
        result = normalise(encode(body), NOW)
    except EnvelopeError:
        assert not isinstance(body, dict) or body.get("object") != "workplace_security"
        return
    total = sum(
        len(e["changes"]) if isinstance(e, dict) and isinstance(e.get("changes"), list) else 1
        for e in body["entry"]
    )
    assert len(result.activities) + len(result.rejected) == total
    for a in result.activities:
        assert re.fullmatch(r"[0-9]{1,32}", a.tenant_id) and re.fullmatch(r"[0-9]+", a.actor_id)
        assert re.fullmatch(r"[0-9]*", a.target_id)
        assert EARLIEST <= a.time <= NOW + timedelta(days=1)


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("timestamp", "0001-01-01T00:00:00+0100"),
        ("timestamp", "9999-12-31T23:59:59-0100"),
        ("timestamp", "2003-12-31T23:59:59+0000"),
        ("timestamp", "2026-03-04T10:00:01+0000"),  # more than a day after NOW
        ("actor_community_id", "a/b#c?d"),
        ("actor_id", "100/../../me"),
        ("target_id", "x?y"),
        ("actor_id", ["100"]),
        ("event", {"name": "LOGIN"}),
        ("actor_email", 12.5),
        ("useragent", "u" * 5000),
    ],
)
def test_a_value_outside_its_domain_rejects_its_change_with_the_reason(
    field: str, bad: Any
) -> None:
    v = value("LOGIN")
    v[field] = bad
    result = normalise(envelope(("login", v)), NOW)
    assert result.activities == []
    (reason,) = result.rejected
    assert f"`{field}`" in reason or field in reason


@pytest.mark.parametrize("entry_time", [math.nan, math.inf, 1e300, -1.0, 1072915199])
def test_an_entry_time_outside_2004_to_tomorrow_rejects_the_change(entry_time: float) -> None:
    v = value("LOGOUT")
    del v["timestamp"]
    body = envelope(("login", v)).replace(b'"time":1617019222', f'"time":{entry_time!r}'.encode())
    result = normalise(body.replace(b"nan", b"NaN").replace(b"inf", b"Infinity"), NOW)
    assert result.activities == [] and "entry.time" in result.rejected[0]


def test_the_edges_of_the_time_range_are_accepted() -> None:
    first = value("LOGIN", at=EARLIEST)
    last = value("LOGIN", at=NOW + timedelta(days=1))
    result = normalise(envelope(("login", first), ("login", last)), NOW)
    assert [a.time for a in result.activities] == [EARLIEST, NOW + timedelta(days=1)]


def test_a_lone_surrogate_is_rejected_not_stored() -> None:
    body = envelope(("login", value("LOGIN", email="\ud800@contoso.com")))
    (reason,) = normalise(body, NOW).rejected
    assert "Unicode" in reason


def test_unreadable_bodies_are_envelope_errors() -> None:
    for body in (b"[" * 100_000, b'{"n": ' + b"9" * 5000 + b"}", b"\xff\xfe", b"null"):
        with pytest.raises(EnvelopeError):
            normalise(body, NOW)


# --- the drain, on Azurite --------------------------------------------------------------------


def outcomes(svc: Services) -> tuple[set[str], set[str], dict[str, str]]:
    """Event ids stored and held, and each quarantined inbox entry's reason."""
    stored = {
        str(e["RowKey"]).split("_", 1)[1]
        for e in svc.storage.table(tables.ACTIVITIES).list_entities(select=["RowKey"])
    }
    held = {str(e["RowKey"]).split("_", 1)[1] for e in held_rows(svc)}
    kept = {
        str(e["RowKey"]): str(e["Reason"])
        for e in svc.storage.table(tables.QUARANTINE).list_entities(select=["RowKey", "Reason"])
    }
    return stored, held, kept


def expected_id(change: Any) -> str | None:
    """The event id a change would be stored under, or None when it has none."""
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        return None
    field = change.get("field", "")
    if not isinstance(field, str):
        return None
    try:
        return event_id(field, change["value"])
    except EnvelopeError:
        return None


@settings(PROPERTY, max_examples=10)  # each example is a few dozen storage round trips
@given(st.lists(deliveries, min_size=1, max_size=4))
def test_every_change_of_any_delivery_ends_stored_or_kept_apart_never_both_never_neither(
    svc: Services, bodies: list[Any]
) -> None:
    install(svc)
    for body in bodies:
        deliver(encode(body), svc.settings.webhook_secret())
    keys = [e.row_key for e in svc.inbox.oldest(100)][-len(bodies) :]
    drain_inbox(svc.inbox_drain_deps, NOW)  # must not raise, whatever came in
    assert svc.inbox.oldest(10) == []
    stored, held, kept = outcomes(svc)  # every change is new (its `seq`), so is every entry
    assert not stored & held
    for key, body in zip(keys, bodies, strict=True):
        readable = isinstance(body, dict) and body.get("object") == "workplace_security"
        if not readable:
            assert key in kept
            continue
        for i, entry in enumerate(body["entry"]):
            listed = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(listed, list):
                assert f"entry[{i}]: no `changes` list" in kept[key]
                continue
            for j, change in enumerate(listed):
                rejected = f"entry[{i}].changes[{j}]:" in kept.get(key, "")
                eid = expected_id(change)
                placed = eid is not None and (eid in stored or eid in held)
                assert rejected != placed, (i, j, change, kept.get(key))


def test_out_of_range_times_and_a_bad_community_do_not_stop_the_deliveries_after_them(
    svc: Services,
) -> None:
    install(svc)
    secret = svc.settings.webhook_secret()
    poisons = [
        envelope(("login", value("LOGIN", at=T0, timestamp="0001-01-01T00:00:00+0100"))),
        envelope(("login", value("LOGIN", timestamp="9999-12-31T23:59:59-0100"))),
        envelope(("login", value("LOGIN", actor_community_id="a/b#c?d"))),
        b'{"object":"workplace_security","entry":[{"id":"1","time":NaN,"changes":[{"field":'
        b'"login","value":{"event":"LOGIN","actor_id":"7","actor_community_id":"'
        + COMMUNITY.encode()
        + b'"}}]}]}',
        b'{"object":"workplace_security","entry":[{"id":"1","time":1e300,"changes":[{"field":'
        b'"login","value":{"event":"LOGIN","actor_id":"7"}}]}]}',
    ]
    for body in poisons:
        deliver(body, secret)
    deliver(envelope(*failed_logins(3)), secret)
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.envelopes, result.activities, result.rejected_changes) == (6, 3, 5)
    assert svc.inbox.oldest(10) == []
    reasons = sorted(str(q["Reason"]) for q in svc.storage.table(tables.QUARANTINE).list_entities())
    assert len(reasons) == 5
    assert sum("outside 2004-01-01" in r for r in reasons) == 4
    assert sum("a/b#c?d" in r and "digits" in r for r in reasons) == 1
    stored = list(svc.storage.table(tables.ACTIVITIES).list_entities())
    assert {e["PartitionKey"] for e in stored} == {f"workplace_{COMMUNITY}_20260302"}
    assert drain_inbox(svc.inbox_drain_deps, NOW).envelopes == 0


def test_activities_stored_are_listable_and_the_next_run_has_nothing(svc: Services) -> None:
    install(svc)
    good = value("LOGIN", at=T0)
    bad = value("LOGIN", timestamp="0001-01-01T00:00:00+0000")
    svc.inbox.put("workplace", envelope(("login", good), ("login", bad)), NOW)
    assert drain_inbox(svc.inbox_drain_deps, NOW).activities == 1
    (row,) = svc.storage.table(tables.ACTIVITIES).list_entities()  # the SDK reads every row back
    assert row["time"] == T0
    assert datetime.now(UTC) > row["time"]


def test_a_delivery_storage_refuses_is_quarantined_and_the_rest_of_the_page_is_stored(
    svc: Services,
) -> None:
    install(svc)
    # Valid one by one, but their tally (one JSON property) is beyond what a table row keeps.
    names = [("login", value(f"ODD_{i}_" + "N" * 4000)) for i in range(12)]
    svc.inbox.put("workplace", envelope(*names), NOW)
    svc.inbox.put("workplace", envelope(*failed_logins(3)), NOW + timedelta(seconds=1))
    result = drain_inbox(svc.inbox_drain_deps, NOW)
    assert (result.envelopes, result.activities, result.quarantined) == (2, 3, 1)
    assert svc.inbox.oldest(10) == []
    (kept,) = svc.storage.table(tables.QUARANTINE).list_entities()
    assert "storage refused" in kept["Reason"] and "PropertyValueTooLarge" in kept["Reason"]
    assert len(list(svc.storage.table(tables.ACTIVITIES).list_entities())) == 3
