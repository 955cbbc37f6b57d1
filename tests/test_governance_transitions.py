"""A governance action's status changes only through its transition methods, which allow exactly
the changes ACTION_TRANSITIONS lists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from shared.models import (
    ACTION_TRANSITIONS,
    ActionStatus,
    GovernanceAction,
    IllegalTransition,
)

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LATER = AT + timedelta(minutes=5)


def record(status: ActionStatus, *, approval: bool = False) -> GovernanceAction:
    return GovernanceAction(
        "a1",
        "alert1",
        "community1",
        "suspend_user",
        "alice@contoso.com",
        "enforce",
        status,
        attempts=3,
        request_id="req-before",
        error_code="throttled",
        error_message="Graph answered 429",
        created_at=AT,
        approval_required=approval,
        intent_at=AT,
    )


Move = Callable[[GovernanceAction], GovernanceAction]

# The one method that leads to each status (retry leads to pending or approved by the record).
MOVES: dict[ActionStatus, Move] = {
    "approved": lambda r: r.approve("analyst", LATER)
    if r.status == "pending"
    else r.retry("analyst", LATER),
    "pending": lambda r: r.retry("analyst", LATER),
    "succeeded": lambda r: r.succeed(LATER, "req-1"),
    "failed": lambda r: r.fail(LATER),
    "skipped": lambda r: r.skip(LATER),
    "reverted": lambda r: r.revert("analyst", LATER, "req-2"),
}


def test_every_status_has_its_transitions() -> None:
    assert set(ACTION_TRANSITIONS) == set(get_args(ActionStatus))
    for targets in ACTION_TRANSITIONS.values():
        assert targets <= set(get_args(ActionStatus))


@pytest.mark.parametrize(
    ("before", "after"),
    sorted((s, t) for s, targets in ACTION_TRANSITIONS.items() for t in targets),
)
def test_each_allowed_transition(before: ActionStatus, after: ActionStatus) -> None:
    start = record(before, approval=after == "approved")
    moved = MOVES[after](start)
    assert moved.status == after
    assert moved.updated_at == LATER
    assert start.status == before  # records are values: the old one is unchanged
    if after in ("succeeded", "failed", "skipped"):
        assert moved.completed_at == LATER
    if after == "approved":
        assert (moved.approved_by, moved.approved_at) == ("analyst", LATER)
    if after in ("pending", "approved") and before in ("failed", "skipped"):
        assert (moved.attempts, moved.completed_at, moved.intent_at) == (0, None, None)
        assert moved.error_message == "retry by analyst; before: throttled Graph answered 429"
    if after == "reverted":
        assert (moved.reverted_by, moved.reverted_at, moved.request_id) == (
            "analyst",
            LATER,
            "req-2",
        )


@pytest.mark.parametrize(
    ("before", "move"),
    [
        ("succeeded", "failed"),  # a finished action is not finished again
        ("reverted", "succeeded"),
        ("reverted", "pending"),  # a reverted action is not retried
        ("pending", "reverted"),  # only a succeeded action is reverted
        ("approved", "approved"),
        ("succeeded", "approved"),
        ("skipped", "skipped"),
    ],
)
def test_illegal_transitions_raise(before: ActionStatus, move: ActionStatus) -> None:
    assert move not in ACTION_TRANSITIONS[before]
    with pytest.raises(IllegalTransition, match=f"{before} -> {move}$"):
        MOVES[move](record(before, approval=move == "approved"))


def test_a_revert_without_a_request_id_keeps_the_action_s() -> None:
    reverted = record("succeeded").revert("analyst", LATER, "")
    assert reverted.request_id == "req-before"
