"""Pure decisions that keep governance safe: protected accounts, the circuit breaker, backoff."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta

BREAKER_WINDOW = timedelta(hours=1)
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
MAX_DELAY_S = 7 * 24 * 3600 - 1  # a queue message's visibility timeout is at most 7 days


def is_protected(protected: frozenset[str], *identities: str) -> bool:
    """True when any of the user's identities (object id, UPN, mail, source id) is listed."""
    return any(i and i.strip().lower() in protected for i in identities)


def breaker_tripped(suspension_times: Iterable[datetime], at: datetime, limit: int) -> bool:
    """True when `limit` automatic suspensions already fall in the hour up to `at` (event time)."""
    recent = sum(1 for t in suspension_times if at - BREAKER_WINDOW < t <= at)
    return recent >= limit


def retry_delay(
    retry_after: float | None, attempt: int, rng: random.Random, floor: float = 1.0
) -> int:
    """Seconds until the next attempt: Graph's Retry-After when sent, else exponential backoff
    with full jitter (base 2 s, cap 5 min), never below `floor`."""
    if retry_after is not None:
        delay = retry_after
    else:
        delay = rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempt - 1, 0)))
    return int(min(max(delay, floor), MAX_DELAY_S) + 0.999)
