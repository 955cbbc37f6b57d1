"""Continuation tokens: opaque to the client, signed so an altered one is refused.

A token carries where the next page starts and a digest of the query it belongs to, signed with
HMAC-SHA256 under a key Vigil keeps in its own storage (created on first use, shared by every
instance). A token from another listing, another query, another deployment or with one byte
changed is refused. Every `next` the API hands out is made here.
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


def query_digest(
    params: Mapping[str, str], listing: str, *, ignore: tuple[str, ...] = ("next", "code")
) -> str:
    """A short digest of a listing's name and its request's query (without the token itself): a
    token only continues the listing and query that issued it."""
    kept = sorted((k, v) for k, v in params.items() if k not in ignore)
    return hashlib.sha256(json.dumps([listing, kept]).encode()).hexdigest()[:16]


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

    def after(self, params: Mapping[str, str], listing: str) -> str | None:
        """The row key the request's `next` token continues after (None: from the start)."""
        if not params.get("next"):
            return None
        after = self.verify(params["next"], query_digest(params, listing)).get("after")
        if not isinstance(after, str) or not after:
            raise BadInput("next: not a continuation token of this query (pass it unchanged)")
        return after

    def next_token(self, params: Mapping[str, str], listing: str, last: str | None) -> str | None:
        """The `next` token of a page whose last row has the key `last` (None: no more)."""
        return self.sign({"after": last}, query_digest(params, listing)) if last else None


def stored_key(table: TableClient) -> bytes:
    """The deployment's token key: created once (the first writer wins), then read."""
    entity = {"PartitionKey": "paging", "RowKey": "key", "Key": secrets.token_hex(32)}
    try:
        table.create_entity(entity)
    except ResourceExistsError:
        entity = dict(table.get_entity("paging", "key"))
    return bytes.fromhex(str(entity["Key"]))
