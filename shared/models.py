"""Vigil's records: one type each for activities, alerts, installs and governance actions.

These are source-neutral: the Workplace connector turns its wire format into `Activity`, and
everything downstream (detection, governance, investigation) sees only these records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

Outcome = Literal["success", "failure"]
Severity = Literal["informational", "low", "medium", "high"]
ActionStatus = Literal["pending", "approved", "succeeded", "failed", "skipped", "reverted"]


def utc(ts: datetime) -> datetime:
    """The same instant in UTC; naive datetimes are taken as UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def short_hash(*parts: str, length: int = 32) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Activity:
    """One thing a user did (or had done to them) in a SaaS source, at its own event time."""

    source: str  # "workplace" or "entra"
    tenant_id: str  # the source's tenant: Workplace community id, Entra tenant id
    event_id: str  # deterministic: the same event always gets the same id
    time: datetime  # event time, UTC
    type: str  # Vigil's activity type, e.g. "login_failed"
    event_name: str  # the source's own name, e.g. "LOGIN_FAILED"
    category: str  # the source's grouping, e.g. Workplace's change field "login"
    outcome: Outcome
    actor_id: str
    actor_email: str = ""
    target_id: str = ""
    target_email: str = ""
    ip: str = ""
    country: str = ""
    user_agent: str = ""
    interactive: bool = True
    administrative: bool = False
    impersonated: bool = False
    raw: str = "{}"  # the source's record, JSON
    # Where the source itself places the activity (Entra sign-ins carry coordinates); None: the
    # IP's location from Vigil's IP intelligence is used instead.
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True)
class Evidence:
    """What a person checks to agree with an alert."""

    facts: dict[str, Any]
    activity_ids: tuple[str, ...]
    suppressions_evaluated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    """Follows the Graph security alert (v2) model, plus Vigil's evidence and dedup key."""

    id: str
    tenant_id: str
    source: str
    detector_id: str
    title: str
    description: str
    severity: Severity
    category: str
    mitre_techniques: tuple[str, ...]
    user_id: str
    user_email: str
    first_activity_time: datetime
    last_activity_time: datetime
    created_time: datetime  # event time of the activity that raised it (replay gives the same)
    evidence: Evidence
    dedup_key: str
    actions: tuple[str, ...] = ()
    status: str = "new"
    classification: str = "unknown"
    determination: str = "unknown"
    event_count: int = 0
    policy_id: str = ""  # the policy that raised it (built-ins: the detector id)
    recommended_actions: str = ""
    capped: bool = False  # over the policy's daily alert limit (governance still ran)
    assigned_to: str = ""  # triage (like status): written by the API, never by detection


@dataclass(frozen=True)
class Install:
    """Vigil installed in one Workplace community."""

    community_id: str
    community_name: str
    install_id: str
    mode: Literal["install", "custom_integration"]
    status: Literal["active", "uninstalled", "needs_reauth", "decommissioned"]
    installed_at: datetime
    permissions: tuple[str, ...] = ()
    install_type: str = ""
    status_reason: str = ""  # why it left `active`, in words an operator can act on
    status_changed_at: datetime | None = None


@dataclass(frozen=True)
class ActionAttempt:
    """One attempt at a governance action, as the governance log shows it."""

    number: int
    at: datetime
    outcome: str  # "sending" until the answer is saved; then "succeeded", an error code...
    request_id: str = ""  # Graph's request-id of the call (or of the check that settled it)
    note: str = ""


