#!/bin/sh
# azd preprovision hook: keep the Key Vault name free.
# A deleted vault stays soft-deleted, its name taken, for its retention period (90 days, and with
# purge protection it cannot be purged sooner), so `azd down` then `azd up` with the same
# environment would fail on a fixed name. The vault name therefore takes a salt, KEY_VAULT_SALT
# (infra/main.bicep, keyVaultSalt; empty for a new environment):
#   1. the salt is the one the deployment recorded on its resource group (tag
#      vigil-key-vault-salt), so another machine or a CI runner finds it, or else (no resource
#      group: a new environment, or after `azd down`) the azd environment's;
#   2. when the vault of that salt is soft-deleted (deleted vaults keep their tags: azd-env-name,
#      vigil-key-vault-salt), a new random salt gives the next provision a vault name that is
#      free. The old vault and its secrets stay recoverable until they expire.
set -eu

env_name="${AZURE_ENV_NAME:?AZURE_ENV_NAME is not set: run this from azd (azd provision)}"
location="${AZURE_LOCATION:-}"

# While the resource group exists, its tag is the truth (another machine may have renewed it).
if recorded="$(az group show --name "rg-$env_name" --query 'tags."vigil-key-vault-salt"' \
  -o tsv 2>/dev/null)"; then
  salt="$recorded"
else
  salt="${KEY_VAULT_SALT:-}"
fi

deleted="$(az keyvault list-deleted --resource-type vault --query "[?properties.tags.\"azd-env-name\" == '$env_name' && properties.location == '$location' && (properties.tags.\"vigil-key-vault-salt\" || '') == '$salt'].name" -o tsv)"
if [ -n "$deleted" ]; then
  salt="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  echo "Key Vault $deleted is soft-deleted (azd down): this provision creates a vault with a new name."
  echo "  It starts empty: set the Workplace secrets again (azd env set ...) if you blanked them."
fi

if [ "$salt" != "${KEY_VAULT_SALT:-}" ]; then
  azd env set KEY_VAULT_SALT "$salt"
fi
