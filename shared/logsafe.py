"""Untrusted text in log lines: quoted, so a delivery cannot forge or split a line.

Event names, community and user ids, user agents and SaaS error messages come from outside. A
newline in one would start a forged log line; an ANSI escape would rewrite a terminal. Log
calls pass such values through `quoted`, never raw.
"""

from __future__ import annotations

MAX_LOGGED_CHARS = 300


def quoted(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`value` as one quoted, printable line: control and format characters escaped
    (`\\n`, `\\r`, `\\x1b`, `\\u2028`, ...), longer text cut at `limit` characters."""
    text = str(value)
    if len(text) > limit:
        return repr(text[:limit]) + f"...(+{len(text) - limit} chars)"
    return repr(text)
