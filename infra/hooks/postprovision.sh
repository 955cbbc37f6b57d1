#!/bin/sh
# azd postprovision hook: store Vigil's secrets in Key Vault (never in app settings, templates or
# deployment history), make the app's Key Vault references resolve, then print what to register
# with Workplace.
#   WORKPLACE_APP_SECRET, WORKPLACE_WEBHOOK_VERIFY_TOKEN and (custom integration mode)
#   WORKPLACE_ACCESS_TOKEN: taken from the azd environment when set
#   (`azd env set WORKPLACE_APP_SECRET ...`); otherwise left as they are in the vault.
# Tokens Vigil receives at install time are written to the same vault by the app (KEY_VAULT_URL).
# The deployer has Key Vault Secrets Officer on this vault only (infra/app/rbac.bicep).
#
# Each provision writes the app settings before this hook stores the secrets, so App Service may
# have cached a reference it could not resolve (it re-reads them only every 24 hours, and a plain
# restart is not documented to). The hook therefore forces the documented refresh
# (POST <app>/config/configreferences/appsettings/refresh, learn.microsoft.com/azure/app-service/
# app-service-key-vault-references#rotation) and checks each reference's status
# (GET <app>/config/configreferences/appsettings): a secret that is stored but not `Resolved`
# fails the hook with the setting and the reason; a secret not stored yet is listed as missing.
#
# VNet mode (VNET_ENABLED=true): the vault has no public access. To store secrets the hook opens it
# to KEY_VAULT_DEPLOYER_IP (your public address) and closes it again when done.
set -eu

vault="${AZURE_KEY_VAULT_NAME:?AZURE_KEY_VAULT_NAME is not set: run this from azd (azd provision)}"
attempts="${VIGIL_HOOK_ATTEMPTS:-8}"
pause="${VIGIL_HOOK_WAIT_SECONDS:-15}"
api="api-version=2022-03-01"
secret_file=""
opened_ip=""

cleanup() {
  [ -z "$secret_file" ] || rm -f "$secret_file"
  if [ -n "$opened_ip" ]; then
    az keyvault network-rule remove --name "$vault" --ip-address "$opened_ip/32" -o none || true
    az keyvault update --name "$vault" --public-network-access Disabled -o none &&
      echo "closed $vault to public access again"
  fi
}
trap cleanup EXIT

# VNet mode: let this machine reach the vault while the secrets are stored.
open_vault() {
  [ "${VNET_ENABLED:-false}" = true ] || return 0
  [ -z "$opened_ip" ] || return 0
  ip="${KEY_VAULT_DEPLOYER_IP:-}"
  if [ -z "$ip" ]; then
    echo "VNet mode: $vault accepts no public traffic. Set your public address and provision again:" >&2
    echo "  azd env set KEY_VAULT_DEPLOYER_IP <your public IPv4 address>" >&2
    exit 1
  fi
  az keyvault update --name "$vault" --public-network-access Enabled --default-action Deny -o none
  az keyvault network-rule add --name "$vault" --ip-address "$ip/32" -o none
  opened_ip="$ip"
  echo "opened $vault to $ip while the secrets are stored"
}

# Values go through a file so they never appear on a command line (ps) or in the log.
put_secret() {
  name="$1"
  open_vault
  secret_file="$(mktemp)"
  printf '%s' "$2" >"$secret_file"
  # A role assignment or network rule made just now can take a few minutes to reach Key Vault.
  attempt=1
  until az keyvault secret set --vault-name "$vault" --name "$name" --file "$secret_file" \
    --encoding utf-8 --query id -o none; do
    if [ "$attempt" -ge "$attempts" ]; then
      echo "could not store $name in $vault: do you have Key Vault Secrets Officer on it?" >&2
      exit 1
    fi
    echo "waiting for access to $vault to take effect ($attempt/$attempts)"
    attempt=$((attempt + 1))
    sleep "$pause"
  done
  rm -f "$secret_file"
  secret_file=""
  echo "stored $name in $vault"
}

