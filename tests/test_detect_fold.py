"""The pure fold and its one dedup rule (no storage: profiles in, profiles and findings out)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from shared.detection import builtins, incidents
from shared.detection.base import DetectorConfig, Finding
from shared.detection.fold import (
    DetectorSet,
    Raised,
    fold_tenant_wide,
    fold_user,
    latest,
    raise_once,
    users_of,
)
from shared.detection.policy_findings import TENANT_WIDE
from shared.detection.profiles import TenantProfile, UserProfile
from shared.ipintel import IpIntel
from shared.models import short_hash
from shared.policies import parse
from tests.detect_samples import T0, TENANT, USER, act, seasoned

LEARNING = timedelta(days=7)
DETECTIONS = DetectorSet(builtins.configure({}, learning=LEARNING), (), LEARNING)
INTEL = IpIntel(())
CFG = DetectorConfig("test.policy")
TOR = "203.0.113.50"
TOR_INTEL = IpIntel((), tor_exits=frozenset({TOR}))


def finding(*ids: str, window: str = "w1", extends: bool = False) -> Finding:
    return Finding(
        detector_id="test.policy",  # no merge rule: one alert per window
        window=window,
        title="t",
        description="d",
        severity="medium",
        category="ActivityPolicy",
        mitre_techniques=(),
        facts={},
        first=T0,
        last=T0 + timedelta(minutes=len(ids)),
        activity_ids=ids,
        event_count=len(ids),
        extends=extends,
    )


def test_a_new_finding_raises_once_and_the_profile_remembers_its_alert() -> None:
    raised: dict[str, Raised] = {}
    profile, kept = raise_once(raised, UserProfile(), finding("e1"), CFG, act(), subject=USER)
    alert_id = short_hash("test.policy", TENANT, USER, "w1")
    assert kept is not None and kept.alert_id == alert_id and not kept.finding.extends
    assert list(raised) == [alert_id] and alert_id in profile.alerts
    # Another window is another alert.
    profile, other = raise_once(
        raised, profile, finding("e2", window="w2"), CFG, act(), subject=USER
    )
    assert other is not None and other.alert_id != alert_id and len(raised) == 2


def test_a_redelivered_finding_is_skipped_but_one_that_extends_the_alert_is_kept() -> None:
    profile, _ = raise_once({}, UserProfile(), finding("e1"), CFG, act(), subject=USER)
    again: dict[str, Raised] = {}
    after, kept = raise_once(again, profile, finding("e1"), CFG, act(), subject=USER)
    assert kept is None and again == {} and after == profile
    after, grown = raise_once(again, profile, finding("e2", extends=True), CFG, act(), subject=USER)
    assert grown is not None and grown.finding.extends and list(again) == [grown.alert_id]


def test_one_alert_found_twice_in_a_batch_is_one_finding_that_stays_new() -> None:
    raised: dict[str, Raised] = {}
    profile, _ = raise_once(raised, UserProfile(), finding("e1"), CFG, act(), subject=USER)
    second = finding("e1", "e2", extends=True)
    profile, kept = raise_once(raised, profile, second, CFG, act(), subject=USER)
    assert kept is not None and len(raised) == 1
    assert kept.finding.activity_ids == ("e1", "e2") and not kept.finding.extends
    # Tenant-wide bursts keep the later finding (it already holds the earlier one's events).
    wide: dict[str, Raised] = {}
    p, _ = raise_once(wide, UserProfile(), finding("e1"), CFG, act(), subject=TENANT_WIDE)
    p, kept = raise_once(wide, p, second, CFG, act(), subject=TENANT_WIDE, combine=latest)
    assert kept is not None and kept.finding == replace(second, extends=False)
    assert kept.alert_id == short_hash("test.policy", TENANT, TENANT_WIDE, "w1")


def test_a_user_batch_folded_again_only_grows_its_alert_and_a_later_incident_is_new() -> None:
    tor = [act(at=T0 + timedelta(minutes=m), ip=TOR) for m in (0, 5)]
    first = fold_user(seasoned(GB=20), TenantProfile(), tor, DETECTIONS, TOR_INTEL)
    assert [r.finding.detector_id for r in first.raised] == ["vigil.anonymous_ip"]
    (r,) = first.raised
    assert r.finding.activity_ids == tuple(a.event_id for a in tor) and not r.finding.extends
    # Redelivered: no new alert, only the open one again (the engine writes nothing: the
    # profile did not change).
    redelivered = fold_user(first.profile, TenantProfile(), tor, DETECTIONS, TOR_INTEL)
    assert [(x.alert_id, x.finding.extends) for x in redelivered.raised] == [(r.alert_id, True)]
    assert redelivered.profile == first.profile
    later = [act(at=T0 + timedelta(hours=5), ip=TOR)]  # past the merge gap: a new incident
    assert incidents.MERGE["vigil.anonymous_ip"].gap < timedelta(hours=5)
    again = fold_user(first.profile, TenantProfile(), later, DETECTIONS, TOR_INTEL)
    (new,) = again.raised
    assert new.alert_id != r.alert_id and not new.finding.extends


def test_a_tenant_wide_policy_raises_once_across_users_and_not_on_redelivery() -> None:
    (policy,) = parse(
        {
            "id": "many-downloads",
            "type": "activity",
            "title": "{count} downloads",
            "filters": {"activity.type": {"eq": ["file_downloaded"]}},
            "match": {"mode": "repeated", "count": 3, "window_minutes": 10, "same_user": False},
        },
        "test.yaml",
    ).activity
    detections = replace(DETECTIONS, policies=(policy,))
    downloads = [
        act("file_downloaded", at=T0 + timedelta(minutes=m), user=str(100 + m)) for m in range(5)
    ]
    profile, raised = fold_tenant_wide(UserProfile(), TenantProfile(), downloads, detections, INTEL)
    assert [(r.finding.detector_id, r.finding.extends) for r in raised] == [
        ("many-downloads", False)
    ]
    assert raised[0].finding.event_count == 5  # the burst's latest finding holds all five
    again, none = fold_tenant_wide(profile, TenantProfile(), downloads, detections, INTEL)
    assert none == () and again == profile
    two = [act("file_downloaded", at=T0, user="100"), act("file_downloaded", at=T0, user="101")]
    assert fold_tenant_wide(UserProfile(), TenantProfile(), two, detections, INTEL)[1] == ()


def test_users_of_splits_a_batch_as_the_engine_folds_it() -> None:
    admin = act(
        "account_deactivated",
        event="ACCOUNT_DEACTIVATED",
        user="200",
        at=T0,
        target_id=USER,
        target_email="alice@contoso.com",
        category="account",
        administrative=True,
    )
    late, early = act(at=T0 + timedelta(minutes=2)), act(at=T0 + timedelta(minutes=1))
    users = users_of([late, admin, early])
    assert list(users) == [USER, "200"]  # the account switched first
    assert users[USER] == ([early, late], [admin])
    assert users["200"] == ([admin], None)
    assert users_of([late, admin], terminations=False) == {
        USER: ([late], None),
        "200": ([admin], None),
    }
