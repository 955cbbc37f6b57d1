"""Terminated user, failed-login baseline and unusual admin/impersonated activity (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.detection import failed_logins, terminated_user, unusual_admin, unusual_impersonation
from shared.detection.base import DetectorConfig, Directory
from shared.detection.profiles import Seen, UserProfile
from shared.models import Activity
from tests.detect_samples import LONG_AGO, T0, act, replay, seasoned

FAILED = DetectorConfig(failed_logins.DETECTOR_ID, params={"threshold": 10, "window_minutes": 5})


def failures(
    n: int, start: datetime = T0, every: timedelta = timedelta(seconds=20)
) -> list[Activity]:
    return [act("login_failed", at=start + i * every) for i in range(n)]


# --- terminated user ----------------------------------------------------------------------


def test_activity_after_deactivation_in_workplace_alerts() -> None:
    gone = Directory("deactivated", T0 - timedelta(days=1))
    _, found = replay(terminated_user.detect, [act()], directory=gone)
    (f,) = found
    assert f.facts["workplace_status"] == "deactivated" and f.severity == "medium"


def test_activity_before_the_deactivation_does_not_alert() -> None:
    later = Directory("deactivated", T0 + timedelta(hours=1))
    assert replay(terminated_user.detect, [act()], directory=later)[1] == []
    assert replay(terminated_user.detect, [act()], directory=Directory("active"))[1] == []


def test_disabled_in_entra_alerts_on_success_high_for_admins() -> None:
    d = Directory("active", is_admin=True, entra="disabled")
    (f,) = replay(terminated_user.detect, [act()], directory=d)[1]
    assert f.severity == "high" and "disabled in Entra ID" in f.description
    assert replay(terminated_user.detect, [act("login_failed")], directory=d)[1] == []


def test_absent_from_entra_is_deleted_only_for_sso_users() -> None:
    sso = Directory("active", auth_method="sso", entra="absent")
    local = Directory("active", auth_method="password", entra="absent")
    assert len(replay(terminated_user.detect, [act()], directory=sso)[1]) == 1
    assert replay(terminated_user.detect, [act()], directory=local)[1] == []


# --- multiple failed logins: floor and baseline -------------------------------------------


def test_the_hard_floor_fires_during_learning() -> None:
    _, found = replay(failed_logins.detect, failures(11), config=FAILED)
    assert len(found) == 1 and found[0].facts["threshold_basis"] == "hard floor"
    _, found = replay(failed_logins.detect, failures(6), config=FAILED)
    assert found == []


def test_after_learning_a_quiet_users_baseline_is_lower_than_the_floor() -> None:
    quiet = replace(seasoned(GB=20), failed_peaks={"2026-02-20": 1})
    _, found = replay(failed_logins.detect, failures(6), profile=quiet, config=FAILED)
    (f,) = found
    assert f.facts["threshold_basis"] == "user baseline" and f.facts["threshold"] == 5


def test_a_user_who_often_mistypes_keeps_the_floor() -> None:
    clumsy = replace(seasoned(GB=20), failed_peaks={"2026-02-25": 6})
    _, found = replay(failed_logins.detect, failures(9), profile=clumsy, config=FAILED)
    assert found == []


def test_the_busiest_window_is_remembered_per_event_day() -> None:
    profile, _ = replay(failed_logins.detect, failures(3), config=FAILED)
    assert profile.failed_peaks == {"2026-03-02": 3}


# --- unusual administrative / impersonated activity ---------------------------------------


def admin(event: str, **kw: Any) -> Activity:
    return act("admin_role_changed", event=event, administrative=True, **kw)


def test_an_admin_action_new_for_the_user_alerts_with_what_is_uncommon() -> None:
    profile = replace(
        seasoned(GB=20), admin={"ADMIN_ROLE_CHANGED": Seen(LONG_AGO, T0 - timedelta(days=2), 9)}
    )
    acts = [admin("ADMIN_ROLE_CHANGED"), admin("DOMAIN_ADDED", country="BR")]
    _, found = replay(unusual_admin.detect, acts, profile=profile)
    (f,) = found
    assert f.facts["action"] == "DOMAIN_ADDED"
    assert f.facts["uncommon_for_user"] == ["action", "country"] and f.severity == "high"


def test_admin_actions_while_learning_or_ordinary_activity_do_not_alert() -> None:
    assert replay(unusual_admin.detect, [admin("DOMAIN_ADDED")])[1] == []
    assert replay(unusual_admin.detect, [act()], profile=seasoned(GB=3))[1] == []


def test_unusual_impersonated_activity_against_the_users_baseline() -> None:
    imp = act("other", event="SEND_ON_BEHALF", impersonated=True)
    known = replace(
        seasoned(GB=20), impersonated={"SEND_ON_BEHALF": Seen(LONG_AGO, T0 - timedelta(days=1))}
    )
    assert len(replay(unusual_impersonation.detect, [imp], profile=seasoned(GB=20))[1]) == 1
    assert replay(unusual_impersonation.detect, [imp], profile=known)[1] == []
    assert replay(unusual_impersonation.detect, [act()], profile=seasoned(GB=20))[1] == []


def test_the_profile_after_learning_remembers_first_seen_and_admin_actions() -> None:
    profile, _ = replay(unusual_admin.detect, [admin("DOMAIN_ADDED")], profile=UserProfile())
    assert profile.first_seen == T0 and "DOMAIN_ADDED" in profile.admin
