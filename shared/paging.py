"""Opaque continuation tokens for the listing APIs: the key of the last row a page returned."""

from __future__ import annotations

import base64
import json

from shared.query_params import BadInput


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
