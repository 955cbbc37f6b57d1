from datetime import UTC, datetime

from shared.workplace.normalize import normalise
from tests.samples import COMMUNITY, envelope, value


def test_each_entry_change_becomes_one_activity_with_the_wire_fields() -> None:
    body = envelope(
        ("login", value("LOGIN_FAILED", ip="203.0.113.9", country="br")),
        ("integrations", value("CUSTOM_INTEGRATION_EDIT")),
    )
    result = normalise(body)
    assert result.rejected == []
    failed, edit = result.activities
    assert failed.tenant_id == COMMUNITY
    assert failed.type == "login_failed" and failed.outcome == "failure"
    assert failed.ip == "203.0.113.9" and failed.country == "BR"
    assert failed.time == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert failed.actor_email == "alice@contoso.com"
    assert not failed.administrative
    assert edit.type == "integration_changed" and edit.administrative


def test_event_id_is_stable_across_envelopes_and_distinct_per_event() -> None:
    v = value("LOGIN")
    first = normalise(envelope(("login", v), time=1)).activities[0]
    again = normalise(envelope(("login", dict(reversed(list(v.items())))), time=2)).activities[0]
    other = normalise(envelope(("login", value("LOGIN", ip="192.0.2.1")))).activities[0]
    assert first.event_id == again.event_id
    assert first.event_id != other.event_id


def test_unknown_events_are_kept_as_generic_activities() -> None:
    (activity,) = normalise(envelope(("files", value("MALWARE_UPLOAD_BLOCKED")))).activities
    assert activity.type == "other" and activity.event_name == "MALWARE_UPLOAD_BLOCKED"


def test_entry_time_is_used_when_the_value_has_no_timestamp() -> None:
    v = value("LOGOUT")
    del v["timestamp"]
    (activity,) = normalise(envelope(("login", v), time=1617019222)).activities
    assert activity.time == datetime.fromtimestamp(1617019222, UTC)


def test_a_bad_change_is_rejected_without_losing_its_neighbours() -> None:
    broken = value("LOGIN")
    del broken["actor_id"]
    result = normalise(envelope(("login", broken), ("login", value("LOGOUT"))))
    assert [a.type for a in result.activities] == ["logout"]
    assert len(result.rejected) == 1 and "actor_id" in result.rejected[0]


def test_admin_acting_on_someone_else_and_impersonation_are_flagged() -> None:
    reset = value("FORCED_PASSWORD_RESET", target="999")
    impersonated = value("LOGIN", impersonator_id="42", is_interactive=False)
    a, b = normalise(envelope(("password", reset), ("login", impersonated))).activities
    assert a.administrative and a.target_id == "999"
    assert b.impersonated and not b.interactive
