"""The storage-backed pieces on real Azurite: inbox, activity log, install states, secrets."""

from __future__ import annotations

import base64
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from shared import storage as st
from shared.activities import MAX_MESSAGE_CHARS, ActivityBatch, work_items
from shared.config import ConfigError, Settings
from shared.inbox import MAX_BODY, BodyTooLarge
from shared.secrets import TableSecretStore, fernet_for
from shared.services import Services
from shared.workplace.normalize import normalise
from tests.samples import T0, envelope, failed_logins, value

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_inbox_keeps_large_bodies_whole_and_drains_oldest_first(svc: Services) -> None:
    big = b"x" * 200_000
    svc.inbox.put("workplace", b"second", NOW + timedelta(seconds=1))
    svc.inbox.put("workplace", big, NOW)
    entries = svc.inbox.oldest(10)
    assert [e.body for e in entries] == [big, b"second"]
    svc.inbox.delete([e.row_key for e in entries])
    svc.inbox.delete([entries[0].row_key])  # already gone: no error
    assert svc.inbox.oldest(10) == []


def test_inbox_refuses_what_it_cannot_hold(svc: Services) -> None:
    with pytest.raises(BodyTooLarge):
        svc.inbox.put("workplace", b"x" * (MAX_BODY + 1), NOW)


def test_activity_writes_are_idempotent_and_queue_the_activities_themselves(
    svc: Services,
) -> None:
    activities = normalise(envelope(*failed_logins(150))).activities
    batches = svc.activities.write(activities)
    assert [len(b) for b in batches] == [100, 50]
    again = svc.activities.write(activities)
    assert again == batches
    table = svc.storage.table(st.ACTIVITIES)
    assert len(list(table.list_entities())) == 150
    sent = ActivityBatch.from_message(batches[1].to_message().encode())
    loaded = svc.activities.load(sent)
    assert len(loaded) == 50 and {a.event_id for a in loaded} <= {a.event_id for a in activities}
    by_id = {a.event_id: a for a in activities}
    # What detection gets is the stored activity but for `raw`, which stays in the table.
    assert all(replace(a, raw=by_id[a.event_id].raw) == by_id[a.event_id] for a in loaded)


def test_work_items_keep_each_users_activities_together() -> None:
    users = [f"10006409436{i:04d}" for i in range(40)]
    changes = [
        ("login", value("LOGIN", actor=u, email=f"u{i}@contoso.com", at=T0 + timedelta(minutes=m)))
        for m in range(5)
        for i, u in enumerate(users)
    ]
    items = work_items(normalise(envelope(*changes)).activities)
    assert [len(b) for b in items] == [100, 100]
    # Interleaved in time, yet each message holds all of 20 users' activities, not one of 100.
    assert [len({a.actor_id for a in b.activities}) for b in items] == [20, 20]


def test_an_activity_too_large_for_a_message_is_sent_by_key(svc: Services) -> None:
    rng = random.Random(7)
    noise = [base64.b64encode(rng.randbytes(22_000)).decode() for _ in range(2)]  # no zlib gain
    first = normalise(envelope(*failed_logins(1))).activities[0]
    big = replace(first, user_agent=noise[0], target_email=noise[1])
    small = normalise(envelope(*failed_logins(3, start=T0 + timedelta(hours=1)))).activities
    items = svc.activities.write([big, *small])
    by_key = [b for b in items if not b.activities]
    assert len(by_key) == 1 and len(by_key[0].row_keys) == 1
    assert all(len(b.to_message()) <= MAX_MESSAGE_CHARS for b in items)
    (loaded,) = svc.activities.load(ActivityBatch.from_message(by_key[0].to_message().encode()))
    assert loaded == big
    assert sum(len(b) for b in items) == 4


def test_detection_messages_round_trip_and_reject_garbage() -> None:
    batch = ActivityBatch("pk", ("a", "b"))
    assert ActivityBatch.from_message(batch.to_message().encode()) == batch
    inline = work_items(normalise(envelope(*failed_logins(3))).activities)[0]
    message = inline.to_message()
    assert ActivityBatch.from_message(message.encode()).to_message() == message
    for bad in (
        b"",
        b"{}",
        b'{"pk": "x", "rks": []}',
        b'{"pk": 1, "rks": ["a"]}',
        b"\xff",
        b'{"v": 2, "f": ["time"], "z": "not base64!"}',
        b'{"v": 2, "f": ["time"], "z": "eJwDAAAAAAE="}',  # zlib of nothing
        b'{"v": 2, "f": "time", "z": ""}',
    ):
        with pytest.raises(ValueError):
            ActivityBatch.from_message(bad)


def test_install_state_is_single_use_and_expires(svc: Services) -> None:
    state = svc.install_states.issue(NOW, timedelta(minutes=10))
    assert svc.install_states.consume(state, NOW + timedelta(minutes=1))
    assert not svc.install_states.consume(state, NOW + timedelta(minutes=1))
    stale = svc.install_states.issue(NOW, timedelta(minutes=10))
    assert not svc.install_states.consume(stale, NOW + timedelta(minutes=11))
    assert not svc.install_states.consume("never-issued", NOW)
    assert not svc.install_states.consume("../../etc", NOW)


def test_secrets_are_encrypted_at_rest(svc: Services, azurite_connection_string: str) -> None:
    svc.secrets.set("workplace-token-1", "DQVJ-very-secret")
    assert svc.secrets.get("workplace-token-1") == "DQVJ-very-secret"
    table = svc.storage.table(st.SECRETS)
    (row,) = table.list_entities()
    assert "DQVJ" not in str(dict(row))
    svc.secrets.delete("workplace-token-1")
    assert svc.secrets.get("workplace-token-1") is None


def test_a_changed_key_is_reported_not_garbage(svc: Services) -> None:
    svc.secrets.set("t", "v")
    other = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "SECRET_ENCRYPTION_KEY": "x" * 43 + "=",
        }
    )
    store = TableSecretStore(svc.storage.table(st.SECRETS), fernet_for(other))
    with pytest.raises(ConfigError, match="SECRET_ENCRYPTION_KEY"):
        store.get("t")


def test_outside_azurite_an_encryption_key_is_required() -> None:
    s = Settings.from_env(
        {"AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=prod"}
    )
    with pytest.raises(ConfigError, match="SECRET_ENCRYPTION_KEY is not set"):
        fernet_for(s)


def test_tables_are_created_with_the_prefix(svc: Services, azurite_connection_string: str) -> None:
    svc.storage.table(st.ALERTS)
    names = {
        t.name
        for t in TableServiceClient.from_connection_string(azurite_connection_string).list_tables()
    }
    assert f"{svc.settings.storage_prefix}Alerts" in names


def test_transactions_respect_both_the_count_and_the_size_limit() -> None:
    small = [{"PartitionKey": "p", "RowKey": str(i)} for i in range(250)]
    assert [len(b) for b in st.transaction_batches(small)] == [100, 100, 50]
    big = [{"PartitionKey": "p", "RowKey": str(i), "raw": "x" * 600_000} for i in range(5)]
    batches = list(st.transaction_batches(big))
    assert len(batches) > 1 and all(sum(len(e["raw"]) * 2 for e in b) < 4_000_000 for b in batches)


def test_long_text_splits_and_joins_back() -> None:
    text = "é" * 70_000
    props = st.split_text("raw", text)
    assert list(props) == ["raw", "raw1", "raw2"]
    assert all(len(v) <= st.MAX_TEXT for v in props.values())
    assert st.join_text("raw", props) == text
