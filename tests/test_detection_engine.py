"""Detection over stored activities on Azurite: alerts, dedup, governance requests, concurrency."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import services
from shared import storage as st
from shared.activities import ActivityBatch
from shared.detection.alert_writer import DetectionResult
from shared.detection.engine import run_batch
from shared.detection.state import ProfileStore, StateConflict
from shared.governance.message import ActionRequest
from shared.ipintel.tor import TorEntry
from shared.models import Activity, UserRecord
from shared.services import Services
from shared.workplace.normalize import normalise
from tests.conftest import use_simulated_graph
from tests.detect_samples import T0, TENANT, act
from tests.samples import envelope, failed_logins, value


def detect(
    svc: Services, batches: list[ActivityBatch], sent: list[ActionRequest]
) -> DetectionResult:
    total = DetectionResult()
    for batch in batches:
        r = run_batch(replace(svc.detection_deps(), enqueue=sent.append, suppressions=None), batch)
        total.activities += r.activities
        total.created += r.created
        total.updated += r.updated
    return total


def test_brute_force_raises_one_alert_with_evidence_and_one_action(svc: Services) -> None:
    acts = normalise(envelope(*failed_logins(12, ip="203.0.113.5", country="BR"))).activities
    sent: list[ActionRequest] = []
    result = detect(svc, svc.activities.write(acts), sent)
    assert len(result.created) == 1
    (alert,) = svc.alerts.for_tenant(acts[0].tenant_id)
    assert alert.detector_id == "vigil.multiple_failed_logins"
    assert alert.user_email == "alice@contoso.com"
    assert alert.evidence.facts["failed_logins"] == 12
    assert alert.evidence.facts["ips"] == ["203.0.113.5"]
    assert alert.evidence.facts["countries"] == ["BR"]
    assert alert.first_activity_time == acts[0].time and alert.last_activity_time == acts[-1].time
    assert [r.action for r in sent] == ["revoke_sessions"]


def test_redelivered_batches_create_nothing_new(svc: Services) -> None:
    acts = normalise(envelope(*failed_logins(12))).activities
    batches = svc.activities.write(acts)
    sent: list[ActionRequest] = []
    detect(svc, batches, sent)
    again = detect(svc, batches + svc.activities.write(acts), sent)
    assert again.created == [] and again.updated == []
    assert len(svc.alerts.for_tenant(acts[0].tenant_id)) == 1
    assert len(sent) == 1


def test_quiet_users_and_successes_raise_nothing(svc: Services) -> None:
    changes = [*failed_logins(10), ("login", value("LOGIN"))]
    acts = normalise(envelope(*changes)).activities
    sent: list[ActionRequest] = []
    result = detect(svc, svc.activities.write(acts), sent)
    assert result.created == [] and sent == []
    assert list(svc.storage.table(st.ALERTS).list_entities()) == []


def test_a_burst_split_across_batches_is_one_alert_extended(svc: Services) -> None:
    acts = normalise(envelope(*failed_logins(30))).activities
    sent: list[ActionRequest] = []
    r1 = detect(svc, svc.activities.write(acts[:15]), sent)
    r2 = detect(svc, svc.activities.write(acts[15:]), sent)
    assert len(r1.created) == 1 and r2.created == [] and len(r2.updated) == 1
    (alert,) = svc.alerts.for_tenant(acts[0].tenant_id)
    assert alert.event_count == 30
    assert len(sent) == 1


def test_state_updates_use_etags_so_no_update_is_lost(svc: Services) -> None:
    import pytest

    from shared.detection.profiles import UserProfile
    from shared.detection.state import StateConflict

    store = svc.detection_state
    _, etag_a = store.get("c", "u")
    _, etag_b = store.get("c", "u")
    store.save("c", "u", UserProfile(), etag_a)
    with pytest.raises(StateConflict):
        store.save("c", "u", UserProfile(), etag_b)
    _, fresh = store.get("c", "u")
    store.save("c", "u", UserProfile(), fresh)
    with pytest.raises(StateConflict):
        store.save("c", "u", UserProfile(), fresh)


# --- several detections, profiles, scope, caps, policies, concurrency ----------------------


DAY = timedelta(days=1)
# Activity policies alert only on activities after their creation: these predate the samples.
CREATED = (T0 - DAY).isoformat()


def run(
    svc: Services, acts: list[Activity], sent: list[ActionRequest] | None = None
) -> DetectionResult:
    return detect(svc, svc.activities.write(acts), [] if sent is None else sent)


def with_policies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *docs: dict[str, Any]
) -> Services:
    (tmp_path / "policies.yaml").write_text(yaml.safe_dump(list(docs)))
    monkeypatch.setenv("POLICIES_PATH", str(tmp_path / "policies.yaml"))
    services.reset()
    return services.get_services()


def test_after_learning_impossible_travel_and_a_new_country_each_alert_once(svc: Services) -> None:
    history = [act(at=T0 - 10 * DAY + i * DAY, country="GB") for i in range(10)]
    run(svc, history)
    trip = [act(at=T0, country="GB"), act(at=T0 + timedelta(hours=1), country="US", ip="192.0.2.9")]
    sent: list[ActionRequest] = []
    result = run(svc, trip, sent)
    by_detector = {a.detector_id: a for a in result.created}
    assert set(by_detector) == {"vigil.impossible_travel", "vigil.infrequent_country"}
    travel = by_detector["vigil.impossible_travel"]
    assert travel.evidence.facts["countries"] == ["GB", "US"]
    assert travel.evidence.facts["radius_to_km"] == 1000  # country-only: country-sized radius
    assert travel.evidence.facts["kmh"] > 900 and travel.evidence.suppressions_evaluated
    assert by_detector["vigil.infrequent_country"].evidence.facts["new_for_org"] is True
    again = run(svc, [*trip, act(at=T0 + timedelta(hours=2), country="US", ip="192.0.2.9")])
    assert again.created == []
    assert len(svc.alerts.for_tenant(TENANT)) == 2


def test_nothing_but_the_hard_floor_alerts_during_the_learning_period(svc: Services) -> None:
    acts = [act(at=T0, country="GB"), act(at=T0 + timedelta(hours=1), country="US")]
    assert run(svc, acts).created == []


def test_the_learning_period_is_a_setting(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEARNING_PERIOD_DAYS", "0")
    services.reset()
    svc = services.get_services()
    result = run(svc, [act(at=T0, country="GB"), act(at=T0 + DAY, country="BR")])
    assert {a.evidence.facts["country"] for a in result.created} == {"GB", "BR"}


def test_scope_and_switches_come_from_the_policies_folder(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "vigil.multiple_failed_logins",
            "type": "anomaly",
            "scope": {"exclude_users": ["alice@contoso.com"]},
        },
        {"id": "vigil.infrequent_country", "type": "anomaly", "enabled": False},
    )
    fails = [act("login_failed", at=T0 + timedelta(seconds=10 * i)) for i in range(15)]
    bob = [
        act("login_failed", at=T0 + timedelta(seconds=10 * i), user="200", email="bob@contoso.com")
        for i in range(15)
    ]
    result = run(svc, fails + bob)
    assert [a.user_email for a in result.created] == ["bob@contoso.com"]


def test_the_daily_limit_caps_alerts_but_never_governance(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "vigil.anonymous_ip",
            "type": "anomaly",
            "alerting": {"daily_limit": 1},
            "governance": [{"action": "revoke_sessions", "approval_required": True}],
        },
    )
    svc.tor_exits.save({"203.0.113.50": TorEntry("203.0.113.50", T0, T0)}, T0)
    sent: list[ActionRequest] = []
    acts = [
        act(
            ip="203.0.113.50",
            user=str(u),
            email=f"u{u}@contoso.com",
            at=T0 + u * timedelta(minutes=1),
        )
        for u in range(3)
    ]
    result = run(svc, acts, sent)
    assert [a.capped for a in result.created] == [False, True, True]
    assert [(r.action, r.approval_required, r.policy_id) for r in sent] == [
        ("revoke_sessions", True, "vigil.anonymous_ip")
    ] * 3
    stored = sorted(svc.alerts.for_tenant(TENANT), key=lambda a: a.user_id)
    assert [a.capped for a in stored] == [False, True, True]


def test_an_activity_policy_from_yaml_alerts_with_its_title_and_governance(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "admin-outside",
            "type": "activity",
            "created": CREATED,
            "severity": "high",
            "title": "{event} by {user} from {ip}",
            "filters": {
                "activity.administrative": {"eq": [True]},
                "ip.category": {"neq": ["Corporate"]},
            },
            "governance": [{"action": "workplace_logout"}],
        },
    )
    sent: list[ActionRequest] = []
    result = run(svc, [act("admin_added", event="ADMIN_CREATED", administrative=True)], sent)
    (alert,) = [a for a in result.created if a.detector_id == "admin-outside"]
    assert alert.title == "ADMIN_CREATED by alice@contoso.com from 198.51.100.7"
    assert alert.severity == "high" and alert.policy_id == "admin-outside"
    assert [r.action for r in sent] == ["workplace_logout"]


def test_activity_by_a_user_deactivated_in_workplace_alerts(svc: Services) -> None:
    svc.users.save(
        UserRecord(
            TENANT, "100064094363063", "alice@contoso.com", "deactivated", deactivated_at=T0 - DAY
        )
    )
    result = run(svc, [act(at=T0)])
    (alert,) = result.created
    assert alert.detector_id == "vigil.terminated_user"


def test_concurrent_workers_on_one_user_never_lose_an_update(svc: Services) -> None:
    """Two workers read the same profile, both try to save: one conflicts, re-reads, redoes."""
    store: ProfileStore = svc.detection_state
    barrier = threading.Barrier(2, timeout=20)
    original_get, original_save = store.get_users, store.save_users
    conflicts: list[str] = []
    first_read = threading.local()

    def get(tenant: str, users: list[str]) -> Any:
        got = original_get(tenant, users)
        if not getattr(first_read, "done", False):
            first_read.done = True
            barrier.wait()  # both have read the same ETag before either saves
        return got

    def save(*args: Any) -> None:
        try:
            original_save(*args)
        except StateConflict:
            conflicts.append(threading.current_thread().name)
            raise

    monkeypatch_store(store, get, save)
    a = act(at=T0, country="GB")
    b = act(at=T0 + timedelta(hours=3), country="PL", ip="198.51.100.99")
    batches = [svc.activities.write([a]), svc.activities.write([b])]
    errors: list[BaseException] = []

    def work(batch: list[ActivityBatch]) -> None:
        try:
            detect(svc, batch, [])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(batch,)) for batch in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(conflicts) >= 1
    profile, _ = store.get(TENANT, "100064094363063")
    assert set(profile.countries) == {"GB", "PL"}
    assert {h.event_id for h in profile.hops} == {a.event_id, b.event_id}
    tenant, _ = store.get_tenant(TENANT)
    assert set(tenant.countries) == {"GB", "PL"}


def monkeypatch_store(store: ProfileStore, get: Any, save: Any) -> None:
    store.get_users = get  # type: ignore[method-assign]
    store.save_users = save  # type: ignore[method-assign]


def test_concurrent_workers_on_different_users_merge_the_tenant_profile(svc: Services) -> None:
    acts = [
        act(at=T0, country=c, user=str(i), email=f"u{i}@contoso.com")
        for i, c in enumerate(["GB", "PL", "US", "DE", "FR", "BR"])
    ]
    batches = [svc.activities.write([a]) for a in acts]
    threads = [threading.Thread(target=detect, args=(svc, b, [])) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    tenant, _ = svc.detection_state.get_tenant(TENANT)
    assert set(tenant.countries) == {"GB", "PL", "US", "DE", "FR", "BR"}


def test_a_user_disabled_in_entra_is_looked_up_through_graph(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from local.sim_graph import SimulatedGraph, SimUser

    with SimulatedGraph(state_dir=tmp_path) as graph:
        graph.add_user(
            SimUser(
                id="u-alice",
                user_principal_name="alice@contoso.com",
                mail="alice@contoso.com",
                account_enabled=False,
            )
        )
        use_simulated_graph(monkeypatch, graph)
        svc = services.get_services()
        result = run(
            svc, [act(at=T0), act(at=T0 + timedelta(minutes=5), email="bob@contoso.com", user="2")]
        )
    (alert,) = result.created
    assert alert.user_email == "alice@contoso.com"
    assert (
        alert.evidence.facts["entra"] == "disabled" and "disabled in Entra ID" in alert.description
    )


def test_entra_is_asked_about_a_batchs_users_together_and_then_remembered(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from local.sim_graph import SimulatedGraph, SimUser

    emails = [f"u{i}@contoso.com" for i in range(45)]
    with SimulatedGraph(state_dir=tmp_path) as graph:
        for i, email in enumerate(emails):
            enabled = i not in (7, 33)
            graph.add_user(SimUser(f"id-{i}", email, email, account_enabled=enabled))
        use_simulated_graph(monkeypatch, graph)
        svc = services.get_services()
        acts = [
            act(at=T0 + timedelta(seconds=i), email=e, user=str(i)) for i, e in enumerate(emails)
        ]
        result = run(svc, acts)
        calls = graph.graph_requests(include_batch_items=False)
        # 45 users: three $batch requests of at most 20 lookups, no lookup one by one.
        assert [c.path for c in calls] == ["/v1.0/$batch"] * 3
        assert sorted(a.user_email for a in result.created) == ["u33@contoso.com", "u7@contoso.com"]
        later = [
            act(at=T0 + timedelta(hours=1, seconds=i), email=e, user=str(i))
            for i, e in enumerate(emails)
        ]
        run(svc, later)
        assert len(graph.graph_requests(include_batch_items=False)) == 3  # answered from the cache


def test_a_repeated_policy_across_users_counts_the_whole_tenant(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Password spray: one failure each for many users, within minutes, from one source."""
    svc = with_policies(
        monkeypatch,
        tmp_path,
        {
            "id": "spray",
            "type": "activity",
            "created": CREATED,
            "title": "{count} failed logins across users in {window_minutes} minutes",
            "filters": {"activity.type": {"eq": ["login_failed"]}},
            "match": {"mode": "repeated", "count": 8, "window_minutes": 10, "same_user": False},
        },
    )
    spray = [
        act("login_failed", at=T0 + timedelta(seconds=30 * i), user=str(i), email=f"u{i}@c.com")
        for i in range(12)
    ]
    first = run(svc, spray[:6])
    second = run(svc, spray[6:])
    assert first.created == [] and [a.detector_id for a in second.created] == ["spray"]
    (alert,) = svc.alerts.for_tenant(TENANT)
    assert alert.event_count == 12 and alert.title == "12 failed logins across users in 10 minutes"
    assert run(svc, spray).created == []  # redelivered: nothing new


