"""Table transactions written directly (shared/table_tx.py): the SDK's wire format, on Azurite."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import re
import socket
import struct
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.core.rest import HttpRequest
from azure.data.tables import (
    EdmType,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)
from azure.data.tables._policies import StorageHeadersPolicy
from azure.data.tables._table_batch import TableBatchOperations

from shared import storage as st
from shared.table_tx import Operation, decode, encode, submit

ENTITY: dict[str, Any] = {
    "PartitionKey": "tenant'1 a&b=c+d%é",
    "RowKey": "user_42 'x'",
    "Name": "Ada",
    "Count": 7,
    "Big": (2**40, EdmType.INT64),
    "Ratio": 0.25,
    "Ok": True,
    "When": datetime(2026, 11, 26, 9, 30, 1, 123456, tzinfo=UTC),
    "Blob": b"\x00\x01secret-free bytes",
    "Id": uuid.UUID("c9da6455-213d-42c9-9a79-3e9149a57833"),
    "Missing": None,
}
OPERATIONS: list[Operation] = [
    ("upsert", ENTITY, {"mode": "replace"}),
    ("upsert", {**ENTITY, "RowKey": "m"}, {"mode": UpdateMode.MERGE}),
    ("upsert", {**ENTITY, "RowKey": "default"}),
    ("create", {**ENTITY, "RowKey": "c"}),
    (
        "update",
        {**ENTITY, "RowKey": "u"},
        {
            "mode": UpdateMode.REPLACE,
            "etag": "W/\"datetime'2026-11-26T09%3A30%3A01Z'\"",
            "match_condition": MatchConditions.IfNotModified,
        },
    ),
    ("update", {**ENTITY, "RowKey": "u2"}, {"mode": UpdateMode.MERGE}),
    ("delete", {"PartitionKey": ENTITY["PartitionKey"], "RowKey": "d"}),
    (
        "delete",
        {"PartitionKey": ENTITY["PartitionKey"], "RowKey": "d2"},
        {"etag": 'W/"x"', "match_condition": MatchConditions.IfNotModified},
    ),
]


def _parts(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """Each operation of a multipart transaction body, read with the `email` package."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
    )
    (changeset,) = message.iter_parts()  # type: ignore[attr-defined,unused-ignore]
    found = []
    for part in changeset.iter_parts():
        raw = part.get_payload(decode=True)
        assert isinstance(raw, bytes)
        head, _, content = raw.partition(b"\r\n\r\n")
        line, *headers = head.decode().split("\r\n")
        fields = dict(h.split(": ", 1) for h in headers)
        found.append(
            {
                "line": line,
                "if-match": fields.get("If-Match"),
                "content-type": fields.get("Content-Type"),
                "body": json.loads(content) if content.strip() else None,
            }
        )
    return found


def _sdk_body(table: TableClient, operations: list[Operation]) -> tuple[str, bytes]:
    batch = TableBatchOperations(
        config=table._client._config,
        endpoint=f"{table.scheme}://{table._primary_hostname}",
        table_name=table.table_name,
        is_cosmos_endpoint=False,
    )
    for op in operations:
        batch.add_operation(op)
    changeset = HttpRequest("POST", "")
    changeset.set_multipart_mixed(
        *batch.requests, policies=[StorageHeadersPolicy()], boundary="changeset_sdk"
    )
    request = HttpRequest("POST", "http://x/$batch")
    request.set_multipart_mixed(
        changeset, policies=[StorageHeadersPolicy()], enforce_https=False, boundary="batch_sdk"
    )
    request._prepare_multipart_body()
    assert isinstance(request.content, bytes)
    return request.headers["Content-Type"], request.content


def test_each_operation_is_written_as_the_sdk_writes_it() -> None:
    table = TableClient.from_connection_string(st.AZURITE, "Parity")
    ours = _parts(*encode(f"{table.scheme}://{table._primary_hostname}", "Parity", OPERATIONS))
    sdk = _parts(*_sdk_body(table, OPERATIONS))
    assert len(ours) == len(sdk) == len(OPERATIONS)
    for mine, theirs in zip(ours, sdk, strict=True):
        assert mine == theirs
    assert ours[0]["line"].startswith("PUT ")
    assert "tenant%27%271%20a%26b%3Dc%2Bd%25%C3%A9" in ours[0]["line"]
    assert ours[4]["if-match"] == OPERATIONS[4][2]["etag"]  # type: ignore[misc]
    assert ours[0]["body"]["Big@odata.type"] == "Edm.Int64"


