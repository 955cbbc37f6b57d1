"""Terminated users on event time, and one alert per incident (pure: the engine's fold)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared.detection import builtins, incidents, terminated_user
from shared.detection.base import Directory
from shared.detection.fold import DetectorSet, fold_user, users_of
from shared.detection.profiles import Seen, TenantProfile, UserProfile
from shared.ipintel import IpIntel
from shared.models import Activity
from shared.policies import parse
from tests.detect_samples import LONG_AGO, T0, act, seasoned

LEARNING = timedelta(days=7)
DETECTIONS = DetectorSet(builtins.configure({}, learning=LEARNING), (), LEARNING)
INTEL = IpIntel(())
ADMIN, ADMIN_EMAIL = "200000000000001", "admin@contoso.com"
USER, EMAIL = "100064094363063", "alice@contoso.com"


def switch(event: str, at: Any, **kw: Any) -> Activity:
    """An admin's action on Alice's account, as Workplace's webhook is normalised."""
    return act(
        event.lower(),
        event=event,
        at=at,
        user=ADMIN,
        email=ADMIN_EMAIL,
        target_id=USER,
        target_email=EMAIL,
        category="account",
        administrative=True,
        **kw,
    )


def deactivated(at: Any) -> Activity:
    return switch("ACCOUNT_DEACTIVATED", at)


def batches(*parts: list[Activity], profile: UserProfile | None = None) -> list[tuple[str, bool]]:
    """Run each part as one detection batch (the engine's split: Alice's own activities and the
    switches of her account); every raised (alert id, extends) of Alice's, in order."""
    p = profile or seasoned(GB=20)
    out = []
    for acts in parts:
        own, switched = users_of(acts).get(USER, ([], None))
        fold = fold_user(p, TenantProfile(), own, DETECTIONS, INTEL, None, switched)
        p = fold.profile
        out += [
            (r.alert_id, r.finding.extends)
            for r in fold.raised
            if r.finding.detector_id == terminated_user.DETECTOR_ID
        ]
    return out


def test_activity_seconds_after_a_deactivation_alerts_once_in_any_arrival_order() -> None:
    off, use = deactivated(T0), act(at=T0 + timedelta(seconds=40))
    more = act(at=T0 + timedelta(hours=5), ip="198.51.100.8")
    backlog = batches([off, use, more])
    live = batches([off], [use], [more])
    reversed_ = batches([more], [use], [off])
    assert len(backlog) == 1 and backlog[0][1] is False
    assert live == [(backlog[0][0], False), (backlog[0][0], True)]  # then grows
    assert reversed_ == [(backlog[0][0], False)]  # the late deactivation finds both


def test_activity_before_or_after_reactivation_or_past_30_days_does_not_alert() -> None:
    on = switch("ACCOUNT_ACTIVATED", T0 + timedelta(hours=1))
    assert batches([act(at=T0 - timedelta(minutes=1)), deactivated(T0)]) == []
    assert batches([deactivated(T0), on], [act(at=T0 + timedelta(hours=2))]) == []
    assert batches([deactivated(T0)], [act(at=T0 + timedelta(days=31))]) == []
    # Failing to sign in, or being logged out, is what a deactivated account does.
    failed = act("login_failed", at=T0 + timedelta(minutes=1))
    assert batches([deactivated(T0), failed, act("logout", at=T0 + timedelta(minutes=2))]) == []


def test_each_termination_is_one_alert_and_a_snapshot_after_the_webhook_is_the_same_one() -> None:
    snapshot = act(
        "account_deactivated",
        event="DIRECTORY_ACCOUNT_DEACTIVATED",
        at=T0 + timedelta(minutes=50),
        category="directory",
        target_id=USER,
        target_email=EMAIL,
        interactive=False,
    )
    on = switch("ACCOUNT_ACTIVATED", T0 + timedelta(days=2))
    again = deactivated(T0 + timedelta(days=3))
    raised = batches(
        [deactivated(T0), act(at=T0 + timedelta(minutes=5))],
        [snapshot, act(at=T0 + timedelta(hours=2))],
        [on, again, act(at=T0 + timedelta(days=3, hours=1))],
    )
    first, second = sorted({a for a, _ in raised}, key=[a for a, _ in raised].index)
    assert raised == [(first, False), (first, True), (second, False)]


def test_entra_disabled_is_recorded_at_the_event_time_it_was_asked_for() -> None:
    disabled = Directory("active", entra="disabled")
    p = seasoned(GB=20)
    fold = fold_user(p, TenantProfile(), [act(at=T0)], DETECTIONS, INTEL, disabled)
    (r,) = [x for x in fold.raised if x.finding.detector_id == terminated_user.DETECTOR_ID]
    assert r.finding.facts["terminated_at"] == T0.isoformat()
    # Enabled again an hour later (event time): activity then does not alert, and the
    # recorded switches stay in the profile, not in a cache.
    enabled = Directory("active", entra="enabled")
    later = fold_user(
        fold.profile, TenantProfile(), [act(at=T0 + timedelta(hours=1))], DETECTIONS, INTEL, enabled
    )
    assert [x for x in later.raised if x.finding.detector_id == terminated_user.DETECTOR_ID] == []
    assert [(x.source, x.enabled) for x in later.profile.lifecycle] == [
        ("entra", False),
        ("entra", True),
    ]


