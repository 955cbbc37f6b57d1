"""Where a community's Workplace token comes from, in either token mode.

Third-party install: one token per install, kept in the secret store (Key Vault or encrypted).
Custom integration: the one token an admin pasted into `WORKPLACE_ACCESS_TOKEN`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from shared.installs import InstallStore
from shared.models import Install
from shared.secrets import SecretStore


def secret_name(community_id: str) -> str:
    """The token's name in the secret store (a valid Key Vault secret name)."""
    return f"workplace-token-{community_id}"


def fingerprint(token: str, app_secret: str) -> str:
    """Tells a rotated custom-integration token from the last one without storing it."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class WorkplaceTokens:
    """The tokens Vigil holds: per install in the secret store, or the custom integration's."""

    installs: InstallStore
    secrets: Callable[[], SecretStore]  # built on first need (Key Vault or the table)
    access_token: str | None  # WORKPLACE_ACCESS_TOKEN (custom integration mode)

    def token_for(self, community_id: str, install: Install | None = None) -> str | None:
        """The community's token; pass its `install` when you have it (saves a read)."""
        install = install or self.installs.get(community_id)
        if install is not None and install.mode == "custom_integration":
            return self.access_token
        return self.secrets().get(secret_name(community_id))