@pytest.fixture
def table(azurite_connection_string: str) -> TableClient:
    service = TableServiceClient.from_connection_string(
        azurite_connection_string, raw_request_hook=st.on_request
    )
    return service.create_table(f"tx{uuid.uuid4().hex[:12]}")


def test_a_transaction_commits_every_operation_and_answers_their_etags(table: TableClient) -> None:
    pk = ENTITY["PartitionKey"]
    table.create_entity({"PartitionKey": pk, "RowKey": "old", "Name": "gone soon"})
    table.create_entity({"PartitionKey": pk, "RowKey": "u", "Name": "before"})
    etag = table.get_entity(pk, "u").metadata["etag"]
    ops: list[Operation] = [
        ("upsert", ENTITY, {"mode": "replace"}),
        ("create", {**ENTITY, "RowKey": "c"}),
        (
            "update",
            {"PartitionKey": pk, "RowKey": "u", "Name": "after"},
            {
                "mode": UpdateMode.MERGE,
                "etag": etag,
                "match_condition": MatchConditions.IfNotModified,
            },
        ),
        ("delete", {"PartitionKey": pk, "RowKey": "old"}),
    ]
    seen: list[str] = []

    def hook(request: Any) -> None:
        seen.append(request.http_request.url)

    st.REQUEST_HOOKS.append(hook)
    try:
        results = submit(table, ops)
    finally:
        st.REQUEST_HOOKS.remove(hook)
    assert [r.status for r in results] == [204, 204, 204, 204]
    assert len(seen) == 1 and seen[0].endswith("/$batch")  # one request, counted once
    stored = table.get_entity(pk, ENTITY["RowKey"])
    assert results[0].etag == stored.metadata["etag"]
    assert stored["Big"].value == 2**40 and stored["Ratio"] == 0.25 and stored["Ok"] is True
    assert stored["When"] == ENTITY["When"] and stored["Blob"] == ENTITY["Blob"]
    assert table.get_entity(pk, "c")["Name"] == "Ada"
    assert table.get_entity(pk, "u")["Name"] == "after"
    assert results[2].etag == table.get_entity(pk, "u").metadata["etag"]
    assert [e["RowKey"] for e in table.query_entities("RowKey eq 'old'")] == []


def test_a_failed_operation_fails_the_whole_transaction(table: TableClient) -> None:
    pk = "p"
    table.create_entity({"PartitionKey": pk, "RowKey": "exists", "V": 1})
    stale = table.get_entity(pk, "exists").metadata["etag"]
    table.update_entity({"PartitionKey": pk, "RowKey": "exists", "V": 2})
    conflicts: list[list[Operation]] = [
        [
            ("create", {"PartitionKey": pk, "RowKey": "new"}),
            ("create", {"PartitionKey": pk, "RowKey": "exists"}),
        ],
        [
            ("upsert", {"PartitionKey": pk, "RowKey": "new"}),
            (
                "update",
                {"PartitionKey": pk, "RowKey": "exists", "V": 3},
                {"etag": stale, "match_condition": MatchConditions.IfNotModified},
            ),
        ],
        [
            ("upsert", {"PartitionKey": pk, "RowKey": "new"}),
            ("delete", {"PartitionKey": pk, "RowKey": "absent"}),
        ],
    ]
    for ops in conflicts:
        with pytest.raises(TableTransactionError) as caught:
            submit(table, ops)
        assert caught.value.index == 1, caught.value.message
        assert [e["RowKey"] for e in table.list_entities()] == ["exists"]  # nothing applied
        assert table.get_entity(pk, "exists")["V"] == 2


def test_an_empty_transaction_sends_nothing(table: TableClient) -> None:
    assert submit(table, []) == []


