"""Suppressions: the pure decision, and detection honouring an analyst's resolve-and-suppress
on Azurite (then its removal)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from shared import analyst_api as api
from shared.access import AUTOMATION
from shared.detection.base import Finding
from shared.detection.engine import run_batch
from shared.governance.message import ActionRequest
from shared.models import utc
from shared.query_params import BadInput
from shared.services import Services
from shared.suppressions import Suppression, apply_suppressions, distinguishing
from shared.workplace.normalize import normalise
from tests.detect_samples import T0
from tests.samples import envelope, failed_logins


def finding(country: str = "RU", ip: str = "203.0.113.9", at_days: int = 1) -> Finding:
    t = T0 + timedelta(days=at_days)
    return Finding(
        detector_id="vigil.infrequent_country",
        window="w",
        title="Activity from infrequent country",
        description="",
        severity="medium",
        category="InitialAccess",
        mitre_techniques=(),
        facts={"country": country, "ip": ip},
        first=t,
        last=t,
        activity_ids=("e1",),
    )


def suppression(**kw: object) -> Suppression:
    fields: dict[str, object] = {
        "id": "s1",
        "tenant_id": "t",
        "detector_id": "vigil.infrequent_country",
        "user_id": "u1",
        "kind": "country",
        "value": "RU",
        "start": T0,
        "until": T0 + timedelta(days=7),
    }
    fields.update(kw)
    return Suppression(**fields)  # type: ignore[arg-type]


def test_the_distinguishing_value_per_detector() -> None:
    assert distinguishing("vigil.infrequent_country", {"country": "ru", "ip": "1.2.3.4"}) == (
        "country",
        "RU",
    )
    assert distinguishing("vigil.anonymous_ip", {"ip": "203.0.113.9", "country": "NL"}) == (
        "IP range",
        "203.0.113.0/24",
    )
    assert distinguishing("vigil.unusual_admin", {"action": "ADMIN_CREATE_USER"}) == (
        "admin action",
        "ADMIN_CREATE_USER",
    )
    assert distinguishing("vigil.multiple_failed_logins", {"ips": ["1.2.3.4"]}) == ("user", "")


def test_a_covered_finding_is_dropped_and_a_considered_one_names_the_suppression() -> None:
    s = suppression()
    assert apply_suppressions([("u1", finding("RU"))], [s]) == []
    ((_, other),) = apply_suppressions([("u1", finding("BR"))], [s])
    (note,) = other.suppressions_evaluated
    assert "suppression s1" in note and "not this country (BR)" in note
    # Another user, another detector, or outside the suppression's event time: untouched.
    for user, f in [
        ("u2", finding("RU")),
        ("u1", finding("RU", at_days=8)),
        ("u1", Finding(**{**finding("RU").__dict__, "detector_id": "vigil.anonymous_ip"})),
    ]:
        assert apply_suppressions([(user, f)], [s]) == [(user, f)]
    ranged = suppression(kind="IP range", value="203.0.113.0/24",
                         detector_id="vigil.infrequent_country")  # fmt: skip
    assert apply_suppressions([("u1", finding("BR", ip="203.0.113.200"))], [ranged]) == []


def test_resolving_as_false_positive_with_suppress_stops_the_next_alert_until_removed(
    svc: Services,
) -> None:
    sent: list[ActionRequest] = []

    def burst(days: int) -> int:
        start = T0 + timedelta(days=days)
        acts = normalise(envelope(*failed_logins(12, start=start))).activities
        created = 0
        for batch in svc.activities.write(acts):  # as detect_queue runs it
            created += len(
                run_batch(replace(svc.detection_deps(), enqueue=sent.append), batch).created
            )
        return created

    assert burst(0) == 1
    (alert,) = svc.alerts.for_tenant(svc.alerts.page().alerts[0].tenant_id)
    body = {"status": "resolved", "classification": "falsePositive", "suppress": {"days": 7}}
    reply = api.patch_alert(
        svc.analyst_deps, alert.id, json.dumps(body).encode(), "", AUTOMATION, T0
    )
    assert reply.status == 200
    (made,) = svc.suppressions.all()
    assert (made.user_id, made.detector_id, made.kind) == (
        alert.user_id,
        "vigil.multiple_failed_logins",
        "user",
    )
    assert made.until == utc(alert.last_activity_time) + timedelta(days=7)
    listed = json.loads(api.list_suppressions(svc.analyst_deps, {}).body)["value"]
    assert [s["id"] for s in listed] == [made.id] and listed[0]["createdBy"] == "automation key"

    assert burst(2) == 0  # within the 7 days of event time: suppressed
    assert burst(9) == 1  # after them: raised again
    newest = svc.alerts.page(limit=1).alerts[0]
    again = api.patch_alert(
        svc.analyst_deps, newest.id, json.dumps(body).encode(), "", AUTOMATION, T0
    )
    assert again.status == 200
    second = next(s for s in svc.suppressions.all() if s.alert_id == newest.id)
    assert api.delete_suppression(svc.analyst_deps, second.id, AUTOMATION, T0).status == 204
    assert api.delete_suppression(svc.analyst_deps, second.id, AUTOMATION, T0).status == 404
    assert burst(12) == 1  # within the second one's days, but it was removed: raised
    audit = json.loads(api.list_audit(svc.analyst_deps, {}).body)["value"]
    assert sorted(e["command"] for e in audit) == [
        "alert.update",
        "alert.update",
        "suppression.create",
        "suppression.create",
        "suppression.delete",
    ]


def test_suppress_needs_a_benign_resolution(svc: Services) -> None:
    for body in (
        {"status": "resolved", "classification": "truePositive", "suppress": {"days": 7}},
        {"status": "resolved", "classification": "falsePositive", "suppress": {"days": 0}},
        {"status": "resolved", "classification": "falsePositive", "suppress": 7},
    ):
        try:
            api.patch_alert(svc.analyst_deps, "x", json.dumps(body).encode(), "", AUTOMATION, T0)
        except BadInput as bad:
            assert "suppress" in str(bad)
        else:
            raise AssertionError(f"accepted {body}")
