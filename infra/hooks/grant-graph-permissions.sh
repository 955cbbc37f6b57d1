#!/bin/sh
# Grant Vigil's managed identity its Microsoft Graph application permissions, for an admin who
# prefers a script to the Bicep extension (enableGraphRoleAssignment). Idempotent.
# Needs: az login as a user with Privileged Role Administrator (or AppRoleAssignment.ReadWrite.All
# + Application.Read.All).
#   infra/hooks/grant-graph-permissions.sh <identity principal id> [permission ...]
# Default permissions: User.Read.All User.RevokeSessions.All User.EnableDisableAccount.All, and
# Mail.Send with Mail.ReadBasic.All (notify reads its Sent Items before it could send twice) only
# when GOVERNANCE_MAIL_SENDER is set (as infra/main.bicep grants them). Add
# IdentityRiskyUser.ReadWrite.All on Entra ID P2 tenants; AuditLog.Read.All and GroupMember.Read.All
# are added when VIGIL_SOURCES includes entra (the sign-in and directory-audit logs, the directory's
# groups); leave the two Mail ones out to scope them
# to the sender mailbox with Exchange RBAC for Applications instead (README, "Deploy").
set -eu

principal="${1:-${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-}}"
[ -n "$principal" ] || { echo "usage: $0 <managed identity principal id> [permission ...]" >&2; exit 2; }
[ "$#" -gt 0 ] && shift
if [ "$#" -eq 0 ]; then
  set -- User.Read.All User.RevokeSessions.All User.EnableDisableAccount.All
  [ -z "${GOVERNANCE_MAIL_SENDER:-}" ] || set -- "$@" Mail.Send Mail.ReadBasic.All
  case ",${VIGIL_SOURCES:-workplace}," in
    *,entra,*) set -- "$@" AuditLog.Read.All GroupMember.Read.All ;;
  esac
fi

graph_app_id=00000003-0000-0000-c000-000000000000
graph_sp="$(az ad sp show --id "$graph_app_id" --query id -o tsv)"
existing="$(az rest --method GET \
  --url "https://graph.microsoft.com/v1.0/servicePrincipals/$principal/appRoleAssignments" \
  --query "value[?resourceId=='$graph_sp'].appRoleId" -o tsv)"

for permission in "$@"; do
  role="$(az ad sp show --id "$graph_app_id" --query "appRoles[?value=='$permission'].id | [0]" -o tsv)"
  [ -n "$role" ] || { echo "unknown Graph application permission: $permission" >&2; exit 1; }
  if printf '%s\n' "$existing" | grep -qx "$role"; then
    echo "already granted: $permission"
    continue
  fi
  az rest --method POST \
    --url "https://graph.microsoft.com/v1.0/servicePrincipals/$graph_sp/appRoleAssignedTo" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\": \"$principal\", \"resourceId\": \"$graph_sp\", \"appRoleId\": \"$role\"}" \
    -o none
  echo "granted: $permission"
done
