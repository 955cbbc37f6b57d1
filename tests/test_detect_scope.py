"""Scope by Workplace group on Azurite: memberships from the directory sync reach the engine, and
include/exclude by group id or name decide who alerts (MDCA: exclusion wins)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from local.sim_workplace import SimulatedWorkplace
from shared.ipintel.tor import TorEntry
from shared.models import Activity, UserRecord
from shared.workplace.directory_sync import sync_installs
from tests.detect_samples import T0, TENANT, act
from tests.test_detection_engine import CREATED, run, with_policies
from tests.test_directory_sync import TRAVELLERS, install

TOR = "203.0.113.50"


def test_a_builtin_scoped_by_groups_alerts_for_included_members_unless_excluded(
    vigil_env: dict[str, str],
    wp: SimulatedWorkplace,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "vigil.anonymous_ip",
            "type": "anomaly",
            # By name in another case, and by id.
            "scope": {"include_groups": ["it ADMINS"], "exclude_groups": [TRAVELLERS]},
        },
        # Off, so only the group scope makes the engine look the users up.
        {"id": "vigil.terminated_user", "type": "anomaly", "enabled": False},
    )
    megan, diego, alex, adele = (
        wp.member(f"{name}@contoso.com")
        for name in ("megan.bowen", "diego.siciliani", "alex.wilber", "adele.vance")
    )
    wp.group(TRAVELLERS).member_ids.append(diego.id)  # an IT admin who also travels
    assert wp.community_id == TENANT
    install(svc, wp)
    (synced,) = sync_installs(svc.directory_sync_deps, T0 - timedelta(hours=1))
    assert synced.outcome == "synced"
    svc.tor_exits.save({TOR: TorEntry(TOR, T0, T0)}, T0)
    acts = [act(at=T0, ip=TOR, user=m.id, email=m.email) for m in (megan, diego, alex, adele)]
    result = run(svc, acts)
    # Megan: in IT Admins. Diego: in it too, but excluded as a traveller. Alex: a traveller
    # only. Adele: in neither.
    assert [a.user_email for a in result.created] == [megan.email]


def test_an_activity_policy_scoped_by_groups_per_user_and_across_the_tenant(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "admin-not-by-it",
            "type": "activity",
            "created": CREATED,
            "title": "{event} by {user}",
            "filters": {"activity.administrative": {"eq": [True]}},
            "scope": {"exclude_groups": ["it admins"]},
        },
        {
            "id": "sales-spray",
            "type": "activity",
            "created": CREATED,
            "title": "{count} failed logins in Sales",
            "filters": {"activity.type": {"eq": ["login_failed"]}},
            "match": {"mode": "repeated", "count": 3, "window_minutes": 10, "same_user": False},
            "scope": {"include_groups": ["SALES"]},
        },
    )
    svc.groups.replace(TENANT, {"g-it": "IT Admins", "g-sales": "Sales"})
    people = {"1": ("g-it",), "2": (), "3": ("g-sales",), "4": ("g-sales", "g-it"), "5": ()}
    svc.users.save_many(
        [UserRecord(TENANT, u, f"u{u}@contoso.com", groups=g) for u, g in people.items()]
    )

    def by(user: str, kind: str, minute: int, **extra: Any) -> Activity:
        return act(
            kind,
            at=T0 + timedelta(minutes=minute),
            user=user,
            email=f"u{user}@contoso.com",
            **extra,
        )

    admin = [by(u, "admin_added", 0, event="ADMIN_CREATED", administrative=True) for u in "12"]
    result = run(svc, admin)
    assert [(a.detector_id, a.user_id) for a in result.created] == [("admin-not-by-it", "2")]

    # Two failures each for two Sales members and two others: only the Sales four count.
    fails = [by(u, "login_failed", i + int(u)) for u in "3452" for i in range(2)]
    result = run(svc, fails)
    (spray,) = result.created
    assert spray.detector_id == "sales-spray" and spray.event_count == 4
    ids = {a.event_id for a in fails if a.actor_id in ("3", "4")}
    assert set(spray.evidence.activity_ids) == ids
