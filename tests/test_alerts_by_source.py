"""GET /api/alerts?source=: alerts of one source (Workplace or Entra ID), over Azurite."""

from __future__ import annotations

from dataclasses import replace

from shared.services import Services
from tests.test_alerts_api import alert, get


def test_alerts_are_selected_by_their_source(svc: Services) -> None:
    svc.alerts.save(alert(1))
    svc.alerts.save(replace(alert(2, user="3f2504e0-4f89-41d3-9a0c-0305e82c3301"), source="entra"))
    status, body = get(source="entra")
    assert status == 200
    assert [(a["id"], a["serviceSource"]) for a in body["value"]] == [("a002", "entra")]
    status, body = get(source="workplace")
    assert [a["id"] for a in body["value"]] == ["a001"]
    status, body = get()
    assert sorted(a["id"] for a in body["value"]) == ["a001", "a002"]
