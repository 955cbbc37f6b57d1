"""`Retry-After` as RFC 9110 §10.2.3 defines it: delay seconds or an HTTP date.

Every client Vigil has (Workplace, Graph) reads the header through `seconds_to_wait`.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import parsedate_to_datetime


def seconds_to_wait(value: str | None, now: float) -> float | None:
    """Seconds to wait from `now` (epoch seconds) that a `Retry-After` value asks for.

    A date in the past means "now" (0.0); None when the header is absent or unreadable, so the
    caller falls back to its own backoff.
    """
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" (RFC 5322: UTC, local zone unknown); HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
