"""Wall-clock time, for the few places that need it (request handling, never detection)."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
