"""The one table of Workplace event names, and what normalisation derives from each (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local.sim_workplace import EVENT_FIELDS
from shared.models import Activity
from shared.workplace.events import EVENTS, UNKNOWN, kind_of
from shared.workplace.normalize import normalise
from tests.samples import envelope, value

FAILURES = {"LOGIN_FAILED", "PASSWORD_RESET_INCORRECT_CODE", "TWO_FACTOR_CODE_FAILED"}


def one(field: str, v: dict[str, Any]) -> Activity:
    (activity,) = normalise(envelope((field, v))).activities
    return activity


def test_the_simulated_tenant_and_the_table_share_the_catalogue() -> None:
    assert set(EVENT_FIELDS) <= set(EVENTS)
    assert all(kind_of(name) is not UNKNOWN for name in EVENT_FIELDS)


@pytest.mark.parametrize("name", sorted(EVENT_FIELDS))
def test_every_catalogue_event_becomes_its_activity(name: str) -> None:
    field = EVENT_FIELDS[name]
    a = one(field, value(name, target="100064094363999"))
    assert (a.type, a.event_name, a.category) == (EVENTS[name].type, name, field)
    assert a.outcome == ("failure" if name in FAILURES else "success")
    assert a.administrative == (field in ("admin", "domain", "integrations", "account", "password"))
    assert (a.ip, a.country, a.tenant_id) == ("198.51.100.7", "PL", "504942443827307")
    assert a.user_agent.startswith("Mozilla/5.0") and a.actor_email == "alice@contoso.com"


def test_interactive_impersonated_and_self_service_flags() -> None:
    assert one("login", value("LOGIN")).interactive
    assert not one("login", value("LOGIN", is_interactive=False)).interactive
    impersonated = one("login", value("LOGIN", impersonator_id="1000", impersonator_email="a@b"))
    assert (
        impersonated.impersonated and "impersonator_email" in json.loads(impersonated.raw)["value"]
    )
    assert not one("password", value("PASSWORD_CHANGED")).administrative  # on oneself


def test_unknown_names_are_kept_as_generic_activities() -> None:
    a = one("login", value("QUANTUM_LOGIN"))
    assert (a.type, a.event_name, a.outcome) == ("other", "QUANTUM_LOGIN", "success")
    b = one("brand_new_field", value("SOMETHING_ELSE"))
    assert (b.type, b.category) == ("other", "brand_new_field")