def test_answers_are_read_with_either_line_ending() -> None:
    answer = (
        "--batchresponse_1\n"
        "Content-Type: multipart/mixed; boundary=changesetresponse_2\n\n"
        "--changesetresponse_2\n"
        "Content-Type: application/http\nContent-Transfer-Encoding: binary\n\n"
        'HTTP/1.1 204 No Content\nETag: W/"a"\nDataServiceVersion: 3.0;\n\n\n'
        "--changesetresponse_2\n"
        "Content-Type: application/http\nContent-Transfer-Encoding: binary\n\n"
        "HTTP/1.1 409 Conflict\nContent-Type: application/json\n\n"
        '{"odata.error":{"code":"EntityAlreadyExists","message":{"value":"1:exists"}}}\n'
        "--changesetresponse_2--\n"
        "--batchresponse_1--\n"
    )
    for text in (answer, answer.replace("\n", "\r\n")):
        parts = decode("multipart/mixed; boundary=batchresponse_1", text.encode())
        assert [(p.status, p.headers.get("etag")) for p in parts] == [(204, 'W/"a"'), (409, None)]
        assert json.loads(parts[1].body)["odata.error"]["code"] == "EntityAlreadyExists"
    with pytest.raises(ValueError):
        decode("application/json", b"{}")


def test_a_queried_entity_is_guarded_by_its_own_etag(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "r", "V": 1})
    read = table.get_entity("p", "r")
    guard = {"match_condition": MatchConditions.IfNotModified}
    read["V"] = 2
    (result,) = submit(table, [("update", read, guard)])
    assert result.etag == table.get_entity("p", "r").metadata["etag"]
    with pytest.raises(TableTransactionError):  # `read` carries the ETag that was replaced
        submit(table, [("delete", read, guard)])
    assert table.get_entity("p", "r")["V"] == 2
    submit(table, [("delete", table.get_entity("p", "r"), guard)])
    assert list(table.list_entities()) == []


def test_operations_it_cannot_write_faithfully_are_refused() -> None:
    base = "http://127.0.0.1:10002/devstoreaccount1"
    entity = {"PartitionKey": "p", "RowKey": "r"}
    for op in [
        ("merge", entity),
        ("update", entity, {"match_condition": MatchConditions.IfNotModified}),  # no ETag
        ("update", entity, {"match_condition": MatchConditions.IfModified, "etag": 'W/"x"'}),
    ]:
        with pytest.raises(ValueError):
            encode(base, "T", [op])  # type: ignore[list-item]


class ResettingProxy:
    """A TCP proxy to Azurite whose first connection hands the request on, waits until Azurite
    answers (the transaction committed), then resets: the client never sees the answer."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            first = self.connections == 1
            threading.Thread(target=self._serve, args=(client, first), daemon=True).start()

    def _serve(self, client: socket.socket, first: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        if first:
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(65536)
            header, _, body = head.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", header).group(1))  # type: ignore[union-attr]
            while len(body) < length:
                body += client.recv(65536)
            upstream.sendall(header + b"\r\n\r\n" + body)
            upstream.recv(1)  # Azurite has answered: the transaction is in
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a reset, not an orderly close
            upstream.close()
            return

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self) -> None:
        self._server.close()


def test_a_transaction_whose_answer_is_lost_is_sent_again(
    azurite_connection_string: str, table: TableClient
) -> None:
    found = re.search(r"TableEndpoint=http://127.0.0.1:(\d+)", azurite_connection_string)
    assert found is not None
    table_port = int(found.group(1))
    rows = [{"PartitionKey": "p", "RowKey": f"r{i}", "V": i} for i in range(3)]
    upserts: list[Operation] = [("upsert", r, {"mode": "replace"}) for r in rows]
    creates: list[Operation] = [("create", {**r, "RowKey": f"c{r['RowKey']}"}) for r in rows]
    for ops, expect_conflict in (
        (upserts, False),  # idempotent: the resend succeeds
        (creates, True),  # the first one landed: the resend conflicts, as a caller expects
    ):
        proxy = ResettingProxy(table_port)
        try:
            via_proxy = TableClient.from_connection_string(
                azurite_connection_string.replace(f":{table_port}/", f":{proxy.port}/"),
                table.table_name,
                retry_backoff_factor=0.01,
            )
            if expect_conflict:
                with pytest.raises(TableTransactionError):
                    submit(via_proxy, ops)
            else:
                assert len(submit(via_proxy, ops)) == 3
            assert proxy.connections == 2  # the reset one, then the resend
        finally:
            proxy.close()
    stored = sorted(e["RowKey"] for e in table.list_entities())
    assert stored == ["cr0", "cr1", "cr2", "r0", "r1", "r2"]  # each once, nothing lost
