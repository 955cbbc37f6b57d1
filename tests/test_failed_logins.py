"""The multiple-failed-logins decision on sample sequences (no storage)."""

from datetime import timedelta

from shared.detection.failed_logins import UserState, decide
from shared.workplace.normalize import normalise
from tests.samples import COMMUNITY, T0, envelope, failed_logins, value

WINDOW = timedelta(minutes=5)


def run(changes, state=None, threshold=10):  # type: ignore[no-untyped-def]
    state = state or UserState()
    decisions = []
    for activity in normalise(envelope(*changes)).activities:
        state, d = decide(state, activity, tenant_id=COMMUNITY, threshold=threshold, window=WINDOW)
        if d:
            decisions.append(d)
    return state, decisions


def test_more_than_threshold_in_the_window_raises_one_alert() -> None:
    _, decisions = run(failed_logins(11))
    assert len(decisions) == 1 and decisions[0].new
    assert len(decisions[0].failures) == 11


def test_exactly_threshold_does_not_alert() -> None:
    _, decisions = run(failed_logins(10))
    assert decisions == []


def test_failures_spread_wider_than_the_window_do_not_alert() -> None:
    _, decisions = run(failed_logins(20, every=timedelta(minutes=1)))
    assert decisions == []


def test_a_continuing_burst_extends_the_same_alert() -> None:
    _, decisions = run(failed_logins(30))
    assert decisions[0].new and all(not d.new for d in decisions[1:])
    assert {d.alert_id for d in decisions} == {decisions[0].alert_id}
    assert len(decisions[-1].failures) == 30


def test_a_new_burst_after_a_quiet_gap_is_a_new_alert() -> None:
    first = failed_logins(11)
    later = failed_logins(11, start=T0 + timedelta(hours=2))
    _, decisions = run(first + later)
    new = [d for d in decisions if d.new]
    assert len(new) == 2 and new[0].alert_id != new[1].alert_id


def test_replaying_the_same_failures_changes_nothing() -> None:
    changes = failed_logins(11)
    state, decisions = run(changes)
    again, replayed = run(changes, state=state)
    assert again == state and replayed == []
    assert len(decisions) == 1


def test_successful_logins_never_count() -> None:
    successes = [("login", value("LOGIN", at=T0 + timedelta(seconds=i))) for i in range(20)]
    _, decisions = run(successes + failed_logins(10))
    assert decisions == []


def test_out_of_order_arrival_gives_the_same_alert_as_in_order() -> None:
    changes = failed_logins(11)
    _, in_order = run(changes)
    _, shuffled = run(list(reversed(changes)))
    assert in_order[0].alert_id == next(d for d in shuffled if d.new).alert_id
