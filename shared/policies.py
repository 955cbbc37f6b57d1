"""Policies as code: the YAML schema of the policies folder (POLICIES_PATH), its loader and CLI.

Before deploying a change: `python -m shared.policies check PATH` (a folder or one file)
prints each file's policies, or what is wrong and where; it exits 1 on any error.

Two kinds share one file format (a mapping, or a list of them):

- `type: anomaly` switches and tunes a built-in detection (`id` is the detector id): `enabled`,
  `scope`, `sensitivity`, `severity`, `alerting.daily_limit`, `governance`, `params`.
- `type: activity` is a custom activity policy in MDCA's shape: `filters` over activity fields
  with MDCA's operators (the filter language, `shared/policy_filters.py`), `match` (single
  activity, or repeated: `count` activities within `window_minutes`, by the same user),
  `severity`, a `title` template and `governance`; it alerts only on activities from its
  `created` time on (when absent, the deployment records the time it first loaded the policy:
  `shared/policy_creation.py`).

`scope` (both kinds) takes `include_users`, `exclude_users` (ids or e-mails) and
`include_groups`, `exclude_groups` (Workplace group ids or names, names case-insensitive).

Errors raised at load name the file, the policy and the field.
"""

from __future__ import annotations

import string
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from shared.config import ConfigError
from shared.detection.base import DetectorConfig, GovernanceStep
from shared.detection.builtins import DETECTOR_IDS
from shared.detection.params import check_params
from shared.governance.actions import ACTIONS
from shared.ipintel import IpInfo
from shared.models import Activity, Severity
from shared.policy_filters import Predicate, allowed_types, compile_filters

SHIPPED = Path(__file__).resolve().parents[1] / "policies"
SEVERITIES = ("informational", "low", "medium", "high")
SCOPE_KEYS = ("include_users", "exclude_users", "include_groups", "exclude_groups")
MAX_DAILY_LIMIT = 10_000  # the admitted alert ids of a day are kept in one table entity
ID_FORBIDDEN = "/\\#?"  # ids key table rows, whose keys may not hold these
SENSITIVITIES = ("low", "medium", "high")
TITLE_FIELDS = frozenset(
    {"policy", "user", "user_id", "ip", "country", "event", "count", "window_minutes", "target"}
)


@dataclass(frozen=True)
class Match:
    mode: str = "single"  # single | repeated
    count: int = 1  # repeated: at least this many...
    window: timedelta = timedelta(minutes=5)  # ...within this long (event time)
    same_user: bool = True


@dataclass(frozen=True)
class ActivityPolicy:
    id: str
    config: DetectorConfig
    predicates: tuple[Predicate, ...]
    match: Match
    title: str
    description: str
    severity: Severity
    source: str  # the file it came from
    types: frozenset[str] | None = None  # from an `activity.type: {eq: [...]}` filter
    # Alerts only on activities at or after this (event time); None: on every activity.
    created: datetime | None = None

    def matches(self, a: Activity, ip: IpInfo) -> bool:
        return all(p(a, ip) for p in self.predicates)


@dataclass(frozen=True)
class PolicySet:
    anomaly: dict[str, DetectorConfig] = field(default_factory=dict)
    activity: tuple[ActivityPolicy, ...] = ()


def _governance(raw: Any, where: str) -> tuple[GovernanceStep, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}, field `governance`: expected a list of {{action: ...}}")
    steps = []
    for step in raw:
        action = step.get("action") if isinstance(step, dict) else step
        if not isinstance(action, str) or action not in ACTIONS:
            raise ConfigError(
                f"{where}, field `governance`: unknown action {action!r} "
                f"(known: {', '.join(ACTIONS)})"
            )
        unknown = sorted(set(step) - GOVERNANCE_STEP_KEYS) if isinstance(step, dict) else []
        if unknown:
            raise ConfigError(
                f"{where}, field `governance`: unknown keys {unknown} (known: action, "
                "approval_required)"
            )
        approval = step.get("approval_required", False) if isinstance(step, dict) else False
        if not isinstance(approval, bool):
            raise ConfigError(f"{where}, field `governance.approval_required`: true or false")
        steps.append(GovernanceStep(action, approval))
    return tuple(steps)


