"""How an attempt at an action ends, and how it stores its record: shared by the executor, the
per-action dispatch and the guardrails."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Literal

from shared import telemetry
from shared.governance.dependencies import Governance
from shared.governance.records import TERMINAL, RecordConflict
from shared.models import GovernanceAction

# How long an attempt holds its record: host.json's functionTimeout, so that once it has passed
# the attempt is certainly over (the host ends an invocation then). The queue shows a message
# again at most 10 minutes after a host dies; a redelivery that comes before the lease is over
# is put back on the queue until then, and first checks whether the dead attempt's call happened.
LEASE = timedelta(minutes=10)


class RetryLater(RuntimeError):
    """A transient failure: the message goes back to the queue, visible after `delay` seconds."""

    def __init__(self, message: str, delay: int = 1) -> None:
        super().__init__(message)
        self.delay = delay


class Decided(Exception):
    """A decided outcome of this attempt other than success: "failed" or "skipped"."""

    def __init__(self, status: Literal["failed", "skipped"], code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def save(
    gov: Governance, record: GovernanceAction, etag: str | None, *, release: bool = False
) -> str:
    """Write the record if nobody else did since we read it; finished records (or `release`)
    give up the in-flight lease."""
    if release or record.status in TERMINAL:
        record = replace(record, lease_until=None)
    try:
        return gov.actions.save(record, etag, new=etag is None)
    except RecordConflict:
        raise RetryLater(f"governance action {record.id} is being worked on; retrying", 2) from None


def close(gov: Governance, record: GovernanceAction, etag: str | None) -> GovernanceAction:
    """Store a finished record (its lease given up) and return it as stored."""
    record = replace(record, lease_until=None)
    save(gov, record, etag)
    telemetry.action_taken(record.action, record.status, record.mode)
    return record
