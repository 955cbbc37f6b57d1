"""Table transactions (entity group transactions, `POST /$batch`), written and read directly.

The Tables SDK's `submit_transaction` builds each operation as an `HttpRequest` and encodes the
multipart body, and decodes the answer, with Python's `email` package: about 30 ms of CPU for 100
upserts, most of what sync spends per activity (docs/BENCHMARKS.md). The format is small and
documented (Performing entity group transactions, the Table service REST API), so this module
writes it with string joins and reads the answer by splitting on its boundaries. The request
still goes through the table client's own pipeline: its credential signs it, its retry policy
retries it, its request hooks count it. Entity values are converted by the SDK's own
serializer, so a property is written exactly as the SDK would write it; tests compare the parts
this module writes with the SDK's, operation by operation.

Semantics are those of `TableClient.submit_transaction`: all operations or none; a failed
operation raises `TableTransactionError` (`RequestTooLargeError` for 413); any other answer than
202 raises what the SDK raises for it (`ResourceNotFoundError`, `HttpResponseError`...).
One difference: a transaction whose answer is lost (the connection reset after it was sent) is
sent again by the pipeline's retry policy, which by default never resends a POST. Every
transaction Vigil sends is safe to resend: an upsert is idempotent, and a create, an
ETag-guarded update or a delete that did land makes its resend fail as a conflict, which each
caller already treats as "someone got there first" (the detection engine redoes the batch from
a fresh read; its alert ids are deterministic).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import (
    RequestTooLargeError,
    TableClient,
    TableTransactionError,
    UpdateMode,
)
from azure.data.tables._error import _decode_error
from azure.data.tables._serialize import _add_entity_properties

# An operation as `submit_transaction` takes it: (kind, entity) or (kind, entity, options).
Operation = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]

_VERSION = "2019-02-02"  # the REST version the SDK speaks for entity operations
# azure-core's default retry methods, and POST: see the module docstring.
_RETRY_METHODS = frozenset({"HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE", "POST"})


@dataclass(frozen=True, slots=True)
class OperationResult:
    """One operation's answer inside a committed transaction."""

    status: int
    etag: str | None


