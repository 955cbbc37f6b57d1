"""What governance reads, writes and calls: the Graph and Workplace calls it makes, its policy
(from the settings), and the stores and clients `services.py` hands it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shared.alerts import AlertStore
from shared.config import GovernanceMode, Settings
from shared.governance.graph_results import EntraUser, GraphResult
from shared.governance.identity import EntraUserCache
from shared.governance.message import ActionRequest
from shared.governance.records import ActionStore
from shared.governance.throttle import TenantRateLimit
from shared.models import Alert


class GraphActions(Protocol):
    """The Microsoft Graph calls governance makes (GraphClient)."""

    def find_user(self, email: str) -> EntraUser | None: ...
    def revoke_sessions(self, user: str) -> GraphResult: ...
    def suspend(self, user: str) -> GraphResult: ...
    def set_account_enabled(self, user: str, enabled: bool) -> GraphResult: ...
    def send_mail(
        self, sender: str, to: str, subject: str, html: str, message_id: str
    ) -> GraphResult: ...
    def confirm_compromised(self, object_ids: list[str]) -> GraphResult: ...
    def dismiss_risk(self, object_ids: list[str]) -> GraphResult: ...
    def sent_message(self, sender: str, internet_message_id: str) -> tuple[str | None, str]: ...
    def account_enabled(self, user: str) -> tuple[bool | None, str]: ...
    def risk_state(self, object_id: str) -> tuple[str, str]: ...


class WorkplaceAccounts(Protocol):
    """The Workplace account calls governance makes (WorkplaceClient)."""

    def logout_user(self, token: str, user_id: str) -> None: ...
    def set_active(self, token: str, user_id: str, active: bool) -> None: ...
    def account_active(self, token: str, user_id: str) -> bool: ...


@dataclass(frozen=True)
class GovernancePolicy:
    mode: GovernanceMode
    protected: frozenset[str] = frozenset()
    max_suspensions_per_hour: int = 20
    max_attempts: int = 8
    mail_sender: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> GovernancePolicy:
        return cls(
            s.governance_mode,
            s.governance_protected_accounts,
            s.governance_max_suspensions_per_hour,
            s.governance_max_attempts,
            s.governance_mail_sender,
        )


@dataclass(frozen=True)
class Governance:
    """Everything governance reads, writes and calls; clients are built only when first needed."""

    alerts: AlertStore
    actions: ActionStore
    identities: EntraUserCache
    risk_slots: TenantRateLimit
    policy: GovernancePolicy
    graph: Callable[[], GraphActions]
    workplace: Callable[[], WorkplaceAccounts]
    workplace_token: Callable[[str], str | None]
    enqueue: Callable[[ActionRequest, int], None]  # (request, visibility delay in seconds)
    rng: random.Random = field(default_factory=random.Random)
    notify: Callable[[Alert], None] | None = None  # queues a guardrail alert's notification
