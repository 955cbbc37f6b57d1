"""Whether an irreversible governance call already happened.

Before a call, the record says what is about to be sent (`intent`, saved with its ETag). If the
host dies after the call and before the answer is saved, the redelivered work finds the intent
and first asks the target whether the call took effect: the sender's Sent Items for the mail's
internet message id, the user's `accountEnabled`, the risky user's `riskState`, the Workplace
account's `active`. Revoking sessions and logging out again are harmless, so those are repeated.
Every attempt is kept on the record (`attempt_log`, the last MAX_LOG), so a repeat is visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from shared.governance import actions as act
from shared.governance.graph_results import GraphError
from shared.models import ActionAttempt, GovernanceAction

MAX_LOG = 20  # attempts kept on a record
# Exchange copies a sent mail to Sent Items after sendMail's 202, asynchronously; a mail missing
# from Sent Items is taken as not sent only once its intent is this old.
MAIL_SETTLE = timedelta(minutes=2)

SENT_ITEMS = "sent_items"  # the mail is in the sender's Sent Items under Vigil's message id
ACCOUNT_ENABLED = "account_enabled"  # the Entra user's accountEnabled is already false
RISK_STATE = "risk_state"  # the risky user's riskState is already confirmedCompromised
WORKPLACE_ACTIVE = "workplace_active"  # the Workplace account is already inactive
REPEAT_HARMLESS = "repeat_harmless"  # sending it again changes nothing more

CHECKS = {
    act.NOTIFY_USER: SENT_ITEMS,
    act.REVOKE_SESSIONS: REPEAT_HARMLESS,
    act.SUSPEND_USER: ACCOUNT_ENABLED,
    act.CONFIRM_COMPROMISED: RISK_STATE,
    act.WORKPLACE_LOGOUT: REPEAT_HARMLESS,
    act.WORKPLACE_DEACTIVATE: WORKPLACE_ACTIVE,
}


class StateReader(Protocol):
    """The Graph reads a check makes (GraphClient); each returns (what it saw, request-id)."""

    def sent_message(self, sender: str, internet_message_id: str) -> tuple[str | None, str]: ...
    def account_enabled(self, user: str) -> tuple[bool | None, str]: ...
    def risk_state(self, object_id: str) -> tuple[str, str]: ...


@dataclass(frozen=True)
class Finding:
    """What the check found: `done` True (carried out: do not send), False (not carried out:
    send), None (cannot tell: an analyst decides)."""

    done: bool | None
    request_id: str
    note: str


def message_id(action_id: str, sender: str) -> str:
    """The internet message id `notify_user` sets (RFC 5322 `<left@right>`), one per action."""
    domain = sender.rpartition("@")[2] if "@" in sender else "vigil.invalid"
    return f"<vigil.{action_id}@{domain}>"


def _logged(record: GovernanceAction, entry: ActionAttempt) -> tuple[ActionAttempt, ...]:
    kept = list(record.attempt_log)
    if kept and kept[-1].number == entry.number and kept[-1].outcome == "sending":
        kept.pop()  # the answer to the request this attempt was sending
    return (*kept, entry)[-MAX_LOG:]


def note_attempt(
    record: GovernanceAction, outcome: str, now: datetime, request_id: str = "", note: str = ""
) -> GovernanceAction:
    """The record with this attempt's outcome logged (in place of its `sending` entry)."""
    entry = ActionAttempt(record.attempts, now, outcome, request_id, note[:300])
    return replace(record, attempt_log=_logged(record, entry))


def declare(record: GovernanceAction, intent: str, now: datetime) -> GovernanceAction:
    """The record saying what is about to be sent, and how a later attempt will check it."""
    check = CHECKS[record.action]
    declared = replace(record, intent=intent[:500], intent_at=now, check=check)
    return note_attempt(declared, "sending", now, note=intent)


def answered(
    record: GovernanceAction, outcome: str, now: datetime, request_id: str = "", note: str = ""
) -> GovernanceAction:
    """The record once the call's answer is known: the intent is settled."""
    return note_attempt(replace(record, intent_at=None), outcome, now, request_id, note)


def unanswered(record: GovernanceAction) -> GovernanceAction:
    """Earlier attempts still `sending` never had their answer saved: say so."""
    log = tuple(
        replace(a, outcome="unanswered", note=f"no answer saved (host stopped?): {a.note}"[:300])
        if a.outcome == "sending" and a.number != record.attempts
        else a
        for a in record.attempt_log
    )
    return replace(record, attempt_log=log)


def settle(
    record: GovernanceAction,
    graph: Callable[[], StateReader],
    *,
    sender: str,
    graph_user: str,
    workplace_active: Callable[[], bool],
) -> Finding:
    """After an intent whose answer was never saved: did that call take effect?"""
    match record.check or CHECKS[record.action]:
        case "sent_items":
            wanted = message_id(record.id, sender)
            try:
                found, request_id = graph().sent_message(sender, wanted)
            except GraphError as exc:
                if exc.retryable:
                    raise
                return Finding(
                    None,
                    exc.request_id,
                    f"cannot read {sender}'s Sent Items (Graph {exc.status} {exc.code}; "
                    "Mail.ReadBasic.All is needed), so whether the mail went is unknown",
                )
            if found:
                return Finding(True, request_id, f"found in {sender}'s Sent Items as {wanted}")
            return Finding(False, request_id, f"{wanted} is not in {sender}'s Sent Items")
        case "account_enabled":
            enabled, request_id = graph().account_enabled(graph_user)
            if enabled is False:
                return Finding(True, request_id, "accountEnabled is already false")
            return Finding(False, request_id, "accountEnabled is still true")
        case "risk_state":
            state, request_id = graph().risk_state(record.target_object_id)
            if state == "confirmedCompromised":
                return Finding(True, request_id, "riskState is already confirmedCompromised")
            return Finding(False, request_id, f"riskState is {state}")
        case "workplace_active":
            if not workplace_active():
                return Finding(True, "", "the Workplace account is already inactive")
            return Finding(False, "", "the Workplace account is still active")
        case _:
            return Finding(False, "", "repeat_harmless: sending it again changes nothing more")
