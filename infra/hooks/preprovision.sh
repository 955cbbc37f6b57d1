#!/bin/sh
# azd preprovision hook: keep the Key Vault name free.
# A deleted vault stays soft-deleted, its name taken, for its retention period (90 days, and with
# purge protection it cannot be purged sooner), so `azd down` then `azd up` with the same
# environment would fail on a fixed name. The vault name therefore takes a salt, KEY_VAULT_SALT,
# kept in the azd environment (infra/main.bicep, keyVaultSalt):
#   - a new environment gets a random salt;
#   - when the environment's vault (AZURE_KEY_VAULT_NAME) is soft-deleted, a new salt gives the
#     next provision a new vault name (the old vault and its secrets stay recoverable until purged).
# An environment provisioned before the salt existed keeps its vault name until that vault is
# deleted.
set -eu

new_salt() {
  od -An -N4 -tx1 /dev/urandom | tr -d ' \n'
}

if [ -z "${KEY_VAULT_SALT:-}" ] && [ -z "${AZURE_KEY_VAULT_NAME:-}" ]; then
  azd env set KEY_VAULT_SALT "$(new_salt)"
  echo "new environment: Key Vault name salt chosen (KEY_VAULT_SALT)"
  exit 0
fi

vault="${AZURE_KEY_VAULT_NAME:-}"
[ -n "$vault" ] || exit 0
if az keyvault show --name "$vault" --query id -o tsv >/dev/null 2>&1; then
  exit 0 # the vault exists: keep its name
fi
if az keyvault show-deleted --name "$vault" --query id -o tsv >/dev/null 2>&1; then
  azd env set KEY_VAULT_SALT "$(new_salt)"
  echo "Key Vault $vault is soft-deleted (azd down): this provision creates a vault with a new name."
  echo "  Its secrets are not copied: set WORKPLACE_APP_SECRET etc. again (azd env set) if blanked."
fi
