"""The governance actions Vigil knows: the one list every setting, policy and queue message uses."""

from __future__ import annotations

NOTIFY_USER = "notify_user"
REVOKE_SESSIONS = "revoke_sessions"
SUSPEND_USER = "suspend_user"
CONFIRM_COMPROMISED = "confirm_compromised"
WORKPLACE_LOGOUT = "workplace_logout"
WORKPLACE_DEACTIVATE = "workplace_deactivate"

ACTIONS: tuple[str, ...] = (
    NOTIFY_USER,
    REVOKE_SESSIONS,
    SUSPEND_USER,
    CONFIRM_COMPROMISED,
    WORKPLACE_LOGOUT,
    WORKPLACE_DEACTIVATE,
)

# Taken in Workplace (with the community's token) rather than in Entra ID (Microsoft Graph).
WORKPLACE_ACTIONS = frozenset({WORKPLACE_LOGOUT, WORKPLACE_DEACTIVATE})
# Lock a person out of their account; the circuit breaker counts these.
SUSPENSIONS = frozenset({SUSPEND_USER, WORKPLACE_DEACTIVATE})
# Those that have an inverse; revoked sessions, logouts and sent mail cannot be undone.
REVERSIBLE = frozenset({SUSPEND_USER, WORKPLACE_DEACTIVATE, CONFIRM_COMPROMISED})