# --- one alert per incident -------------------------------------------------------------------


def admin_profile() -> UserProfile:
    seen = Seen(LONG_AGO, T0 - timedelta(days=1), 20)
    return replace(
        seasoned(GB=20),
        admin={"ADMIN_ROLE_CHANGED": seen},
        admin_where={"country:GB": seen, "ip:198.51.100.7": seen},
        admin_hours={"09": seen},
    )


def test_an_admin_burst_from_abroad_is_one_alert_that_grows() -> None:
    kinds = ["DOMAIN_ADDED", "ADMIN_CREATED", "EMAIL_CHANGED", "DOMAIN_REMOVED", "ACCOUNT_CREATED"]
    burst = [
        act(
            "admin_added",
            event=k,
            administrative=True,
            at=T0 + timedelta(minutes=4 * i),
            country="BR",
            ip="203.0.113.9",
            target_id=f"t{i}",
        )
        for i, k in enumerate(kinds)
    ]
    fold = fold_user(admin_profile(), TenantProfile(), burst, DETECTIONS, INTEL)
    (r,) = [x for x in fold.raised if x.finding.detector_id == "vigil.unusual_admin"]
    assert r.finding.extends is False and r.finding.event_count == 5
    assert r.finding.facts["actions"] == kinds and r.finding.facts["targets"] == [
        f"t{i}" for i in range(5)
    ]
    # The same burst over five batches: one alert, extended four times.
    p, seen = admin_profile(), []
    for a in burst:
        f = fold_user(p, TenantProfile(), [a], DETECTIONS, INTEL)
        p = f.profile
        seen += [
            (x.alert_id, x.finding.extends)
            for x in f.raised
            if x.finding.detector_id == "vigil.unusual_admin"
        ]
    assert seen == [(r.alert_id, False)] + [(r.alert_id, True)] * 4
    # Two hours later (past the one-hour gap): a new incident.
    late = replace(
        burst[0],
        event_id="late",
        event_name="ADMIN_REMOVED",
        country="NG",
        time=T0 + timedelta(hours=3),
    )
    (new,) = [
        x
        for x in fold_user(p, TenantProfile(), [late], DETECTIONS, INTEL).raised
        if x.finding.detector_id == "vigil.unusual_admin"
    ]
    assert new.alert_id != r.alert_id and new.finding.extends is False


def test_every_builtin_states_its_merge_window() -> None:
    assert set(incidents.MERGE) == set(builtins.DETECTOR_IDS)
    assert incidents.MERGE["vigil.unusual_admin"].gap == timedelta(hours=1)
    assert incidents.MERGE["vigil.multiple_failed_logins"].gap == timedelta(minutes=30)
    assert incidents.MERGE["vigil.terminated_user"].same_window


def test_impersonated_activity_never_places_the_user() -> None:
    home = [act(at=T0 - timedelta(days=d), country="PL", ip="198.51.101.9") for d in range(10)]
    sync = act(
        "file_uploaded",
        event="FILE_UPLOADED",
        at=T0 + timedelta(minutes=10),
        country="US",
        ip="192.0.2.44",
        impersonated=True,
    )
    p = UserProfile()
    fold = fold_user(
        p, TenantProfile(), [*home[::-1], act(at=T0, country="PL"), sync], DETECTIONS, INTEL
    )
    assert [r.finding.detector_id for r in fold.raised] == ["vigil.unusual_impersonation"]
    assert set(fold.profile.countries) == {"PL"} and all(
        h.country == "PL" for h in fold.profile.hops
    )
    assert "FILE_UPLOADED" in fold.profile.impersonated  # still learned for impersonation


def test_a_policy_may_still_select_impersonated_activity_by_its_place() -> None:
    (bot_abroad,) = parse(
        {
            "id": "bot-abroad",
            "type": "activity",
            "title": "{event} for {user} from {country}",
            "filters": {
                "activity.impersonated": {"eq": [True]},
                "location.country": {"eq": ["US"]},
            },
        },
        "test.yaml",
    ).activity
    with_policy = replace(DETECTIONS, policies=(bot_abroad,))
    sync = act("file_uploaded", event="FILE_UPLOADED", country="US", impersonated=True)
    fold = fold_user(seasoned(PL=20), TenantProfile(), [sync], with_policy, INTEL)
    assert sorted(r.finding.detector_id for r in fold.raised) == [
        "bot-abroad",
        "vigil.unusual_impersonation",
    ]
