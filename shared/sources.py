"""The source boundary: what the engine is fed from, each behind the same small interface.

A source pulls its records into the activity log (queueing them for detection), keeps its
directory in step, and reports how it is doing. Its wire format and normalisation live in its
own package (`shared/workplace/`, `shared/entra/`); detection, alerts, governance and the HTTP
API see only `Activity` (which carries `source`) and never import a source.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared import query_params as q
from shared.services import Services
from shared.web import Reply, refuses_bad_input


class Source(Protocol):
    @property
    def name(self) -> str: ...

    def pull(self, svc: Services, now: datetime) -> None:
        """Bring new records into the activity log and queue them for detection."""

    def sync_directory(self, svc: Services, now: datetime) -> None:
        """Keep the source's users (and their state) in step, on the source's own cadence."""

    def status(self, svc: Services, now: datetime) -> dict[str, Any]:
        """What an operator needs to know of it (state, reason, lag, progress)."""


@dataclass(frozen=True)
class Workplace:
    """Workplace: webhooks drained from the inbox; the directory read per install."""

    name: str = "workplace"

    def pull(self, svc: Services, now: datetime) -> None:
        from shared.sync import drain_inbox

        drain_inbox(svc, now)

    def sync_directory(self, svc: Services, now: datetime) -> None:
        from shared.workplace.directory_sync import sync_installs

        sync_installs(svc, now)  # each install on its own WORKPLACE_DIRECTORY_SYNC_MINUTES

    def status(self, svc: Services, now: datetime) -> dict[str, Any]:
        from shared.workplace.status import report

        return report(svc, now)


@dataclass(frozen=True)
class Entra:
    """Entra ID: sign-in and directory-audit logs pulled from Microsoft Graph."""

    name: str = "entra"

    def pull(self, svc: Services, now: datetime) -> None:
        from shared.entra.pull import pull

        pull(svc, now)

    def sync_directory(self, svc: Services, now: datetime) -> None:
        from shared.entra.groups_delta import sync_groups
        from shared.entra.users_delta import sync_users

        sync_users(svc, now)  # Graph's /users delta query into the user records,
        sync_groups(svc, now)  # then /groups/delta into their groups

    def status(self, svc: Services, now: datetime) -> dict[str, Any]:
        from shared.entra.status import report

        return report(svc, now)


SOURCES: dict[str, Source] = {"workplace": Workplace(), "entra": Entra()}


def enabled(svc: Services) -> list[Source]:
    """The sources VIGIL_SOURCES turns on, in its order."""
    return [SOURCES[name] for name in svc.settings.sources]


def status(svc: Services, now: datetime) -> dict[str, Any]:
    return {
        "generated_at": now.isoformat(),
        "sources": {s.name: s.status(svc, now) for s in enabled(svc)},
    }


@refuses_bad_input
def report_status(svc: Services, params: Mapping[str, str], now: datetime) -> Reply:
    """`GET /api/sources/status`: each enabled source's state (the route takes no parameter)."""
    q.known(params, ())
    return Reply.json(200, status(svc, now))
