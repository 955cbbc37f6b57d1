"""The storage-backed pieces on real Azurite: inbox, activity log, install states, secrets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableServiceClient

from shared import storage as st
from shared.activities import ActivityBatch
from shared.config import ConfigError, Settings
from shared.inbox import MAX_BODY, BodyTooLarge
from shared.secrets import TableSecretStore, fernet_for
from shared.services import Services
from shared.workplace.normalize import normalise
from tests.samples import envelope, failed_logins

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


def test_activity_writes_are_idempotent_and_batched_per_partition(svc: Services) -> None:
    activities = normalise(envelope(*failed_logins(150))).activities
    batches = svc.activities.write(activities)
    assert [len(b.row_keys) for b in batches] == [100, 50]
    again = svc.activities.write(activities)
    assert again == batches
    table = svc.storage.table(st.ACTIVITIES)
    assert len(list(table.list_entities())) == 150
    loaded = svc.activities.load(batches[1])
    assert len(loaded) == 50 and {a.event_id for a in loaded} <= {a.event_id for a in activities}


def test_detection_messages_round_trip_and_reject_garbage() -> None:
    batch = ActivityBatch("pk", ("a", "b"))
    assert ActivityBatch.from_message(batch.to_message().encode()) == batch
    for bad in (b"", b"{}", b'{"pk": "x", "rks": []}', b'{"pk": 1, "rks": ["a"]}', b"\xff"):
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
