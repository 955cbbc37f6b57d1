"""What a failed Workplace call means for an install: stay, reinstall, uninstalled or gone for good.

Pure decisions over the failure and the install's history; the caller does the writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from shared.installs import InstallStatus
from shared.workplace.client import FailureKind, WorkplaceError

# How calls fail once Workplace is gone: no answer, 404, or the token refused.
SHUTDOWN_LIKE = frozenset(
    {FailureKind.UNREACHABLE, FailureKind.GONE, FailureKind.REAUTH, FailureKind.UNINSTALLED}
)


@dataclass(frozen=True)
class Transition:
    status: InstallStatus
    reason: str


def after_failure(
    error: WorkplaceError,
    *,
    shutdown_like_failures: int,
    now: datetime,
    shutdown_date: date,
    decommission_after: int,
) -> Transition | None:
    """The install's new status after `error`, or None to stay active and retry next run.

    `shutdown_like_failures` counts consecutive runs failing in a shutdown-like way, this one
    included.
    """
    kind = error.kind
    if kind in SHUTDOWN_LIKE and now.date() >= shutdown_date:
        return Transition(
            "decommissioned",
            f"Workplace access ended on {shutdown_date.isoformat()} and calls now fail "
            f"({kind}: {error}). Data already collected is kept; nothing more is synced.",
        )
    if kind is FailureKind.UNINSTALLED:
        return Transition(
            "uninstalled",
            "Workplace says the app is not installed (190/458): its token was deleted. "
            "Reinstall from /api/workplace/install to resume.",
        )
    if kind is FailureKind.REAUTH:
        return Transition(
            "needs_reauth",
            f"Workplace refused the token ({error.code}): reinstall from /api/workplace/install, "
            "or for a custom integration set a new WORKPLACE_ACCESS_TOKEN.",
        )
    if kind in SHUTDOWN_LIKE and shutdown_like_failures >= decommission_after:
        return Transition(
            "decommissioned",
            f"{shutdown_like_failures} syncs in a row failed the way calls fail after Workplace's "
            f"shutdown ({kind}: {error}). Data already collected is kept; nothing more is synced.",
        )
    return None