@dataclass(frozen=True, slots=True)
class AnswerPart:
    """One part of a `$batch` answer: an operation's status, headers (lower-case) and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def _key(value: str) -> str:
    return quote(value.replace("'", "''"), safe="")


def _if_match(entity: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    """The If-Match header: the ETag to guard with (the entity's own, as the SDK takes it, when
    none is given), or `*`."""
    condition = options.get("match_condition")
    if condition in (None, MatchConditions.Unconditionally):
        return "*"
    if condition != MatchConditions.IfNotModified:
        raise ValueError(f"unsupported match condition in a transaction: {condition}")
    etag = options.get("etag") or getattr(entity, "metadata", {}).get("etag")
    if not etag:
        raise ValueError("match_condition IfNotModified needs an etag")
    return str(etag)


def _mode(options: Mapping[str, Any]) -> str:
    mode = options.get("mode", UpdateMode.MERGE)
    return str(mode.value if isinstance(mode, UpdateMode) else mode).lower()


def _part(base: str, table: str, operation: Operation) -> str:
    kind = operation[0].lower()
    entity = operation[1]
    options: Mapping[str, Any] = operation[2] if len(operation) > 2 else {}
    keys = f"PartitionKey='{_key(entity['PartitionKey'])}',RowKey='{_key(entity['RowKey'])}'"
    at = f"{base}/{table}({keys})"
    headers = [f"x-ms-version: {_VERSION}", "DataServiceVersion: 3.0"]
    if kind == "create":
        line = f"POST {base}/{table} HTTP/1.1"
        headers += ["Accept: application/json;odata=minimalmetadata", "Prefer: return-no-content"]
    elif kind in ("upsert", "update"):
        verb = "PUT" if _mode(options) == "replace" else "PATCH"
        line = f"{verb} {at} HTTP/1.1"
        headers.append("Accept: application/json")
        if kind == "update":
            headers.append(f"If-Match: {_if_match(entity, options)}")
    elif kind == "delete":
        line = f"DELETE {at} HTTP/1.1"
        headers.append("Accept: application/json;odata=minimalmetadata")
        headers.append(f"If-Match: {_if_match(entity, options)}")
        return "\r\n".join([line, *headers, "", ""])
    else:
        raise ValueError(f"unknown transaction operation {operation[0]!r}")
    body = json.dumps(_add_entity_properties(entity), separators=(",", ":"))
    headers += ["Content-Type: application/json", f"Content-Length: {len(body.encode())}"]
    return "\r\n".join([line, *headers, "", body])


def encode(base: str, table: str, operations: Sequence[Operation]) -> tuple[str, bytes]:
    """The `multipart/mixed` body of one transaction; returns (its Content-Type, its bytes)."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    lines = [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for index, operation in enumerate(operations):
        lines += [
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {index}",
            "",
            _part(base, table, operation),
        ]
    lines += [f"--{changeset}--", f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", "\r\n".join(lines).encode()


_BOUNDARY = re.compile(rb"boundary=\"?([^\s\";]+)", re.IGNORECASE)
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def _split(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between `--boundary` delimiter lines (preamble and epilogue dropped)."""
    pieces = body.split(b"--" + boundary)
    # pieces[0] is the preamble; the close delimiter's piece starts with "--" and ends the list.
    parts = (p.strip() for p in pieces[1:] if not p.startswith(b"--"))
    return [p for p in parts if p]


def _head_and_body(data: bytes) -> tuple[bytes, bytes]:
    for blank in (b"\r\n\r\n", b"\n\n"):
        at = data.find(blank)
        if at >= 0:
            return data[:at], data[at + len(blank) :]
    return data, b""


def decode(content_type: str, body: bytes) -> list[AnswerPart]:
    """The operation answers inside a `$batch` answer, in order (nested changesets flattened)."""
    found = _BOUNDARY.search(content_type.encode())
    if found is None:
        raise ValueError(f"a batch answer without a multipart boundary ({content_type!r})")
    parts: list[AnswerPart] = []
    for piece in _split(body, found.group(1)):
        mime, inner = _head_and_body(piece)
        nested = _BOUNDARY.search(mime)
        if nested is not None and b"multipart/mixed" in mime.lower():
            parts += decode(f"multipart/mixed; boundary={nested.group(1).decode()}", inner)
            continue
        inner = inner.lstrip()
        status = _STATUS.match(inner)
        if status is None:
            raise ValueError("a batch answer part without an HTTP status line")
        head, content = _head_and_body(inner)
        headers: dict[str, str] = {}
        for raw in head.splitlines()[1:]:
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append(AnswerPart(int(status.group(1)), headers, content.strip()))
    return parts


def _error(part: AnswerPart, index: int) -> TableTransactionError:
    code = part.headers.get("x-ms-error-code", "")
    message = part.body.decode("utf-8", "replace")
    try:
        error = json.loads(part.body).get("odata.error", {})
        code = error.get("code", code)
        message = error.get("message", {}).get("value", message)
    except (ValueError, AttributeError):
        pass
    if not re.match(r"\d+:", message):  # the service prefixes the failed operation's index
        message = f"{index}:{message}"
    kind = RequestTooLargeError if part.status == 413 else TableTransactionError
    err = kind(message=f"{message}\nErrorCode:{code}" if code else message)
    err.status_code = part.status
    return err


def submit(table: TableClient, operations: Sequence[Operation]) -> list[OperationResult]:
    """Commit `operations` (one partition, at most 100) as one transaction; one result each."""
    if not operations:
        return []
    base = f"{table.scheme}://{table._primary_hostname}"  # as the SDK builds it
    content_type, body = encode(base, table.table_name, operations)
    request = HttpRequest(
        "POST",
        f"{base}/$batch",
        headers={
            "x-ms-version": table.api_version,
            "DataServiceVersion": "3.0",
            "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": content_type,
            "Accept": "application/json",
        },
        content=body,
    )
    # Streamed, as the SDK does: the pipeline would otherwise try to decode a multipart body.
    response = table._client.send_request(  # its pipeline
        request, stream=True, retry_on_methods=_RETRY_METHODS
    )
    if response.status_code == 413:
        raise RequestTooLargeError(
            message="The transaction request was too large", response=response
        )
    if response.status_code != 202:  # the SDK's own mapping (not found, auth, ...)
        raise _decode_error(response)  # type: ignore[no-untyped-call]
    parts = decode(response.headers.get("Content-Type", ""), response.read())
    for index, part in enumerate(parts):
        if not 200 <= part.status < 300:
            raise _error(part, index)
    if len(parts) != len(operations):
        raise HttpResponseError(
            message=f"the transaction on {table.table_name} answered {len(parts)} parts "
            f"for {len(operations)} operations",
            response=response,
        )
    return [OperationResult(p.status, p.headers.get("etag")) for p in parts]