def test_every_profile_field_survives_the_table_round_trip(svc: Services) -> None:
    from shared.detection.profiles import (
        BurstState,
        Failure,
        Hop,
        OpenBurst,
        Seen,
        TenantProfile,
        UserProfile,
    )

    seen = {"GB": Seen(T0 - DAY, T0, 2)}
    burst = BurstState((Failure(T0, "e1", "192.0.2.1", "GB"),), OpenBurst("a1", T0, T0, 1))
    profile = UserProfile(
        first_seen=T0 - 9 * DAY,
        countries=seen,
        isps={"Example": Seen(T0, T0)},
        hops=(Hop(T0, "e1", "192.0.2.1", "GB", 54.0, -2.0, 279.0, "Example", True, False),),
        admin={"ADMIN_CREATED": Seen(T0, T0)},
        impersonated={"SEND_AS": Seen(T0, T0)},
        failed=burst,
        failed_peaks={"2026-03-02": 4},
        repeated={"p": burst},
        alerts={"a1": T0},
    )
    svc.detection_state.save(TENANT, "u", profile, None)
    assert svc.detection_state.get(TENANT, "u")[0] == profile
    tenant = TenantProfile(T0, {"GB": T0}, {"Example": T0}, {"192.0.2.9": ("u",)})
    svc.detection_state.save_tenant(TENANT, tenant, None)
    assert svc.detection_state.get_tenant(TENANT)[0] == tenant


