"""Activity policies as YAML: validation that names file, policy and field; MDCA operators."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import ConfigError
from shared.detection.policy_findings import policy_findings
from shared.detection.profiles import UserProfile
from shared.ipintel import IpInfo
from shared.policies import SHIPPED, ActivityPolicy, load_policies, parse
from shared.policy_filters import OPERATORS, compile_filters
from tests.detect_samples import T0, act, replay


def policy(**fields: Any) -> ActivityPolicy:
    doc = {"id": "p", "type": "activity", "title": "{event} by {user}", **fields}
    (p,) = parse(doc, "test.yaml").activity
    return p


def test_the_shipped_folder_switches_every_builtin_and_ships_templates_off() -> None:
    shipped = load_policies(None)
    assert len(shipped.anomaly) == 8 and all(c.enabled for c in shipped.anomaly.values())
    assert {p.id for p in shipped.activity} == {
        "template.brute_force",
        "template.admin_from_non_corporate_ip",
        "template.login_from_risky_ip",
        "template.mass_account_changes",
    }
    assert not any(p.config.enabled for p in shipped.activity)
    brute = next(p for p in shipped.activity if p.id == "template.brute_force")
    assert (brute.match.count, brute.match.window) == (11, timedelta(minutes=5))
    assert [s.action for s in brute.config.governance] == ["revoke_sessions"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"filters": {"activity.colour": {"eq": ["x"]}}},
            "field `filters.activity.colour`: unknown field",
        ),
        (
            {"filters": {"activity.type": {"like": ["x"]}}},
            "field `filters.activity.type`: unknown operator",
        ),
        ({"filters": {"activity.type": {"isset": "yes"}}}, "`filters.activity.type.isset`"),
        ({"filters": {"ip.category": {"eq": ["Friendly"]}}}, "unknown IP category"),
        ({"governance": [{"action": "delete_user"}]}, "field `governance`: unknown action"),
        ({"title": "{who} did it"}, "field `title`: unknown placeholders ['who']"),
        ({"severity": "critical"}, "field `severity`"),
        ({"match": {"mode": "repeated", "count": 1, "window_minutes": 5}}, "field `match.count`"),
        (
            {"match": {"mode": "repeated", "count": 5, "window_minutes": 5, "same_user": "no"}},
            "field `match.same_user`",
        ),
        ({"alerting": {"daily_limit": -1}}, "field `alerting.daily_limit`"),
        ({"scope": {"groups": ["x"]}}, "field `scope`: unknown keys ['groups']"),
        ({"scope": ["sales"]}, "field `scope`: expected a mapping"),
        (
            {"scope": {"include_groups": "Sales"}},
            "field `scope.include_groups`: expected a list of Workplace group ids or names",
        ),
        (
            {"scope": {"exclude_groups": ["Sales", " "]}},
            "field `scope.exclude_groups`: ' ' is not a group id or name",
        ),
        (
            {"scope": {"exclude_groups": [{"name": "Sales"}]}},
            "field `scope.exclude_groups`: {'name': 'Sales'} is not a group id or name",
        ),
        ({"created": "last tuesday"}, "field `created`: 'last tuesday' is not an ISO-8601"),
        (
            {"created": "2026-03-01T09:00:00"},
            "field `created`: 2026-03-01T09:00:00 has no time zone",
        ),
        ({"created": 20260301}, "field `created`: expected an ISO-8601 timestamp"),
        (
            {"alerting": {"daily_limit": 20_000}},
            "field `alerting.daily_limit`: expected an integer of at most 10000",
        ),
        ({"colour": "red"}, "unknown fields ['colour']"),
    ],
)
def test_invalid_policies_name_the_file_the_policy_and_the_field(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        policy(**fields)
    assert str(err.value).startswith("test.yaml: policy p")
    assert message in str(err.value)


def test_ids_that_cannot_key_a_table_row_and_anomaly_creation_times_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^test.yaml: policy a/b, field `id`: may not contain"):
        parse({"id": "a/b", "type": "activity", "title": "t"}, "test.yaml")
    with pytest.raises(
        ConfigError, match=r"^test.yaml: policy vigil.anonymous_ip: unknown fields \['created'\]"
    ):
        parse(
            {"id": "vigil.anonymous_ip", "type": "anomaly", "created": "2026-03-01T00:00:00Z"},
            "test.yaml",
        )


def test_scopes_take_groups_by_id_or_by_name_in_any_case() -> None:
    p = policy(
        scope={
            "include_groups": ["Frequent Travellers", 1564880947340002],
            "exclude_groups": ["IT Admins"],
            "include_users": ["Bob@Contoso.com"],
        }
    )
    cfg = p.config
    assert cfg.include_groups == {"frequent travellers", "1564880947340002"}
    assert cfg.exclude_groups == {"it admins"}
    assert cfg.scoped and cfg.scopes_groups
    assert not policy().config.scoped and not policy().config.scopes_groups


def test_created_is_an_iso_timestamp_in_utc_from_yaml_or_a_string() -> None:
    from datetime import UTC, datetime

    assert policy().created is None  # absent: the deployment records its first load
    parsed = yaml.safe_load("created: 2026-03-01T10:00:00+01:00")["created"]
    assert policy(created=parsed).created == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert policy(created="2026-03-01T09:00:00Z").created == datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_a_folder_with_duplicate_ids_or_bad_yaml_is_refused(tmp_path: Path) -> None:
    doc = {"id": "x", "type": "activity", "title": "t"}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump([doc]))
    with pytest.raises(ConfigError, match=r"b.yaml: policy x: field `id` is also used in .*a.yaml"):
        load_policies(str(tmp_path))
    (tmp_path / "b.yaml").write_text("id: [unclosed")
    with pytest.raises(ConfigError, match="b.yaml: not valid YAML"):
        load_policies(str(tmp_path))
    with pytest.raises(ConfigError, match="POLICIES_PATH"):
        load_policies(str(tmp_path / "missing"))


INFO = IpInfo("198.51.100.7", country="GB", category="corporate", tags=("office", "London"))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"activity.type": {"eq": ["LOGIN"]}}, True),  # case-insensitive
        ({"activity.type": {"neq": ["login"]}}, False),
        ({"target.username": {"neq": ["bob@contoso.com"]}}, True),  # neq keeps a missing field
        ({"target.username": {"isset": True}}, False),
        ({"target.username": {"isnotset": True}}, True),
        ({"user.username": {"endswith": ["@contoso.com"]}}, True),
        ({"user.username": {"startswith": ["bob"]}}, False),
        ({"user.domain": {"eq": ["contoso.com"]}}, True),
        ({"userAgent.userAgent": {"contains": ["firefox"]}}, True),
        ({"ip.address": {"range": ["198.51.100.0/24"]}}, True),
        ({"ip.address": {"range": ["203.0.113.0/24"]}}, False),
        ({"ip.category": {"eq": [1]}}, True),  # MDCA's id for Corporate
        ({"ip.category": {"neq": ["Corporate"]}}, False),
        ({"ip.tags": {"eq": ["london"]}}, True),
        ({"location.country": {"eq": ["GB", "IE"]}}, True),
        ({"activity.administrative": {"eq": [True]}}, False),
        ({"activity.type": {"eq": ["login"]}, "location.country": {"eq": ["US"]}}, False),  # AND
    ],
)
def test_filters_use_mdca_operators(filters: dict[str, Any], expected: bool) -> None:
    a = act(user_agent="Mozilla/5.0 Firefox/86.0")
    assert policy(filters=filters).matches(a, INFO) is expected


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"user.password": {"eq": ["x"]}}, r"`filters.user.password`: unknown field"),
        ({"user.id": {"like": ["x"]}}, r"`filters.user.id`: unknown operator 'like'"),
        ({"ip.address": {"range": ["not-a-cidr"]}}, r"`filters.ip.address.range`: `range` takes"),
        ({"user.id": {"isset": "yes"}}, r"`filters.user.id.isset`: `isset` takes true or false"),
        ({"ip.category": {"eq": ["Lunar"]}}, r"`filters.ip.category.eq`: unknown IP category"),
    ],
)
def test_the_filter_language_compiles_alone_and_names_the_filter(
    filters: dict[str, Any], message: str
) -> None:
    (predicate,) = compile_filters({"activity.type": {"eq": ["login"]}}, "p")
    assert predicate(act(), INFO) and not predicate(act("logout"), INFO)
    with pytest.raises(ConfigError, match=r"^p: policy x, field " + message):
        compile_filters(filters, "p: policy x")


def test_the_readme_lists_the_filter_operators() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    listed = readme.split("Operators (`shared/policy_filters.py`): ", 1)[1].split(" (CIDRs)")[0]
    assert [op.strip().strip("`") for op in listed.replace("\n", " ").split(",")] == list(OPERATORS)


def test_a_single_activity_policy_alerts_on_every_match_with_its_title() -> None:
    p = policy(severity="high")
    _, found = policy_findings(p, UserProfile(), obs_of(act()))
    (f,) = found
    assert f.title == "LOGIN by alice@contoso.com" and f.severity == "high" and f.policy_id == "p"


def test_a_repeated_policy_alerts_once_per_burst_of_n_within_m_minutes() -> None:
    p = policy(
        title="{count} failures for {user} in {window_minutes} min",
        filters={"activity.type": {"eq": ["login_failed"]}},
        match={"mode": "repeated", "count": 11, "window_minutes": 5, "same_user": True},
    )
    acts = [act("login_failed", at=T0 + timedelta(seconds=20 * i)) for i in range(14)]

    def detect(profile: UserProfile, tenant: Any, obs: Any, cfg: Any) -> Any:
        return (
            policy_findings(p, profile, obs) if p.matches(obs.activity, obs.ip) else (profile, [])
        )

    _, found = replay(detect, acts[:10])
    assert found == []
    _, found = replay(detect, acts)
    assert [f.extends for f in found] == [False, True, True, True]
    assert found[0].title == "11 failures for alice@contoso.com in 5 min"
    assert len({f.window for f in found}) == 1 and found[-1].event_count == 14


def obs_of(a: Any) -> Any:
    from shared.detection.base import Observation

    return Observation(a, INFO, user_learning=False, tenant_learning=False)


def test_shipped_templates_are_valid_yaml_files() -> None:
    for f in SHIPPED.glob("*.yaml"):
        assert yaml.safe_load(f.read_text()) is not None, f


@pytest.mark.parametrize(
    ("scope", "groups", "expected"),
    [
        ({}, set(), True),  # no scope: everyone
        ({"include_groups": ["it admins"]}, {"1", "it admins"}, True),
        ({"include_groups": ["it admins"]}, {"2", "sales"}, False),  # in other groups only
        ({"include_groups": ["it admins"]}, set(), False),  # in no group (or not synced yet)
        ({"include_groups": ["1"]}, {"1", "it admins"}, True),  # by id
        ({"exclude_groups": ["sales"]}, {"2", "sales"}, False),
        ({"exclude_groups": ["sales"]}, set(), True),
        # Exclusion wins, even over an included group or an included user.
        (
            {"include_groups": ["it admins"], "exclude_groups": ["2"]},
            {"1", "it admins", "2"},
            False,
        ),
        ({"include_users": ["alice@contoso.com"], "exclude_groups": ["sales"]}, {"sales"}, False),
        # Included users and included groups add up.
        ({"include_users": ["alice@contoso.com"], "include_groups": ["sales"]}, set(), True),
        ({"include_users": ["bob@contoso.com"], "include_groups": ["sales"]}, {"sales"}, True),
        ({"include_users": ["bob@contoso.com"], "include_groups": ["sales"]}, {"hr"}, False),
        ({"exclude_users": ["alice@contoso.com"], "include_groups": ["sales"]}, {"sales"}, False),
    ],
)
def test_scope_by_user_and_group_follows_mdca(
    scope: dict[str, Any], groups: set[str], expected: bool
) -> None:
    cfg = policy(scope=scope).config
    assert cfg.in_scope(act(), frozenset(groups)) is expected


def failed_logins(params: dict[str, Any]) -> dict[str, Any]:
    return {"id": "vigil.multiple_failed_logins", "type": "anomaly", "params": params}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (failed_logins({"threshold": 0}), "field `params.threshold`: expected an integer from 1"),
        (failed_logins({"threshold": "ten"}), "field `params.threshold`: expected an integer"),
        (failed_logins({"threshold": 2.5}), "field `params.threshold`: expected an integer"),
        (failed_logins({"threshold": True}), "field `params.threshold`: expected an integer"),
        (
            failed_logins({"window_minutes": -5}),
            "field `params.window_minutes`: expected an integer from 1 to 1440 (minutes",
        ),
        (failed_logins({"window_minutes": 100_000}), "field `params.window_minutes`"),
        (failed_logins({"treshold": 5}), "field `params.treshold`: unknown parameter"),
        (
            {"id": "vigil.anonymous_ip", "type": "anomaly", "params": {"threshold": 5}},
            "field `params.threshold`: unknown parameter (accepted: none)",
        ),
        (
            {"id": "vigil.impossible_travel", "type": "anomaly", "sensitivity": "extreme"},
            "field `sensitivity`: one of low, medium, high",
        ),
        (
            {"id": "vigil.anonymous_ip", "type": "anomaly", "governance": [{"action": "nuke"}]},
            "field `governance`: unknown action 'nuke'",
        ),
        (
            {
                "id": "vigil.anonymous_ip",
                "type": "anomaly",
                "governance": [{"action": "revoke_sessions", "approval_required": "yes"}],
            },
            "field `governance.approval_required`: true or false",
        ),
        (
            {
                "id": "vigil.anonymous_ip",
                "type": "anomaly",
                "governance": [{"action": "revoke_sessions", "approve": True}],
            },
            "field `governance`: unknown keys ['approve']",
        ),
        ({"id": "vigil.no_such_thing", "type": "anomaly"}, "field `id`: names no built-in"),
    ],
)
def test_builtin_parameters_are_checked_at_load_with_the_field_named(
    doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse(doc, "builtin.yaml")
    assert str(err.value).startswith(f"builtin.yaml: policy {doc['id']}")
    assert message in str(err.value)


def test_valid_builtin_parameters_reach_the_detection() -> None:
    doc = failed_logins({"threshold": 3, "window_minutes": 10, "baseline_minimum": 2})
    cfg = parse(doc, "builtin.yaml").anomaly["vigil.multiple_failed_logins"]
    assert cfg.params == {"threshold": 3, "window_minutes": 10, "baseline_minimum": 2}


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "shared.policies", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )


def test_the_check_command_passes_the_shipped_policies() -> None:
    done = run_check("check", str(SHIPPED))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("OK") for line in lines)
    assert "builtin.yaml: 8 policies" in lines[0]


def test_the_check_command_names_each_bad_file_and_fails(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump([failed_logins({"threshold": 0})]))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(failed_logins({"window_minutes": -5})))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(failed_logins({"threshold": 4})))
    done = run_check("check", str(tmp_path))
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2
    assert "a.yaml: policy vigil.multiple_failed_logins, field `params.threshold`" in errors[0]
    assert "b.yaml: policy vigil.multiple_failed_logins, field `params.window_minutes`" in errors[1]
    assert any(line.startswith("OK") and "c.yaml" in line for line in done.stdout.splitlines())


def test_the_check_command_refuses_duplicates_a_missing_path_and_bad_usage(
    tmp_path: Path,
) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(failed_logins({"threshold": 4})))
    done = run_check("check", str(tmp_path))
    assert done.returncode == 1 and "field `id` is also used in" in done.stdout
    assert run_check("check", str(tmp_path / "missing")).returncode == 1
    assert run_check("lint").returncode == 2


def test_a_bad_policy_file_is_refused_when_detection_loads(
    vigil_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from shared import services

    (tmp_path / "builtin.yaml").write_text(yaml.safe_dump([failed_logins({"threshold": "ten"})]))
    monkeypatch.setenv("POLICIES_PATH", str(tmp_path))
    services.reset()
    svc = services.get_services()
    with pytest.raises(ConfigError, match=r"builtin.yaml: policy .*field `params.threshold`"):
        _ = svc.detections
    # A detection message meanwhile waits for the fix: put back for later, not retried to poison.
    from azure.functions.queue import QueueMessage

    from detect_queue import detect_queue

    (batch,) = svc.activities.write([act("login_failed")])
    queue = svc.storage.queue(vigil_env["ACTIVITY_QUEUE"])
    message = QueueMessage(id="m1", body=batch.to_message().encode(), dequeue_count=1)
    detect_queue.build().get_user_function()(message)
    assert queue.get_queue_properties().approximate_message_count == 1
    assert list(queue.peek_messages()) == []  # invisible until the retry delay has passed
