"""What an operator sees at GET /api/workplace/status: every install and how it is doing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.held import HeldEvents
from shared.inbox import WebhookInbox
from shared.installs import InstallStore
from shared.workplace.counts import EventCountStore
from shared.workplace.custom_integration import UNREGISTERED
from shared.workplace.events import EVENTS
from shared.workplace.normalize import SOURCE
from shared.workplace.sync_state import SyncStateStore


@dataclass(frozen=True)
class StatusDeps:
    """What the Workplace status report reads."""

    installs: InstallStore
    sync_states: SyncStateStore
    counts: EventCountStore
    held: HeldEvents
    inbox: WebhookInbox
    access_token: str | None  # WORKPLACE_ACCESS_TOKEN (custom integration mode)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return round((later - earlier).total_seconds(), 1) if later and earlier else None


def report(deps: StatusDeps, now: datetime) -> dict[str, Any]:
    states, counts = deps.sync_states, deps.counts
    oldest = deps.inbox.oldest(1)
    backlog = _seconds(now, oldest[0].received_at) if oldest else 0.0
    held = deps.held.counts(SOURCE)
    installs = []
    for install in deps.installs.all():
        state = states.get(install.community_id)
        by_name = counts.totals(install.community_id)
        unknown = {name: n for name, n in by_name.items() if name not in EVENTS}
        installs.append(
            {
                "community_id": install.community_id,
                "community_name": install.community_name,
                "install_id": install.install_id,
                "mode": install.mode,
                "state": install.status,
                "state_reason": install.status_reason,
                "state_changed_at": _iso(install.status_changed_at),
                "installed_at": _iso(install.installed_at),
                "last_sync": {
                    "directory_synced_at": _iso(state.directory_synced_at),
                    "last_attempt_at": _iso(state.last_attempt_at),
                    "webhooks_stored_at": _iso(state.last_drain_at),
                    "newest_event_at": _iso(state.newest_event_at),
                    "directory_in_progress": bool(state.run_id),
                    "users": state.users,
                },
                "lag_seconds": {
                    "directory": _seconds(now, state.directory_synced_at),
                    "webhooks": _seconds(state.last_drain_at, state.newest_event_at),
                },
                "counts_by_event": dict(sorted(by_name.items())),
                "unknown_events": dict(sorted(unknown.items())),
                "last_error": {"message": state.last_error, "at": _iso(state.last_error_at)}
                if state.last_error
                else None,
                "shutdown_like_failures": state.failures,
                "held_events": held.get(install.community_id, 0),
            }
        )
    report: dict[str, Any] = {
        "generated_at": now.isoformat(),
        "inbox_backlog_seconds": backlog,
        "held_events": {"total": held.total(), "by_community": dict(sorted(held.items()))},
        "installs": installs,
    }
    if deps.access_token and not any(
        i["mode"] == "custom_integration" and i["state"] == "active" for i in installs
    ):
        refused = states.get(UNREGISTERED)
        report["custom_integration"] = {
            "registered": any(i["mode"] == "custom_integration" for i in installs),
            "last_error": refused.last_error or None,
        }
    return report
