"""Directory-audit `activityDisplayName` -> Vigil activity type (data, easy to correct).

Names verbatim from Microsoft's audit-activity reference (learn.microsoft.com/entra/identity/
monitoring-health/reference-audit-activities). A name not listed is kept as `other` and counted.
"""

from __future__ import annotations

ROLE_ADDED = (
    "Add member to role",
    "Add eligible member to role",
    "Add scoped member to role",
    "Add member to role completed (PIM activation)",
    "Add member to role outside of PIM (permanent)",
    "Add member to role in PIM completed (permanent)",
)

AUDITS: dict[str, str] = {
    **dict.fromkeys(ROLE_ADDED, "admin_added"),
    "Remove member from role": "admin_removed",
    "Add role definition": "admin_role_changed",
    "Update role": "admin_role_changed",
    "Add user": "account_created",
    "Delete user": "account_deleted",
    "Disable account": "account_deactivated",
    "Enable account": "account_activated",
    "Update user": "account_updated",
    "Reset password": "password_reset",
    "Reset password (by admin)": "password_reset",
    "Reset password (self-service)": "password_reset",
    "Set force change user password": "forced_password_reset",
    "Change user password": "password_changed",
    "Unlock user account (self-service)": "account_unlocked",
    "Change user license": "license_changed",
    "Update StsRefreshTokenValidFrom Timestamp": "sessions_revoked",
    "Admin registered security info": "security_info_changed",
    "Admin updated security info": "security_info_changed",
    "Admin deleted security info": "security_info_changed",
    "Consent to application": "consent_granted",
    "Add delegated permission grant": "consent_granted",
    "Add app role assignment to service principal": "consent_granted",
    "Add service principal credentials": "credential_added",
    "Update application - Certificates and secrets management": "credential_added",
    "Remove service principal credentials": "credential_removed",
    "Add application": "integration_changed",
    "Add service principal": "integration_changed",
    "Add owner to application": "integration_changed",
    "Add owner to service principal": "integration_changed",
    "Add group": "group_created",
    "Delete group": "group_deleted",
    "Add member to group": "group_member_added",
    "Add owner to group": "group_owner_added",
    "Add Conditional Access policy": "policy_changed",
    "Update Conditional Access policy": "policy_changed",
    "Delete Conditional Access policy": "policy_changed",
    "Add named location": "policy_changed",
    "Update named location": "policy_changed",
    "Update security defaults": "policy_changed",
    "Update authorization policy": "policy_changed",
    "Set federation settings on domain": "domain_changed",
    "Set domain authentication": "domain_changed",
    "Add verified domain": "domain_added",
    "Add unverified domain": "domain_added",
    "Set Company Information": "tenant_changed",
    "Add a partner to cross-tenant access setting": "tenant_changed",
}

# Done by the user to themself: not administrative even though the directory logs it.
SELF_SERVICE = frozenset({"Reset password (self-service)", "Unlock user account (self-service)"})


def type_of(activity_name: str) -> str:
    return AUDITS.get(activity_name, "other")
