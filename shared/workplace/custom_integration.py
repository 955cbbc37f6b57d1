"""Custom integration mode: an admin's token in WORKPLACE_ACCESS_TOKEN, no install flow.

The community is whatever `/community` says the token belongs to. It is checked again only
when the token changes, so a rotated token revives an install that needed reauthorisation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.installs import InstallStore
from shared.logsafe import quoted
from shared.models import Install
from shared.workplace.client import RETRYABLE, WorkplaceClient, WorkplaceError
from shared.workplace.sync_state import SyncStateStore
from shared.workplace.tokens import fingerprint

log = logging.getLogger(__name__)
# The sync-state row that remembers a custom-integration token /community refused for good.
UNREGISTERED = "custom-integration-unregistered"


@dataclass(frozen=True)
class RegistrationDeps:
    """What registering the custom integration's community reads and writes."""

    installs: InstallStore
    workplace: Callable[[], WorkplaceClient]  # built on first need
    access_token: str | None  # WORKPLACE_ACCESS_TOKEN
    app_secret: Callable[[], str]  # signs the token's fingerprint (read only with a token)


def ensure_registered(
    deps: RegistrationDeps, states: SyncStateStore, now: datetime
) -> Install | None:
    """The custom integration's install (registered on first use), or None in install mode."""
    token = deps.access_token
    if not token:
        return None
    print_ = fingerprint(token, deps.app_secret())
    for install in deps.installs.all():
        known = states.get(install.community_id).token_fingerprint
        if install.mode == "custom_integration" and known == print_:
            return install
    refused = states.get(UNREGISTERED)
    if refused.token_fingerprint == print_:
        return None  # this token was refused for good: wait for a new one, do not hammer
    try:
        community = deps.workplace().community(token)
    except WorkplaceError as exc:
        log.warning(
            "custom integration: WORKPLACE_ACCESS_TOKEN was refused by /community: %s",
            quoted(exc),
            extra={"code": exc.code, "status": exc.status},
        )
        if exc.kind not in RETRYABLE:
            states.update(
                UNREGISTERED,
                token_fingerprint=print_,
                last_error=str(exc)[:1000],
                last_error_at=now,
            )
        raise
    previous = deps.installs.get(community.id)
    install = Install(
        community_id=community.id,
        community_name=community.name,
        install_id=community.install_id,
        mode="custom_integration",
        status="active",
        installed_at=previous.installed_at if previous else now,
        permissions=community.permissions,
        install_type=community.install_type or "CUSTOM_INTEGRATION",
        status_reason="",
        status_changed_at=now,
    )
    deps.installs.save(install)
    states.update(community.id, token_fingerprint=print_, failures=0)
    log.info(
        "custom integration registered for community %s (%s)",
        quoted(community.id),
        quoted(community.name),
    )
    return install