def _users(raw: Any, at: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise ConfigError(f"{at}: expected a list of user ids or e-mail addresses")
    return frozenset(str(u).lower() for u in raw)


def _groups(raw: Any, at: str) -> frozenset[str]:
    """Group ids or names; lower-cased, as the directory lookup gives a user's group names."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        raise ConfigError(f"{at}: expected a list of Workplace group ids or names")
    out = set()
    for g in raw:
        if isinstance(g, bool) or not isinstance(g, str | int) or not str(g).strip():
            raise ConfigError(f"{at}: {g!r} is not a group id or name")
        out.add(str(g).strip().lower())
    return frozenset(out)


def _int(raw: Any, at: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < minimum:
        raise ConfigError(f"{at}: expected an integer of at least {minimum}, got {raw!r}")
    if maximum is not None and raw > maximum:
        raise ConfigError(f"{at}: expected an integer of at most {maximum}, got {raw!r}")
    return int(raw)


def _created(raw: Any, at: str) -> datetime | None:
    """An ISO-8601 timestamp with its time zone (YAML may already have parsed it)."""
    if raw is None:
        return None
    example = "e.g. 2026-03-01T09:00:00Z"
    if isinstance(raw, str):
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ConfigError(f"{at}: {raw!r} is not an ISO-8601 timestamp ({example})") from None
    elif isinstance(raw, datetime):
        value = raw
    else:
        raise ConfigError(f"{at}: expected an ISO-8601 timestamp with a time zone ({example})")
    if value.tzinfo is None:
        raise ConfigError(f"{at}: {raw!s} has no time zone; add one ({example})")
    return value.astimezone(UTC)


GOVERNANCE_STEP_KEYS = frozenset({"action", "approval_required"})
ANOMALY_KEYS = {
    "id",
    "type",
    "enabled",
    "scope",
    "sensitivity",
    "severity",
    "alerting",
    "governance",
    "params",
    "description",
}
ACTIVITY_KEYS = ANOMALY_KEYS | {"filters", "match", "title", "created"}


def _config(raw: dict[str, Any], pid: str, where: str, learning: timedelta) -> DetectorConfig:
    scope = raw.get("scope") or {}
    keys = ", ".join(SCOPE_KEYS)
    if not isinstance(scope, dict):
        raise ConfigError(f"{where}, field `scope`: expected a mapping with any of {keys}")
    unknown = sorted(set(scope) - set(SCOPE_KEYS))
    if unknown:
        raise ConfigError(f"{where}, field `scope`: unknown keys {unknown} (known: {keys})")
    sensitivity = raw.get("sensitivity", "medium")
    if sensitivity not in SENSITIVITIES:
        raise ConfigError(f"{where}, field `sensitivity`: one of low, medium, high")
    severity = raw.get("severity")
    if severity is not None and severity not in SEVERITIES:
        raise ConfigError(f"{where}, field `severity`: one of {', '.join(SEVERITIES)}")
    alerting = raw.get("alerting") or {}
    if not isinstance(alerting, dict):
        raise ConfigError(f"{where}, field `alerting`: expected {{daily_limit: N}}")
    limit = _int(
        alerting.get("daily_limit", 0),
        f"{where}, field `alerting.daily_limit`",
        0,
        MAX_DAILY_LIMIT,
    )
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}, field `params`: expected a mapping")
    for name, problem in check_params(pid, params):
        raise ConfigError(f"{where}, field `params.{name}`: {problem}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}, field `enabled`: true or false")
    return DetectorConfig(
        id=pid,
        enabled=enabled,
        include_users=_users(scope.get("include_users"), f"{where}, field `scope.include_users`"),
        exclude_users=_users(scope.get("exclude_users"), f"{where}, field `scope.exclude_users`"),
        include_groups=_groups(
            scope.get("include_groups"), f"{where}, field `scope.include_groups`"
        ),
        exclude_groups=_groups(
            scope.get("exclude_groups"), f"{where}, field `scope.exclude_groups`"
        ),
        sensitivity=sensitivity,
        severity=severity,
        daily_limit=limit,
        governance=_governance(raw.get("governance"), where),
        params=dict(params),
        learning=learning,
    )


def _match(raw: Any, where: str) -> Match:
    raw = raw or {"mode": "single"}
    if not isinstance(raw, dict) or raw.get("mode", "single") not in ("single", "repeated"):
        raise ConfigError(f"{where}, field `match.mode`: single or repeated")
    if raw.get("mode", "single") == "single":
        return Match()
    same_user = raw.get("same_user", True)
    if not isinstance(same_user, bool):
        raise ConfigError(f"{where}, field `match.same_user`: true or false")
    return Match(
        "repeated",
        _int(raw.get("count"), f"{where}, field `match.count`", 2),
        timedelta(
            minutes=_int(raw.get("window_minutes"), f"{where}, field `match.window_minutes`", 1)
        ),
        same_user,
    )


def _title(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{where}, field `title`: a template such as 'Brute force on {{user}}'")
    try:
        names = {n for _, n, _, _ in string.Formatter().parse(raw) if n is not None}
    except ValueError as exc:
        raise ConfigError(f"{where}, field `title`: {exc}") from None
    unknown = names - TITLE_FIELDS
    if unknown:
        raise ConfigError(
            f"{where}, field `title`: unknown placeholders {sorted(unknown)} "
            f"(known: {', '.join(sorted(TITLE_FIELDS))})"
        )
    return raw


def parse(docs: Any, source: str, learning: timedelta = timedelta(days=7)) -> PolicySet:
    """Validate one file's policies."""
    items = docs if isinstance(docs, list) else [docs] if docs is not None else []
    anomaly: dict[str, DetectorConfig] = {}
    activity: list[ActivityPolicy] = []
    for n, raw in enumerate(items, 1):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ConfigError(f"{source}: policy #{n}: field `id` is required")
        pid = raw["id"]
        where = f"{source}: policy {pid}"
        if any(c in pid for c in ID_FORBIDDEN) or not pid.isprintable():
            raise ConfigError(
                f"{where}, field `id`: may not contain / \\ # ? or control characters"
            )
        kind = raw.get("type")
        keys = ANOMALY_KEYS if kind == "anomaly" else ACTIVITY_KEYS
        if kind not in ("anomaly", "activity"):
            raise ConfigError(f"{where}, field `type`: anomaly or activity")
        unknown = set(raw) - keys
        if unknown:
            raise ConfigError(f"{where}: unknown fields {sorted(unknown)}")
        if kind == "anomaly" and pid not in DETECTOR_IDS:
            raise ConfigError(
                f"{where}, field `id`: names no built-in detection "
                f"(known: {', '.join(DETECTOR_IDS)})"
            )
        cfg = _config(raw, pid, where, learning)
        if kind == "anomaly":
            anomaly[pid] = cfg
            continue
        activity.append(
            ActivityPolicy(
                id=pid,
                config=cfg,
                predicates=compile_filters(raw.get("filters"), where),
                types=allowed_types(raw.get("filters")),
                match=_match(raw.get("match"), where),
                title=_title(raw.get("title"), where),
                description=str(raw.get("description", "")),
                severity=cfg.severity or "medium",
                source=source,
                created=_created(raw.get("created"), f"{where}, field `created`"),
            )
        )
    return PolicySet(anomaly, tuple(activity))


def _policy_files(root: Path) -> list[Path]:
    return sorted([*root.glob("*.yaml"), *root.glob("*.yml")]) if root.is_dir() else [root]


def load_policies(path: str | None, learning: timedelta = timedelta(days=7)) -> PolicySet:
    """Every `*.yaml`/`*.yml` in the folder (or the one file), validated; ids are unique."""
    root = Path(path) if path else SHIPPED
    if not root.exists():
        raise ConfigError(f"POLICIES_PATH: {root} does not exist; fix the setting or the folder")
    anomaly: dict[str, DetectorConfig] = {}
    activity: list[ActivityPolicy] = []
    seen: dict[str, str] = {}
    for f in _policy_files(root):
        part = _load_file(f, learning)
        for pid in [*part.anomaly, *(p.id for p in part.activity)]:
            if pid in seen:
                raise ConfigError(f"{f}: policy {pid}: field `id` is also used in {seen[pid]}")
            seen[pid] = str(f)
        anomaly.update(part.anomaly)
        activity.extend(part.activity)
    return PolicySet(anomaly, tuple(activity))


def _load_file(f: Path, learning: timedelta) -> PolicySet:
    try:
        docs = yaml.safe_load(f.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{f}: not valid YAML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{f}: cannot be read ({exc})") from None
    return parse(docs, str(f), learning)


def check(path: str) -> tuple[list[str], bool]:
    """What `python -m shared.policies check PATH` prints, and whether every file passed.

    Each file is checked on its own (so every bad file is reported), then the folder as the
    deployment loads it (ids unique across files).
    """
    root = Path(path)
    if not root.exists():
        return [f"{root}: does not exist"], False
    lines, ok = [], True
    for f in _policy_files(root):
        try:
            part = _load_file(f, timedelta(days=7))
        except ConfigError as exc:
            lines.append(f"ERROR {exc}")
            ok = False
            continue
        ids = [*part.anomaly, *(p.id for p in part.activity)]
        lines.append(f"OK    {f}: {len(ids)} policies ({', '.join(ids) or 'none'})")
    if ok:
        try:
            load_policies(path)
        except ConfigError as exc:
            lines.append(f"ERROR {exc}")
            ok = False
    return lines, ok


def main(argv: list[str]) -> int:
    """`check PATH`: 0 when every policy file under PATH loads, 1 when one does not, 2: usage."""
    if len(argv) != 2 or argv[0] != "check":
        print("usage: python -m shared.policies check PATH", file=sys.stderr)
        return 2
    lines, ok = check(argv[1])
    for line in lines:
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
