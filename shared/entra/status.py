"""What an operator sees of the Entra source: per tenant and log, its state and back-fill."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.entra.pull import LOGS
from shared.entra.state import LogState, LogStateStore
from shared.entra.users_delta import DirectoryStateStore
from shared.entra.users_delta import report as directory_report


@dataclass(frozen=True)
class StatusDeps:
    """What the Entra status report reads."""

    log_states: LogStateStore
    directories: DirectoryStateStore
    tenant_id: str | None  # GRAPH_TENANT_ID: its logs are listed even before their first read


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _progress(s: LogState, now: datetime) -> float:
    """The share of the back-fill read, 0..1 (1 once the watermark reached a run's time)."""
    if s.origin is None or s.watermark is None:
        return 0.0
    if s.state == "current":
        return 1.0
    span = (now - s.origin).total_seconds()
    return round(min(1.0, max(0.0, (s.watermark - s.origin).total_seconds() / span)), 3)


def log_report(s: LogState, now: datetime) -> dict[str, Any]:
    return {
        "state": s.state if s.last_run_at else "not_started",
        "reason": s.reason,
        "backfill_progress": _progress(s, now),
        "backfill_from": _iso(s.origin),
        "watermark": _iso(s.watermark),
        "lag_seconds": round((now - s.watermark).total_seconds(), 1) if s.watermark else None,
        "resume_after": _iso(s.resume_after),
        "last_run_at": _iso(s.last_run_at),
        "records": s.records,
        "quarantined": s.quarantined,
        "unknown": s.unknown_counts,
    }


def report(deps: StatusDeps, now: datetime) -> dict[str, Any]:
    tenants: dict[str, dict[str, Any]] = {}
    store = deps.log_states
    if deps.tenant_id:  # the tenant's logs, read yet or not
        for name in LOGS:
            tenants.setdefault(deps.tenant_id, {})[name] = log_report(
                store.get(deps.tenant_id, name), now
            )
    for s in store.all():
        tenants.setdefault(s.tenant_id, {})[s.log] = log_report(s, now)
    directories = deps.directories
    for tenant, logs in tenants.items():
        logs["directory"] = directory_report(directories.get(tenant))
        logs["groups"] = directory_report(directories.get(tenant, "groups"))
    return {"tenants": tenants}
