"""Entra sign-ins and directory audits -> activities: the mapping, outcomes and the boundary."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from shared.detection.base import SOURCE_COORDINATES_RADIUS_KM, Observation
from shared.entra.codes import kind_of
from shared.entra.normalize import RecordError, audit_activity, signin_activity
from shared.ipintel import IpInfo
from tests.entra_samples import AUDIT, SIGN_IN, TENANT

NOW = datetime(2025, 3, 5, tzinfo=UTC)


def test_a_documented_sign_in_maps_to_a_failed_login_of_its_user_with_entras_coordinates() -> None:
    a = signin_activity(SIGN_IN, TENANT, NOW)
    assert (a.source, a.tenant_id, a.event_id) == ("entra", TENANT, SIGN_IN["id"])
    assert a.time == datetime(2025, 3, 4, 7, 41, 12, 553112, tzinfo=UTC)
    assert (a.type, a.outcome) == ("login_failed", "failure")
    assert a.event_name == "signIn.credential_failure"
    assert a.actor_id == a.target_id == "8e3c7a51-1b2f-4d6e-9c0a-6f5e4d3c2b1a"
    assert a.actor_email == "a.novak@contoso.example"
    assert (a.ip, a.country, a.latitude, a.longitude) == ("203.0.113.45", "NL", 52.3676, 4.9041)
    assert a.interactive and not a.administrative
    assert a.user_agent == "Chrome 121.0.0 / Windows 10"
    assert '"appDisplayName": "Office 365 Exchange Online"' in a.raw  # app, client app kept


@pytest.mark.parametrize(
    ("code", "type_", "outcome"),
    [
        (0, "login", "success"),
        (50126, "login_failed", "failure"),
        (50053, "login_failed", "failure"),
        (50074, "login_interrupted", "failure"),
        (50076, "login_interrupted", "failure"),
        (50079, "login_interrupted", "failure"),
        (50125, "login_interrupted", "failure"),
        (50158, "mfa_failed", "failure"),
        (500121, "mfa_failed", "failure"),
        (53003, "login_blocked", "failure"),
        (70043, "session_expired", "failure"),
        (99999, "login_failure_other", "failure"),
    ],
)
def test_the_error_code_decides_the_outcome_and_an_mfa_prompt_is_no_failed_password(
    code: int, type_: str, outcome: str
) -> None:
    rec = copy.deepcopy(SIGN_IN)
    rec["status"]["errorCode"] = code
    a = signin_activity(rec, TENANT, NOW)
    assert (a.type, a.outcome) == (type_, outcome)
    assert kind_of(code).type == type_


def test_beta_event_types_decide_interactive() -> None:
    rec = copy.deepcopy(SIGN_IN)
    rec["signInEventTypes"] = ["nonInteractiveUser"]
    assert not signin_activity(rec, TENANT, NOW).interactive
    rec["signInEventTypes"] = ["interactiveUser"]
    assert signin_activity(rec, TENANT, NOW).interactive


def test_impossible_travel_places_the_user_at_entras_coordinates_not_the_ip_lookup() -> None:
    rec = copy.deepcopy(SIGN_IN)
    rec["status"]["errorCode"] = 0
    a = signin_activity(rec, TENANT, NOW)
    elsewhere = IpInfo(ip=a.ip, country="US", latitude=38.0, longitude=-97.0, radius_km=1000.0)
    hop = Observation(a, elsewhere, user_learning=False, tenant_learning=False).hop
    assert hop is not None
    assert (hop.latitude, hop.longitude, hop.country) == (52.3676, 4.9041, "NL")
    assert hop.radius_km == SOURCE_COORDINATES_RADIUS_KM


def test_a_sign_in_without_coordinates_falls_back_to_the_ip_lookup() -> None:
    rec = copy.deepcopy(SIGN_IN)
    rec["location"]["geoCoordinates"] = {"latitude": 0, "longitude": 0}
    a = signin_activity(rec, TENANT, NOW)
    assert a.latitude is None and a.longitude is None
    ip = IpInfo(ip=a.ip, country="NL", latitude=52.1, longitude=5.3, radius_km=150.0)
    hop = Observation(a, ip, user_learning=False, tenant_learning=False).hop
    assert hop is not None and (hop.latitude, hop.radius_km) == (52.1, 150.0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "x/../y"}, "not an Entra record id"),
        ({"id": None}, "not an Entra record id"),
        ({"userId": "12345"}, "not an object id"),
        ({"userId": None}, "no `userId`"),
        ({"createdDateTime": "1999-01-01T00:00:00Z"}, "outside 2004-01-01"),
        ({"createdDateTime": "2025-03-07T00:00:00Z"}, "outside"),  # beyond now + 1 day
        ({"createdDateTime": "yesterday"}, "not a timestamp"),
        ({"status": {"errorCode": "x"}}, "errorCode"),
        ({"userPrincipalName": 42}, "not a string"),
    ],
)
def test_bad_sign_ins_are_refused_with_a_reason(change: dict[str, object], reason: str) -> None:
    rec = {**copy.deepcopy(SIGN_IN), **change}
    with pytest.raises(RecordError, match=reason.replace("`", "`").replace("(", r"\(")):
        signin_activity(rec, TENANT, NOW)


def test_a_documented_role_assignment_is_an_admin_activity_of_its_initiator_on_its_target() -> None:
    a = audit_activity(AUDIT, TENANT, NOW)
    assert (a.source, a.event_id, a.type) == ("entra", "Directory_7KQ2M_120934871", "admin_added")
    assert a.event_name == "Add member to role" and a.category == "RoleManagement"
    assert a.actor_id == "8e3c7a51-1b2f-4d6e-9c0a-6f5e4d3c2b1a"
    assert a.target_id == "d2c4e6f8-0a1b-4c3d-8e5f-7a9b1c3d5e7f"  # `Type` read without case
    assert a.target_email == "svc-backup@contoso.example"
    assert a.administrative and a.outcome == "success" and a.ip == "203.0.113.45"


@pytest.mark.parametrize(
    ("name", "type_"),
    [
        ("Disable account", "account_deactivated"),
        ("Enable account", "account_activated"),
        ("Delete user", "account_deleted"),
        ("Reset password (by admin)", "password_reset"),
        ("Consent to application", "consent_granted"),
        ("Add service principal credentials", "credential_added"),
        ("Remove member from role", "admin_removed"),
        ("Something Microsoft adds next year", "other"),
    ],
)
def test_audit_names_map_to_vigil_types_and_unknown_ones_are_kept(name: str, type_: str) -> None:
    rec = {**copy.deepcopy(AUDIT), "activityDisplayName": name}
    assert audit_activity(rec, TENANT, NOW).type == type_


def test_an_app_initiated_failed_audit_keeps_the_app_as_actor_and_the_failure() -> None:
    rec = copy.deepcopy(AUDIT)
    rec["result"] = "failure"
    rec["initiatedBy"] = {
        "user": None,
        "app": {
            "appId": "1b730954-1685-4b74-9bfd-dac224a7b894",
            "displayName": "Provisioning",
            "servicePrincipalId": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        },
    }
    a = audit_activity(rec, TENANT, NOW)
    assert (a.actor_id, a.actor_email, a.outcome) == (
        "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "Provisioning",
        "failure",
    )


def test_an_audit_without_initiator_or_name_is_refused() -> None:
    with pytest.raises(RecordError, match="no initiator"):
        audit_activity({**AUDIT, "initiatedBy": {"user": None, "app": None}}, TENANT, NOW)
    with pytest.raises(RecordError, match="activityDisplayName"):
        audit_activity({**AUDIT, "activityDisplayName": ""}, TENANT, NOW)
