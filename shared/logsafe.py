"""What may reach a log line: untrusted text quoted, and no secret from a URL's query string.

Event names, community and user ids, user agents and SaaS error messages come from outside. A
newline in one would start a forged log line; an ANSI escape would rewrite a terminal. Log
calls pass such values through `quoted`, never raw.

Vigil never logs a URL, but urllib3 does at DEBUG (`"GET /community?...&appsecret_proof=..."`);
`redact_urllib3_logs` makes its records carry no query string.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MAX_LOGGED_CHARS = 300
# Loggers of the HTTP libraries under `requests` that write request URLs into their records.
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")
# A query string: from `?` to the next space or quote (urllib3 quotes the request line).
_QUERY = re.compile(r"\?[^\s\"'<>]*")


def quoted(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`value` as one quoted, printable line: control and format characters escaped
    (`\\n`, `\\r`, `\\x1b`, `\\u2028`, ...), longer text cut at `limit` characters."""
    text = str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"...(+{len(text) - limit} chars)"
    return repr(text)


def without_query(url: str) -> str:
    """`url` without its query string and fragment, where the secrets of a request travel
    (`client_secret`, `access_token`, `appsecret_proof`, `code`, `signed_request`, `state`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _QUERY.sub("", url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class QueryStringFilter(logging.Filter):
    """Removes query strings from a record's message (its arguments are formatted first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<query removed>", message), None
        return True


_QUERY_FILTER = QueryStringFilter()


def redact_urllib3_logs() -> None:
    """Install the filter on the loggers that write request URLs (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _QUERY_FILTER not in logger.filters:
            logger.addFilter(_QUERY_FILTER)