def test_a_worker_remembers_profiles_it_saved_and_a_stale_one_is_redone(svc: Services) -> None:
    """Each worker keeps the profiles it read or saved (with their ETags): seeing the user again
    reads nothing. When another worker saved in between, the save conflicts, the user is dropped
    from the cache and the batch is redone from a fresh read: no update is lost."""
    table = svc.storage.table(st.DETECTION_STATE)
    worker_a, worker_b = ProfileStore(table), ProfileStore(table)
    reads: list[str] = []

    def count(request: Any) -> None:
        http = request.http_request
        if http.method == "GET" and st.DETECTION_STATE in http.url and "user_" in http.url:
            reads.append(http.url)

    def on(store: ProfileStore, a: Activity) -> None:
        deps = replace(svc.detection_deps(), state=store, enqueue=lambda _: None, suppressions=None)
        run_batch(deps, svc.activities.write([a])[0])

    first = act(at=T0, country="GB")
    second = act(at=T0 + timedelta(hours=1), country="GB", ip="198.51.100.8")
    by_b = act(at=T0 + timedelta(hours=2), country="PL", ip="198.51.100.99")
    last = act(at=T0 + timedelta(hours=3), country="US", ip="198.51.100.100")
    st.REQUEST_HOOKS.append(count)
    try:
        on(worker_a, first)
        assert len(reads) == 1  # not cached yet: read (nothing there)
        on(worker_a, second)  # created by worker A's first save: remembered with its ETag
        assert len(reads) == 1
        on(worker_b, by_b)  # another worker: reads the row and saves over it
        assert len(reads) == 2
        on(worker_a, last)  # A's copy is stale: its save conflicts, it reads again and redoes
        assert len(reads) == 3
    finally:
        st.REQUEST_HOOKS.remove(count)
    profile, _ = worker_a.get(TENANT, first.actor_id)
    assert set(profile.countries) == {"GB", "PL", "US"}
    assert {h.event_id for h in profile.hops} >= {second.event_id, by_b.event_id, last.event_id}


def test_the_profile_cache_is_bounded(svc: Services) -> None:
    store = ProfileStore(svc.storage.table(st.DETECTION_STATE), cached_profiles=2)
    from shared.detection.profiles import UserProfile

    store.save_users(TENANT, [(u, UserProfile(), None) for u in ("1", "2", "3")])
    assert [u for (_, u) in store._cached] == ["2", "3"]
    store.get_users(TENANT, ["1"])  # read back in, and the least recently used goes out
    assert [u for (_, u) in store._cached] == ["3", "1"]
