"""The one place that knows about Azure Storage credentials and clients.

Locally (and in tests) storage is Azurite through a connection string; in Azure it is the
identity-based `AzureWebJobsStorage__*` settings with the user-assigned managed identity.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    QueueClient,
    QueueServiceClient,
    TextBase64EncodePolicy,
)

from shared.config import DEV_STORAGE, ConfigError, StorageSettings
from shared.table_tx import submit

AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
    + AZURITE_KEY
    + ";BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1"
    ";QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1"
    ";TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

# Table names, each prefixed with STORAGE_PREFIX.
INSTALLS = "Installs"
INSTALL_STATES = "InstallStates"
SECRETS = "Secrets"
INBOX = "Inbox"
ACTIVITIES = "Activities"
DETECTION_STATE = "DetectionState"
ALERTS = "Alerts"
ID_INDEX = "IdIndex"  # per alert or governance action id: where it is (shared/id_index.py)
ACTIONS = "Actions"
QUARANTINE = "Quarantine"
HELD_EVENTS = "HeldEvents"  # per community without an active install: its events, held apart
USERS = "Users"
IP_INTEL = "IpIntel"  # the Tor exit list (last good copy)
WORKPLACE_SYNC = "WorkplaceSync"  # per community: directory sync progress and health
EVENT_COUNTS = "EventCounts"  # per community: activities by Workplace event name
DIRECTORY_SNAPSHOTS = "DirectorySnapshots"  # a directory snapshot while it is being read
ENTRA_USERS = "EntraUsers"
GOVERNANCE_THROTTLE = "GovernanceThrottle"
GROUPS = "Groups"  # per tenant: each Workplace group's id and name, as last synced
POLICY_CREATION = "PolicyCreation"  # when this deployment first loaded each activity policy
AUDIT = "Audit"  # every triage and governance command: who, when, what
API_STATE = "ApiState"  # the key that signs the API's continuation tokens
SUPPRESSIONS = "Suppressions"  # analysts' "not again for N days", per tenant
POSTURE = "Posture"  # each recommendation per community, as posture_timer last computed it
ENTRA_SYNC = "EntraSync"  # per Entra tenant and log: watermark, paging cursor, state
NOTIFICATIONS = "Notifications"  # per alert and destination: sent once; each day's cap
SIEM_OUTBOX = "SiemOutbox"  # what waits for Log Analytics, and what was sent
TABLES = (
    INSTALLS,
    INSTALL_STATES,
    SECRETS,
    INBOX,
    ACTIVITIES,
    DETECTION_STATE,
    ALERTS,
    ID_INDEX,
    ACTIONS,
    QUARANTINE,
    HELD_EVENTS,
    USERS,
    IP_INTEL,
    WORKPLACE_SYNC,
    EVENT_COUNTS,
    DIRECTORY_SNAPSHOTS,
    ENTRA_USERS,
    GOVERNANCE_THROTTLE,
    GROUPS,
    POLICY_CREATION,
    AUDIT,
    API_STATE,
    SUPPRESSIONS,
    POSTURE,
    ENTRA_SYNC,
    NOTIFICATIONS,
    SIEM_OUTBOX,
)

# Callables that see every storage request Vigil makes (the benchmark counts transactions
# with one). Empty in production.
REQUEST_HOOKS: list[Callable[[Any], None]] = []


def on_request(request: Any) -> None:
    for hook in REQUEST_HOOKS:
        hook(request)


MAX_BATCH = 100  # Table transactions: at most 100 operations, one partition...
MAX_BATCH_BYTES = 3_500_000  # ...and at most 4 MiB (Azurite enforces neither: we do)
MAX_TEXT = 30_000  # characters per string property (the limit is 64 KiB of UTF-16)
MAX_TICKS = 3155378975999999999  # .NET DateTime.MaxValue.Ticks
_EPOCH_TICKS = datetime(1, 1, 1, tzinfo=UTC)


def inverted_ticks(ts: datetime) -> str:
    """A fixed-width key that sorts newest first."""
    ticks = (ts - _EPOCH_TICKS) // timedelta(microseconds=1) * 10
    return f"{MAX_TICKS - ticks:019d}"


def ticks_key(ts: datetime) -> str:
    """A fixed-width key that sorts oldest first."""
    return f"{(ts - _EPOCH_TICKS) // timedelta(microseconds=1) * 10:019d}"


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def upsert_batches(table: TableClient, entities: Iterable[dict[str, Any]]) -> int:
    """Upsert entities in transactions of at most 100 per partition; returns transactions sent.

    Upsert (not create) keeps a retried batch idempotent: a duplicate create would fail the batch.
    """
    by_pk: dict[str, list[dict[str, Any]]] = {}
    for entity in entities:
        by_pk.setdefault(entity["PartitionKey"], []).append(entity)
    sent = 0
    for group in by_pk.values():
        unique = list({e["RowKey"]: e for e in group}.values())  # one op per entity per batch
        for batch in transaction_batches(unique):
            submit(table, [("upsert", e, {"mode": "replace"}) for e in batch])
            sent += 1
    return sent


def delete_rows(table: TableClient, rows: Iterable[Mapping[str, Any]], workers: int = 1) -> int:
    """Delete the rows (each with its PartitionKey and RowKey) in transactions of at most 100
    of one partition, up to `workers` transactions at once, as the rows stream in (a query's
    rows come partition by partition, so only the transactions in flight are held in memory);
    returns how many were deleted."""

    def transactions() -> Iterator[tuple[str, list[str]]]:
        pk, keys = "", list[str]()
        for row in rows:
            if keys and (row["PartitionKey"] != pk or len(keys) == MAX_BATCH):
                yield pk, keys
                keys = []
            pk = str(row["PartitionKey"])
            keys.append(str(row["RowKey"]))
        if keys:
            yield pk, keys

    def send(transaction: tuple[str, list[str]]) -> int:
        pk, keys = transaction
        submit(table, [("delete", {"PartitionKey": pk, "RowKey": k}) for k in keys])
        return len(keys)

    if workers <= 1:
        return sum(send(t) for t in transactions())
    deleted, in_flight = 0, set[Future[int]]()
    with ThreadPoolExecutor(workers, thread_name_prefix="vigil-delete") as pool:
        for transaction in transactions():
            if len(in_flight) >= workers:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                deleted += sum(f.result() for f in done)
            in_flight.add(pool.submit(send, transaction))
        return deleted + sum(f.result() for f in wait(in_flight).done)


def write_if_unchanged(table: TableClient, entity: dict[str, Any], etag: str | None) -> bool:
    """Create the entity (`etag` None) or replace it while its ETag still holds: optimistic
    concurrency. False when another writer got there first (re-read and redo)."""
    try:
        if etag is None:
            table.create_entity(entity)
        else:
            table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
    except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
        return False
    return True


MAX_KEYS_PER_QUERY = 14  # a filter holds at most 15 comparisons: PartitionKey + 14 RowKeys


def get_many(table: TableClient, partition_key: str, row_keys: Iterable[str]) -> dict[str, Any]:
    """Entities of one partition by row key, 14 per query instead of one read each."""
    found: dict[str, Any] = {}
    for group in chunks(sorted(set(row_keys)), MAX_KEYS_PER_QUERY):
        params = {"pk": partition_key, **{f"r{i}": rk for i, rk in enumerate(group)}}
        # Spaces around the parentheses: the SDK only substitutes space-delimited @names.
        keys = " or ".join(f"RowKey eq @r{i}" for i in range(len(group)))
        for entity in table.query_entities(
            f"PartitionKey eq @pk and ( {keys} )", parameters=params
        ):
            found[entity["RowKey"]] = entity
    return found


def _size(entity: dict[str, Any]) -> int:
    return sum(
        len(str(k)) + (len(v) * 2 if isinstance(v, str | bytes) else 8) for k, v in entity.items()
    )


def transaction_batches(entities: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive groups within the transaction limits of 100 operations and 4 MiB."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entity in entities:
        n = _size(entity)
        if batch and (len(batch) == MAX_BATCH or size + n > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entity)
        size += n
    if batch:
        yield batch


def split_text(name: str, text: str, max_parts: int = 15) -> dict[str, str]:
    """A long string as properties `name`, `name1`, `name2`... each within the property limit."""
    parts = [text[i : i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)][:max_parts] or [""]
    return {(name if i == 0 else f"{name}{i}"): part for i, part in enumerate(parts)}


def join_text(name: str, entity: dict[str, Any]) -> str:
    parts = [str(entity.get(name, ""))]
    i = 1
    while f"{name}{i}" in entity:
        parts.append(str(entity[f"{name}{i}"]))
        i += 1
    return "".join(parts)


@dataclass
class Storage:
    """Table and queue clients for one account; tables and queues are created on first use."""

    settings: StorageSettings

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[str, QueueClient] = {}
        self._containers: dict[str, ContainerClient] = {}
        s = self.settings
        if s.table_service_uri and s.queue_service_uri:
            from azure.identity import ManagedIdentityCredential

            credential = ManagedIdentityCredential(client_id=s.storage_client_id)
            self._table_service = TableServiceClient(
                s.table_service_uri, credential=credential, raw_request_hook=on_request
            )
            self._queue_service = QueueServiceClient(
                s.queue_service_uri, credential=credential, raw_request_hook=on_request
            )
        elif s.storage_connection:
            conn = AZURITE if s.storage_connection == DEV_STORAGE else s.storage_connection
            self._table_service = TableServiceClient.from_connection_string(
                conn, raw_request_hook=on_request
            )
            self._queue_service = QueueServiceClient.from_connection_string(
                conn, raw_request_hook=on_request
            )
        else:
            raise ConfigError(
                "AzureWebJobsStorage is not set: set it to a storage connection string, or set "
                "AzureWebJobsStorage__tableServiceUri and __queueServiceUri for a managed identity."
            )

    def container(self, name: str) -> ContainerClient:
        """A blob container named `<STORAGE_PREFIX>-<name>` (created on first use).

        The blob service is the same account's: from the connection string, or, with a managed
        identity, the table service URI with `.table.` replaced by `.blob.`.
        """
        full = f"{self.settings.storage_prefix}-{name}".lower()
        with self._lock:
            client = self._containers.get(full)
            if client is None:
                client = self._blob_service().get_container_client(full)
                with contextlib.suppress(ResourceExistsError):
                    client.create_container()
                self._containers[full] = client
            return client

    def _blob_service(self) -> BlobServiceClient:
        s = self.settings
        if s.table_service_uri and s.queue_service_uri:
            from azure.identity import ManagedIdentityCredential

            uri = s.table_service_uri.replace(".table.", ".blob.")
            credential = ManagedIdentityCredential(client_id=s.storage_client_id)
            return BlobServiceClient(uri, credential=credential, raw_request_hook=on_request)
        conn = AZURITE if s.storage_connection == DEV_STORAGE else (s.storage_connection or "")
        return BlobServiceClient.from_connection_string(conn, raw_request_hook=on_request)

    def table(self, name: str) -> TableClient:
        full = self.settings.storage_prefix + name
        with self._lock:
            client = self._tables.get(full)
            if client is None:
                client = self._table_service.get_table_client(full)
                with contextlib.suppress(ResourceExistsError):
                    client.create_table()
                self._tables[full] = client
            return client

    def queue(self, name: str) -> QueueClient:
        """A queue client that speaks the Functions host's base64 message encoding."""
        with self._lock:
            client = self._queues.get(name)
            if client is None:
                client = self._queue_service.get_queue_client(
                    name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=BinaryBase64DecodePolicy(),
                )
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                self._queues[name] = client
            return client
