"""Continuation tokens: opaque to the client, signed so an altered one is refused.

A token carries where the next page starts and a digest of the query it belongs to, signed with
HMAC-SHA256 under a key Vigil keeps in its own storage (created on first use, shared by every
instance). A token from another query, another deployment or with one byte changed is refused.

`continuation_token` / `token_after` are the governance log's plain tokens (the row key, base64):
opaque, not signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient

from shared.query_params import BadInput

_MAC_BYTES = 16


def query_digest(params: Mapping[str, str], *, ignore: tuple[str, ...] = ("next", "code")) -> str:
    """A short digest of a request's query (without the token itself): a token only continues
    the query that issued it."""
    kept = sorted((k, v) for k, v in params.items() if k not in ignore)
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:16]


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, position: dict[str, Any], query: str) -> str:
        body = json.dumps({"p": position, "q": query}, separators=(",", ":")).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")

    def verify(self, token: str, query: str, name: str = "next") -> dict[str, Any]:
        """The position a token carries; BadInput naming `name` when it is not one of ours,
        was altered, or belongs to another query."""
        refused = BadInput(f"{name}: not a continuation token of this query (pass it unchanged)")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise refused from None
        mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise refused
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("q") != query or not isinstance(data["p"], dict):
            raise refused
        return dict(data["p"])


def stored_key(table: TableClient) -> bytes:
    """The deployment's token key: created once (the first writer wins), then read."""
    entity = {"PartitionKey": "paging", "RowKey": "key", "Key": secrets.token_hex(32)}
    try:
        table.create_entity(entity)
    except ResourceExistsError:
        entity = dict(table.get_entity("paging", "key"))
    return bytes.fromhex(str(entity["Key"]))


def continuation_token(row_key: str) -> str:
    """The `next` token of a page whose last row has this key."""
    return base64.urlsafe_b64encode(json.dumps({"after": row_key}).encode()).decode()


def token_after(token: str) -> str:
    """The row key a `next` token continues after; BadInput (a ValueError naming `next`) when
    it is not such a token."""
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise BadInput("next: not a continuation token from this API") from None
    if not isinstance(after, str) or not after.isprintable():
        raise BadInput("next: not a continuation token from this API")
    return after
