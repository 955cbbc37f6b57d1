"""Sign-in `status.errorCode` -> what happened (data, easy to correct).

From Microsoft's error-code reference (learn.microsoft.com/entra/identity-platform/
reference-error-codes) and the code sets of Microsoft's own Sentinel rules. Only a
`credential_failure` is a failed password: MFA prompts, policy blocks and session events are not.

The table (the README carries it too) is CODES below: 0 success (`login`); credential failures
50126, 50053, 50055, 50056, 50057, 50034, 50064, 50144 (`login_failed`, what brute force counts);
interrupts 50074, 50076, 50079, 50072, 50125, 50140, 50199 (`login_interrupted`: MFA or a
password-reset prompt after the password was accepted); MFA failures 500121, 50158
(`mfa_failed`); policy blocks 53003, 53000, 53001, 530032, 530035 (`login_blocked`); session and
token events 70043, 70044, 50173, 50133, 50132, 70008, 700082, 50058 (`session_expired`); any
other non-zero code `login_failure_other` (kept, counted as unknown on the status page).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.models import Outcome


@dataclass(frozen=True)
class SignInKind:
    cls: str  # success | credential_failure | interrupt | mfa_failure | policy_block | session...
    type: str  # Vigil activity type
    outcome: Outcome


SUCCESS = SignInKind("success", "login", "success")
CREDENTIAL_FAILURE = SignInKind("credential_failure", "login_failed", "failure")
INTERRUPT = SignInKind("interrupt", "login_interrupted", "failure")
MFA_FAILURE = SignInKind("mfa_failure", "mfa_failed", "failure")
POLICY_BLOCK = SignInKind("policy_block", "login_blocked", "failure")
SESSION = SignInKind("session", "session_expired", "failure")
FAILURE_OTHER = SignInKind("failure_other", "login_failure_other", "failure")

CODES: dict[int, SignInKind] = {
    0: SUCCESS,
    **dict.fromkeys((50126, 50053, 50055, 50056, 50057, 50034, 50064, 50144), CREDENTIAL_FAILURE),
    **dict.fromkeys((50074, 50076, 50079, 50072, 50125, 50140, 50199), INTERRUPT),
    **dict.fromkeys((500121, 50158), MFA_FAILURE),
    **dict.fromkeys((53003, 53000, 53001, 530032, 530035), POLICY_BLOCK),
    **dict.fromkeys((70043, 70044, 50173, 50133, 50132, 70008, 700082, 50058), SESSION),
}


def kind_of(error_code: int) -> SignInKind:
    return CODES.get(error_code, FAILURE_OTHER)
