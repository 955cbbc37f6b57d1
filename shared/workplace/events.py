"""Workplace security event names mapped to Vigil activity types (data, easy to correct).

The names are assumed (see ../shared/reference/workplace-events.md): only CUSTOM_INTEGRATION_EDIT
is attested. Unknown names are kept as generic activities, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.models import Outcome


@dataclass(frozen=True)
class EventKind:
    type: str  # Vigil activity type
    outcome: Outcome = "success"
    is_login: bool = False


EVENTS: dict[str, EventKind] = {
    "LOGIN": EventKind("login", is_login=True),
    "LOGIN_FAILED": EventKind("login_failed", "failure", is_login=True),
    "LOGOUT": EventKind("logout"),
    "FORCED_LOGOUT": EventKind("forced_logout"),
    "SSO_REAUTHENTICATION": EventKind("sso_reauthentication", is_login=True),
    "PASSWORD_CHANGED": EventKind("password_changed"),
    "PASSWORD_RESET_SUCCEEDED": EventKind("password_reset"),
    "PASSWORD_RESET_CODE_REQUESTED": EventKind("password_reset_requested"),
    "PASSWORD_RESET_INCORRECT_CODE": EventKind("password_reset_failed", "failure"),
    "FORCED_PASSWORD_RESET": EventKind("forced_password_reset"),
    "TWO_FACTOR_ENABLED": EventKind("two_factor_enabled"),
    "TWO_FACTOR_DISABLED": EventKind("two_factor_disabled"),
    "TWO_FACTOR_CODE_SUCCEEDED": EventKind("two_factor_succeeded"),
    "TWO_FACTOR_CODE_FAILED": EventKind("two_factor_failed", "failure"),
    "ACCOUNT_AT_RISK": EventKind("account_at_risk"),
    "ACCOUNT_UNCLAIMED": EventKind("account_unclaimed"),
    "ACCOUNT_DEACTIVATED": EventKind("account_deactivated"),
    "ACCOUNT_ACTIVATED": EventKind("account_activated"),
    "ACCOUNT_DELETED": EventKind("account_deleted"),
    "ACCOUNT_CREATED": EventKind("account_created"),
    "EMAIL_CHANGED": EventKind("email_changed"),
    "ADMIN_ROLE_CHANGED": EventKind("admin_role_changed"),
    "ADMIN_CREATED": EventKind("admin_added"),
    "ADMIN_REMOVED": EventKind("admin_removed"),
    "ACCOUNT_PROMOTED_TO_ADMIN": EventKind("admin_added"),
    "DOMAIN_ADDED": EventKind("domain_added"),
    "DOMAIN_REMOVED": EventKind("domain_removed"),
    "CUSTOM_INTEGRATION_EDIT": EventKind("integration_changed"),
    "FILE_DOWNLOADED": EventKind("file_downloaded"),
    "FILE_UPLOADED": EventKind("file_uploaded"),
}

# Vigil's own names for what a directory snapshot found changed (shared/workplace/directory.py).
EVENTS.update(
    {
        "DIRECTORY_ACCOUNT_DEACTIVATED": EventKind("account_deactivated"),
        "DIRECTORY_ACCOUNT_ACTIVATED": EventKind("account_activated"),
        "DIRECTORY_ACCOUNT_CREATED": EventKind("account_created"),
        "DIRECTORY_ACCOUNT_DELETED": EventKind("account_deleted"),
        "DIRECTORY_ADMIN_ADDED": EventKind("admin_added"),
        "DIRECTORY_ADMIN_REMOVED": EventKind("admin_removed"),
    }
)

UNKNOWN = EventKind("other")

# Every event under these change fields is administrative.
ADMIN_FIELDS = frozenset({"admin", "domain", "integrations"})
# Under these, an event is administrative when the actor acts on someone else.
ADMIN_IF_OTHER_TARGET = frozenset({"account", "password"})


def kind_of(event: str) -> EventKind:
    return EVENTS.get(event, UNKNOWN)
