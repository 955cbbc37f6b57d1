"""The guardrails that keep governance safe: pure decisions (protected accounts, the circuit
breaker, backoff), and `hold_back`, which applies them to an attempt before it sends anything."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import datetime, timedelta

from shared.governance import actions as act
from shared.governance.attempt import Decided
from shared.governance.dependencies import Governance
from shared.governance.graph_results import EntraUser
from shared.governance.records import ActionFilter
from shared.models import Alert, Evidence, GovernanceAction, short_hash

BREAKER_WINDOW = timedelta(hours=1)
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
MAX_DELAY_S = 7 * 24 * 3600 - 1  # a queue message's visibility timeout is at most 7 days


def is_protected(protected: frozenset[str], *identities: str) -> bool:
    """True when any of the user's identities (object id, UPN, mail, source id) is listed."""
    return any(i and i.strip().lower() in protected for i in identities)


def breaker_tripped(suspension_times: Iterable[datetime], at: datetime, limit: int) -> bool:
    """True when `limit` automatic suspensions already fall in the hour up to `at` (event time)."""
    recent = sum(1 for t in suspension_times if at - BREAKER_WINDOW < t <= at)
    return recent >= limit


def retry_delay(
    retry_after: float | None, attempt: int, rng: random.Random, floor: float = 1.0
) -> int:
    """Seconds until the next attempt: Graph's Retry-After when sent, else exponential backoff
    with full jitter (base 2 s, cap 5 min), never below `floor`."""
    if retry_after is not None:
        delay = retry_after
    else:
        delay = rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(attempt - 1, 0)))
    return int(min(max(delay, floor), MAX_DELAY_S) + 0.999)


def hold_back(
    record: GovernanceAction, alert: Alert, user: EntraUser | None, gov: Governance
) -> None:
    """Raise `Decided` (skipped or failed) when the action must not run."""
    policy = gov.policy
    identities: tuple[str, ...] = (alert.user_email, alert.user_id)
    if user is not None:
        identities += (user.id, user.user_principal_name, user.mail)
    if record.action != act.NOTIFY_USER and is_protected(policy.protected, *identities):
        _guardrail_alert(
            gov,
            alert,
            record,
            "protected_account",
            f"Vigil did not {record.action} {record.target}: the account is protected "
            "(GOVERNANCE_PROTECTED_ACCOUNTS).",
        )
        raise Decided(
            "skipped",
            "protected_account",
            "protected account (GOVERNANCE_PROTECTED_ACCOUNTS): never acted on",
        )
    if record.action in act.SUSPENSIONS and not record.approval_required:
        _check_breaker(record, alert, gov)
    if record.action == act.SUSPEND_USER and user is not None and user.on_premises_sync_enabled:
        raise Decided(
            "failed",
            "unsupported_on_premises_synced",
            "the user is synced from on-premises AD, which would re-enable the account: "
            "suspend it in AD",
        )
    if record.action == act.NOTIFY_USER and not policy.mail_sender:
        raise Decided(
            "failed",
            "not_configured",
            "GOVERNANCE_MAIL_SENDER is not set: set it to the mailbox Vigil "
            "sends notifications from",
        )
    if record.action in act.WORKPLACE_ACTIONS and not gov.workplace_token(record.tenant_id):
        raise Decided(
            "failed",
            "no_workplace_token",
            f"Vigil holds no Workplace token for community {record.tenant_id}: "
            "install (or reinstall) Vigil in that community",
        )


def _check_breaker(record: GovernanceAction, alert: Alert, gov: Governance) -> None:
    at = record.event_time or alert.last_activity_time
    limit = gov.policy.max_suspensions_per_hour
    times = [
        r.event_time
        for action in sorted(act.SUSPENSIONS)
        for r in gov.actions.query(
            ActionFilter(
                record.tenant_id,
                action=action,
                event_after=at - BREAKER_WINDOW,
                event_until=at,
            )
        )
        if r.id != record.id
        and r.event_time is not None
        and not r.approval_required
        and (r.status == "succeeded" or (r.status == "pending" and r.attempts > 0))
    ]
    if breaker_tripped(times, at, limit):
        _guardrail_alert(
            gov,
            alert,
            record,
            "circuit_breaker",
            f"Vigil did not {record.action} {record.target}: {limit} automatic "
            "suspensions already ran in this tenant within the hour "
            "(GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR). Review them, then approve or "
            "retry this action over HTTP.",
        )
        raise Decided(
            "skipped",
            "circuit_breaker",
            f"circuit breaker: {limit} automatic suspensions within an hour of "
            f"{at.isoformat()} (GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR)",
        )


def _guardrail_alert(
    gov: Governance, alert: Alert, record: GovernanceAction, kind: str, text: str
) -> None:
    gov.alerts.save(
        guardrail := Alert(
            id=short_hash("governance", kind, record.id),
            tenant_id=alert.tenant_id,
            source="vigil",
            detector_id=f"vigil.governance.{kind}",
            title=f"Governance held back: {kind.replace('_', ' ')}",
            description=text,
            severity="high",
            category="Governance",
            mitre_techniques=(),
            user_id=alert.user_id,
            user_email=alert.user_email,
            first_activity_time=alert.first_activity_time,
            last_activity_time=alert.last_activity_time,
            created_time=alert.created_time,
            evidence=Evidence(
                {
                    "action_id": record.id,
                    "action": record.action,
                    "target": record.target,
                    "alert_id": alert.id,
                    "guardrail": kind,
                },
                alert.evidence.activity_ids,
            ),
            dedup_key=f"governance:{kind}:{record.id}",
        )
    )
    if gov.notify is not None:  # guardrail alerts are always notified
        gov.notify(guardrail)
