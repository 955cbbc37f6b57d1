"""The source boundary: what the engine is fed from, each behind the same small interface.

A source pulls its records into the activity log (queueing them for detection), keeps its
directory in step, and reports how it is doing. Its wire format and normalisation live in its
own package (`shared/workplace/`, `shared/entra/`); detection, alerts, governance and the HTTP
API see only `Activity` (which carries `source`) and never import a source.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared import query_params as q
from shared.web import Reply, refuses_bad_input

if TYPE_CHECKING:
    from shared.entra import pull as entra_pull
    from shared.entra import status as entra_status
    from shared.entra import users_delta
    from shared.workplace import directory_sync, inbox_drain
    from shared.workplace import status as workplace_status


@dataclass(frozen=True)
class SourceDeps:
    """The enabled sources, and each one's dependencies (each built only when that source runs)."""

    enabled: tuple[str, ...]  # VIGIL_SOURCES, in its order
    workplace_drain: Callable[[], inbox_drain.DrainDeps]
    workplace_directory: Callable[[], directory_sync.DirectorySyncDeps]
    workplace_status: Callable[[], workplace_status.StatusDeps]
    entra_pull: Callable[[], entra_pull.PullDeps]
    entra_status: Callable[[], entra_status.StatusDeps]
    entra_directory: Callable[[], users_delta.DirectoryDeps]


class Source(Protocol):
    @property
    def name(self) -> str: ...

    def pull(self, deps: SourceDeps, now: datetime) -> None:
        """Bring new records into the activity log and queue them for detection."""

    def sync_directory(self, deps: SourceDeps, now: datetime) -> None:
        """Keep the source's users (and their state) in step, on the source's own cadence."""

    def status(self, deps: SourceDeps, now: datetime) -> dict[str, Any]:
        """What an operator needs to know of it (state, reason, lag, progress)."""


@dataclass(frozen=True)
class Workplace:
    """Workplace: webhooks drained from the inbox; the directory read per install."""

    name: str = "workplace"

    def pull(self, deps: SourceDeps, now: datetime) -> None:
        from shared.workplace.inbox_drain import drain_inbox

        drain_inbox(deps.workplace_drain(), now)

    def sync_directory(self, deps: SourceDeps, now: datetime) -> None:
        from shared.workplace.directory_sync import sync_installs

        # each install on its own WORKPLACE_DIRECTORY_SYNC_MINUTES
        sync_installs(deps.workplace_directory(), now)

    def status(self, deps: SourceDeps, now: datetime) -> dict[str, Any]:
        from shared.workplace.status import report

        return report(deps.workplace_status(), now)


@dataclass(frozen=True)
class Entra:
    """Entra ID: sign-in and directory-audit logs pulled from Microsoft Graph."""

    name: str = "entra"

    def pull(self, deps: SourceDeps, now: datetime) -> None:
        from shared.entra.pull import pull

        pull(deps.entra_pull(), now)

    def sync_directory(self, deps: SourceDeps, now: datetime) -> None:
        from shared.entra.groups_delta import sync_groups
        from shared.entra.users_delta import sync_users

        directory = deps.entra_directory()
        sync_users(directory, now)  # Graph's /users delta query into the user records,
        sync_groups(directory, now)  # then /groups/delta into their groups

    def status(self, deps: SourceDeps, now: datetime) -> dict[str, Any]:
        from shared.entra.status import report

        return report(deps.entra_status(), now)


SOURCES: dict[str, Source] = {s.name: s for s in (Workplace(), Entra())}  # one per config.SOURCES


def enabled(deps: SourceDeps) -> list[Source]:
    """The sources VIGIL_SOURCES turns on, in its order."""
    return [SOURCES[name] for name in deps.enabled]


def status(deps: SourceDeps, now: datetime) -> dict[str, Any]:
    return {
        "generated_at": now.isoformat(),
        "sources": {s.name: s.status(deps, now) for s in enabled(deps)},
    }


@refuses_bad_input
def report_status(deps: SourceDeps, params: Mapping[str, str], now: datetime) -> Reply:
    """`GET /api/sources/status`: each enabled source's state (the route takes no parameter)."""
    q.known(params, ())
    return Reply.json(200, status(deps, now))
