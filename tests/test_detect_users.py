"""Terminated user, failed-login baseline and unusual admin/impersonated activity (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.detection import failed_logins, terminated_user, unusual_admin, unusual_impersonation
from shared.detection.base import DetectorConfig, Directory
from shared.detection.profiles import Seen, UserProfile
from shared.ipintel import IpInfo
from shared.models import Activity
from tests.detect_samples import LONG_AGO, T0, act, known_tenant, replay, seasoned

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


def test_failures_from_the_users_own_isp_and_country_are_held_to_the_floor_only() -> None:
    """A mail app retrying the old password after a reset, from the user's own carrier."""
    own = IpInfo("198.51.100.7", country="GB", isp="Example Mobile")
    quiet = replace(
        seasoned(GB=20),
        failed_peaks={"2026-02-20": 1},
        isps={"Example Mobile": Seen(LONG_AGO, T0 - timedelta(days=1), 10)},
    )

    def found(n: int, info: IpInfo) -> int:
        acts = failures(n)
        infos = {a.event_id: info for a in acts}
        _, out = replay(failed_logins.detect, acts, profile=quiet, config=FAILED, infos=infos)
        return sum(not f.extends for f in out)  # alerts raised (later failures extend them)

    assert found(8, own) == 0  # above the user's baseline, below the floor
    assert found(11, own) == 1  # the floor still holds
    assert found(8, replace(own, isp="Elsewhere Hosting")) == 1  # not the user's ISP
    assert found(8, replace(own, country="BR")) == 1  # the user's ISP name, but abroad


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


def established_admin(**extra: Any) -> UserProfile:
    """An admin with weeks of routine admin work from the GB office (198.51.100.7), 08-10 UTC."""
    seen = Seen(LONG_AGO, T0 - timedelta(days=1), 20)
    return replace(
        seasoned(GB=20),
        admin={"ADMIN_ROLE_CHANGED": seen, "EMAIL_CHANGED": seen},
        admin_where={"country:GB": seen, "ip:198.51.100.7": seen},
        admin_hours={"08": seen, "09": seen, "10": seen},
        **extra,
    )


# ACCOUNT_CREATED is ordinary in this organisation (three other admins do it); DOMAIN_ADDED is not.
ORG = replace(
    known_tenant("GB"),
    admin_actions={"ACCOUNT_CREATED": ("a1", "a2", "a3"), "DOMAIN_ADDED": ()},
)


def at(level: str, **params: Any) -> DetectorConfig:
    return DetectorConfig(unusual_admin.DETECTOR_ID, sensitivity=level, params=params)  # type: ignore[arg-type]


def test_a_first_time_but_ordinary_action_by_an_established_admin_does_not_alert() -> None:
    routine = [admin("ACCOUNT_CREATED"), admin("ADMIN_ROLE_CHANGED", at=T0 + timedelta(hours=1))]
    for level in ("low", "medium", "high"):
        found = replay(
            unusual_admin.detect, routine, profile=established_admin(), tenant=ORG, config=at(level)
        )[1]
        assert found == [], level


def test_a_rare_action_from_a_new_country_alerts_with_its_factors() -> None:
    acts = [admin("DOMAIN_ADDED", country="BR", ip="203.0.113.9")]
    (f,) = replay(unusual_admin.detect, acts, profile=established_admin(), tenant=ORG)[1]
    assert f.facts["factors"] == ["new_country", "rare_action"] and f.facts["score"] == 4
    assert f.facts["actions"] == ["DOMAIN_ADDED"] and f.severity == "medium"
    assert "score 4, alerting from 3 at sensitivity medium" in f.suppressions_evaluated
    assert any(s.startswith("burst (+2): absent") for s in f.suppressions_evaluated)


def test_the_sensitivity_sets_the_score_needed() -> None:
    rare_at_home = [admin("DOMAIN_ADDED")]  # rare in the org, from the usual office: score 2
    profile = established_admin()
    assert replay(unusual_admin.detect, rare_at_home, profile=profile, tenant=ORG)[1] == []
    kw: dict[str, Any] = {"profile": profile, "tenant": ORG}
    (f,) = replay(unusual_admin.detect, rare_at_home, config=at("high"), **kw)[1]
    assert f.facts["factors"] == ["rare_action"]
    night = [admin("DOMAIN_ADDED", at=T0.replace(hour=3))]  # + outside their hours: 3
    assert len(replay(unusual_admin.detect, night, **kw)[1]) == 1
    assert replay(unusual_admin.detect, night, config=at("low"), **kw)[1] == []
    assert len(replay(unusual_admin.detect, night, config=at("low", score_needed=3), **kw)[1]) == 1


def test_a_burst_of_distinct_admin_actions_from_abroad_alerts_an_ordinary_one_does_not() -> None:
    kinds = ["ACCOUNT_CREATED", "EMAIL_CHANGED", "ADMIN_ROLE_CHANGED"]
    at_home = [admin(k, at=T0 + timedelta(minutes=5 * i)) for i, k in enumerate(kinds)]
    kw: dict[str, Any] = {"profile": established_admin(), "tenant": ORG}
    assert replay(unusual_admin.detect, at_home, **kw)[1] == []  # burst alone: 2 < 3
    (f,) = replay(unusual_admin.detect, at_home, config=at("high"), **kw)[1]
    assert f.facts["factors"] == ["burst"]
    isp = "Example Broadband"
    away = [
        admin(k, at=T0 + timedelta(minutes=5 * i), ip="192.0.2.50") for i, k in enumerate(kinds)
    ]
    infos = {a.event_id: IpInfo("192.0.2.50", country="GB", isp=isp) for a in away}
    found = replay(unusual_admin.detect, away, infos=infos, **kw)[1]
    assert [f.facts["factors"] for f in found] == [["burst", "new_isp_or_ip"]]


def test_a_burst_from_the_home_line_the_admin_works_from_daily_does_not_alert() -> None:
    kinds = ["ACCOUNT_CREATED", "EMAIL_CHANGED", "ADMIN_ROLE_CHANGED"]
    home = [
        admin(k, at=T0 + timedelta(minutes=5 * i), ip="192.0.2.50") for i, k in enumerate(kinds)
    ]
    infos = {a.event_id: IpInfo("192.0.2.50", country="GB", isp="Example Broadband") for a in home}
    daily = Seen(LONG_AGO, T0 - timedelta(days=1), 20)
    profile = established_admin(isps={"Example Broadband": daily})
    kw: dict[str, Any] = {"profile": profile, "tenant": ORG, "infos": infos}
    assert replay(unusual_admin.detect, home, **kw)[1] == []
    (f,) = replay(unusual_admin.detect, home, config=at("high"), **kw)[1]
    assert f.facts["factors"] == ["burst"]  # the burst alone, as from the office


def test_a_user_with_no_admin_history_doing_admin_work_from_elsewhere_alerts() -> None:
    (f,) = replay(
        unusual_admin.detect, [admin("DOMAIN_ADDED", country="BR")], profile=seasoned(GB=20)
    )[1]
    assert {"first_admin_activity", "new_country"} <= set(f.facts["factors"])


def test_impersonated_admin_work_says_nothing_about_where_the_admin_works() -> None:
    bot = admin("ACCOUNT_CREATED", country="US", ip="192.0.2.80", impersonated=True)
    profile, found = replay(unusual_admin.detect, [bot], profile=established_admin(), tenant=ORG)
    assert found == [] and "country:US" not in profile.admin_where


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