@dataclass(frozen=True)
class GovernanceAction:
    """One action taken (or not) because of an alert; its id makes execution idempotent."""

    id: str
    alert_id: str
    tenant_id: str
    action: str
    target: str  # the user as the identity provider knows them (UPN / e-mail / object id)
    mode: str
    status: ActionStatus
    attempts: int = 0
    request_id: str = ""
    error_code: str = ""
    error_message: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    completed_at: datetime | None = None
    alert_key: str = ""  # the alert's row key, to find it again (approve, retry)
    policy_id: str = ""
    approval_required: bool = False
    target_object_id: str = ""  # the Entra object id, once matched
    event_time: datetime | None = None  # the alert's last activity time (circuit breaker)
    detail: str = ""  # the request sent (or, in dry-run, that would have been sent)
    progress: str = ""  # steps of a multi-step action already done, e.g. "disabled"
    error_date: str = ""  # Graph's innerError date, for support cases
    approved_by: str = ""
    approved_at: datetime | None = None
    reverted_by: str = ""
    reverted_at: datetime | None = None
    updated_at: datetime | None = None
    lease_until: datetime | None = None  # an attempt is in flight until then
    intent: str = ""  # the irreversible request about to be sent, saved before it is sent
    intent_at: datetime | None = None  # set while a sent request's answer is not yet saved
    check: str = ""  # how a later attempt learns whether that request was carried out
    attempt_log: tuple[ActionAttempt, ...] = ()  # the last attempts, oldest first
    source: str = "workplace"  # the source of the alert's activity (workplace | entra)

    @staticmethod
    def make_id(alert_id: str, action: str, target: str) -> str:
        return short_hash(alert_id, action, target.lower())

    # The status changes: each one goes through `_moved`, which checks ACTION_TRANSITIONS.

    def approve(self, by: str, at: datetime) -> GovernanceAction:
        """An analyst approves a pending action that needs approval."""
        return self._moved("approved", approved_by=by, approved_at=at, updated_at=at)

    def succeed(self, at: datetime, request_id: str) -> GovernanceAction:
        return self._moved("succeeded", request_id=request_id, completed_at=at, updated_at=at)

    def fail(self, at: datetime) -> GovernanceAction:
        return self._moved("failed", completed_at=at, updated_at=at)

    def skip(self, at: datetime) -> GovernanceAction:
        return self._moved("skipped", completed_at=at, updated_at=at)

    def retry(self, by: str, at: datetime) -> GovernanceAction:
        """Run a failed or skipped action again, with a fresh attempt budget; one that needs
        approval counts as approved by whoever retries it."""
        approval = self.approval_required
        return self._moved(
            "approved" if approval else "pending",
            approved_by=self.approved_by or (by if approval else ""),
            approved_at=self.approved_at or (at if approval else None),
            attempts=0,
            completed_at=None,
            updated_at=at,
            error_message=f"retry by {by}; before: {self.error_code} {self.error_message}"[:500],
            intent_at=None,  # the analyst decides that it is sent (again)
        )

    def revert(self, by: str, at: datetime, request_id: str) -> GovernanceAction:
        """The inverse request was sent (`request_id` its id, if any)."""
        return self._moved(
            "reverted",
            reverted_by=by,
            reverted_at=at,
            updated_at=at,
            request_id=request_id or self.request_id,
        )

    def _moved(self, status: ActionStatus, **changes: Any) -> GovernanceAction:
        if status not in ACTION_TRANSITIONS[self.status]:
            raise IllegalTransition(f"governance action {self.id}: {self.status} -> {status}")
        return replace(self, status=status, **changes)


class IllegalTransition(ValueError):
    """A status change that ACTION_TRANSITIONS does not allow."""


# The statuses each status may change to. Succeeded, failed and skipped are final for the
# executor; analysts retry failed or skipped actions and revert succeeded ones.
ACTION_TRANSITIONS: Mapping[ActionStatus, frozenset[ActionStatus]] = {
    "pending": frozenset({"approved", "succeeded", "failed", "skipped"}),
    "approved": frozenset({"succeeded", "failed", "skipped"}),
    "succeeded": frozenset({"reverted"}),
    "failed": frozenset({"pending", "approved"}),
    "skipped": frozenset({"pending", "approved"}),
    "reverted": frozenset(),
}


UserStatus = Literal["active", "deactivated", "deleted"]


@dataclass(frozen=True)
class UserRecord:
    """A person as the source's directory knows them (synced by sync_timer)."""

    tenant_id: str
    user_id: str
    email: str
    status: UserStatus = "active"
    is_admin: bool = False
    auth_method: str = ""  # "sso", "password" or "" when unknown
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    deactivated_at: datetime | None = None
    groups: tuple[str, ...] = ()  # ids of the groups the directory sync found them in
    listed_in_round: int = 0  # Entra: the users delta's full round that last listed them (0: none)