# Setting -> secret; the Key Vault references in infra/main.bicep name the same secrets.
[ -z "${WORKPLACE_APP_SECRET:-}" ] || put_secret workplace-app-secret "$WORKPLACE_APP_SECRET"
[ -z "${WORKPLACE_WEBHOOK_VERIFY_TOKEN:-}" ] ||
  put_secret workplace-webhook-verify-token "$WORKPLACE_WEBHOOK_VERIFY_TOKEN"
[ -z "${WORKPLACE_ACCESS_TOKEN:-}" ] || put_secret workplace-access-token "$WORKPLACE_ACCESS_TOKEN"
[ -z "${NOTIFY_TEAMS_WEBHOOK_URL:-}" ] ||
  put_secret notify-teams-webhook-url "$NOTIFY_TEAMS_WEBHOOK_URL"
[ -z "${NOTIFY_WEBHOOK_URL:-}" ] || put_secret notify-webhook-url "$NOTIFY_WEBHOOK_URL"
[ -z "${NOTIFY_WEBHOOK_SECRET:-}" ] || put_secret notify-webhook-secret "$NOTIFY_WEBHOOK_SECRET"

# Make the app resolve its references now, and check that it did.
check_references() {
  app="${AZURE_FUNCTION_NAME:-}"
  if [ -z "$app" ]; then
    echo "AZURE_FUNCTION_NAME is not set: Key Vault references not refreshed" >&2
    return 0
  fi
  site="$(az functionapp show --name "$app" --resource-group "${AZURE_RESOURCE_GROUP:-}" \
    --query id -o tsv)"
  tab="$(printf '\t')"
  attempt=1
  while :; do
    # az rest prefixes a resource id with the current cloud's Resource Manager endpoint.
    az rest --method POST --url "$site/config/configreferences/appsettings/refresh?$api" -o none
    statuses="$(az rest --method GET --url "$site/config/configreferences/appsettings?$api" \
      --query "value[].[id, properties.secretName, properties.status, properties.details]" -o tsv)"
    failed=""
    missing=""
    while IFS="$tab" read -r id secret status details; do
      [ -n "$id" ] || continue
      setting="${id##*/}"
      case "$status" in
        Resolved) ;;
        SecretNotFound) missing="$missing
missing: secret $secret in $vault ($setting): azd env set $setting ..., then azd provision" ;;
        *) failed="$failed
  $setting (secret $secret): $status${details:+: $details}" ;;
      esac
    done <<STATUSES
$statuses
STATUSES
    if [ -z "$failed" ]; then
      [ -z "$missing" ] || printf '%s\n' "$missing"
      echo "Key Vault references of $app: resolved (except any missing above)"
      return 0
    fi
    if [ "$attempt" -ge "$attempts" ]; then
      echo "Key Vault references of $app did not resolve:$failed" >&2
      echo "The app reads these settings as unset. Check the identity's Key Vault role and (VNet" >&2
      echo "mode) the vault's private endpoint, then run azd provision again." >&2
      exit 1
    fi
    echo "waiting for the Key Vault references to resolve ($attempt/$attempts)"
    attempt=$((attempt + 1))
    sleep "$pause"
  done
}
check_references

url="${AZURE_FUNCTION_URL:-https://<app>.azurewebsites.net}"
cat <<NEXT

Vigil is provisioned. Register these with Workplace (README, "Deploy"):
  Webhook callback URL:   $url/api/workplace/webhook
  Redirect URL:           $url/api/workplace/callback
  Deauthorization URL:    $url/api/workplace/uninstall
  Install (function key): $url/api/workplace/install?code=<default function key>
Managed identity for Microsoft Graph: ${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:-<see azd env get-values>}
  (grant its permissions: ENABLE_GRAPH_ROLE_ASSIGNMENT=true, or infra/hooks/grant-graph-permissions.sh)
NEXT
