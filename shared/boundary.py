"""What every source's boundary believes of a record's time (shared by the sources' parsers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EARLIEST = datetime(2004, 1, 1, tzinfo=UTC)  # before Facebook (and Workplace) existed
FUTURE_SLACK = timedelta(days=1)  # clocks differ; an event later than this is not believed
MAX_FIELD_CHARS = 4096  # one text field (e-mail, user agent...): far beyond any real value


def in_range(t: datetime, now: datetime) -> bool:
    return EARLIEST <= t <= now + FUTURE_SLACK


def range_text(now: datetime) -> str:
    return f"{EARLIEST:%Y-%m-%d} .. {now + FUTURE_SLACK:%Y-%m-%dT%H:%M}Z"
