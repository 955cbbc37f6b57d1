#!/bin/sh
# azd postprovision hook: store Vigil's secrets in Key Vault (never in app settings, templates or
# deployment history), then print what to register with Workplace.
#   WORKPLACE_APP_SECRET, WORKPLACE_WEBHOOK_VERIFY_TOKEN and (custom integration mode)
#   WORKPLACE_ACCESS_TOKEN: taken from the azd environment when set
#   (`azd env set WORKPLACE_APP_SECRET ...`); otherwise left as they are in the vault.
# Tokens Vigil receives at install time are written to the same vault by the app (KEY_VAULT_URL).
# The deployer has Key Vault Secrets Officer on this vault only (infra/app/rbac.bicep).
set -eu

vault="${AZURE_KEY_VAULT_NAME:?AZURE_KEY_VAULT_NAME is not set: run this from azd (azd provision)}"

has_secret() {
  az keyvault secret show --vault-name "$vault" --name "$1" --query id -o tsv >/dev/null 2>&1
}

# Values go through a file so they never appear on a command line (ps) or in the log.
put_secret() {
  name="$1"
  file="$(mktemp)"
  trap 'rm -f "$file"' EXIT
  printf '%s' "$2" >"$file"
  # A role assignment made by this same provision can take a few minutes to reach Key Vault.
  attempt=1
  until az keyvault secret set --vault-name "$vault" --name "$name" --file "$file" \
    --encoding utf-8 --query id -o none; do
    if [ "$attempt" -ge 8 ]; then
      echo "could not store $name in $vault: do you have Key Vault Secrets Officer on it?" >&2
      exit 1
    fi
    echo "waiting for the Key Vault role assignment to take effect ($attempt/8)"
    attempt=$((attempt + 1))
    sleep 15
  done
  rm -f "$file"
  echo "stored $name in $vault"
}

changed=0
if [ -n "${WORKPLACE_APP_SECRET:-}" ]; then
  put_secret workplace-app-secret "$WORKPLACE_APP_SECRET"
  changed=1
fi
if [ -n "${WORKPLACE_WEBHOOK_VERIFY_TOKEN:-}" ]; then
  put_secret workplace-webhook-verify-token "$WORKPLACE_WEBHOOK_VERIFY_TOKEN"
  changed=1
fi
if [ -n "${WORKPLACE_ACCESS_TOKEN:-}" ]; then
  put_secret workplace-access-token "$WORKPLACE_ACCESS_TOKEN"
  changed=1
fi
for name in workplace-app-secret workplace-webhook-verify-token; do
  has_secret "$name" || echo "missing: secret $name in $vault (azd env set, then azd provision)"
done

if [ "$changed" = 1 ] && [ -n "${AZURE_FUNCTION_NAME:-}" ]; then
  # Key Vault references are re-read when the app restarts.
  az functionapp restart --name "$AZURE_FUNCTION_NAME" --resource-group "${AZURE_RESOURCE_GROUP:-}" \
    >/dev/null 2>&1 || true
fi

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
