"""Where Vigil keeps secrets it is given at run time (Workplace install tokens).

One small interface: Key Vault when `KEY_VAULT_URL` is set; otherwise every value is encrypted
with a Fernet key before it reaches Table Storage. Values are never logged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable
from typing import Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient
from azure.keyvault.secrets import SecretClient
from cryptography.fernet import Fernet, InvalidToken

from shared.config import ConfigError, StorageSettings

# Only ever used against Azurite, where nothing real is stored.
_DEV_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"vigil-local-development-only").digest())


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


def fernet_for(settings: StorageSettings) -> Fernet:
    key = settings.secret_encryption_key
    if not key:
        if "SECRET_ENCRYPTION_KEY" in settings.unresolved_references:
            settings.require_secret("SECRET_ENCRYPTION_KEY", None, "encrypt Workplace tokens")
        if not settings.uses_dev_storage:
            raise ConfigError(
                "SECRET_ENCRYPTION_KEY is not set: it encrypts Workplace tokens at rest. "
                "Generate one "
                'with `python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"` and add it to the Function App settings.'
            )
        return Fernet(_DEV_KEY)
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError(
            "SECRET_ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64 bytes)"
        ) from None


class TableSecretStore:
    """Secrets encrypted with Fernet in a table; the table holds only ciphertext."""

    PARTITION = "secret"

    def __init__(self, table: TableClient, fernet: Fernet) -> None:
        self._table, self._fernet = table, fernet

    def get(self, name: str) -> str | None:
        try:
            entity = self._table.get_entity(self.PARTITION, name)
        except ResourceNotFoundError:
            return None
        try:
            return self._fernet.decrypt(str(entity["Value"]).encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"secret {name!r} cannot be decrypted: SECRET_ENCRYPTION_KEY changed since it was "
                "stored. Restore the key or reinstall."
            ) from None

    def set(self, name: str, value: str) -> None:
        token = self._fernet.encrypt(value.encode()).decode()
        self._table.upsert_entity({"PartitionKey": self.PARTITION, "RowKey": name, "Value": token})

    def delete(self, name: str) -> None:
        """Gone afterwards; deleting what is not there is not an error (uninstall is retried)."""
        self._table.delete_entity(self.PARTITION, name)


class KeyVaultSecretStore:
    """Secrets in Azure Key Vault (KEY_VAULT_URL), with the app's managed identity.

    Names are Key Vault secret names (letters, digits and dashes). Deleting is Key Vault's soft
    delete; a token that comes back (a reinstall) is written after recovering it or as new.
    """

    def __init__(self, client: SecretClient) -> None:
        self._client = client

    @classmethod
    def for_settings(cls, settings: StorageSettings) -> KeyVaultSecretStore:
        from azure.identity import ManagedIdentityCredential

        assert settings.key_vault_url
        credential = ManagedIdentityCredential(client_id=settings.storage_client_id)
        return cls(SecretClient(settings.key_vault_url, credential))

    def get(self, name: str) -> str | None:
        try:
            return self._client.get_secret(name).value
        except ResourceNotFoundError:
            return None

    def set(self, name: str, value: str) -> None:
        try:
            self._client.set_secret(name, value, content_type="workplace-access-token")
        except ResourceExistsError:  # soft-deleted by an uninstall: recover, then overwrite
            self._client.begin_recover_deleted_secret(name).wait()
            self._client.set_secret(name, value, content_type="workplace-access-token")

    def delete(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self._client.begin_delete_secret(name).wait()


def secret_store_for(settings: StorageSettings, table: Callable[[], TableClient]) -> SecretStore:
    """Key Vault when KEY_VAULT_URL is set; otherwise Fernet-encrypted rows in a table."""
    if settings.key_vault_url:
        return KeyVaultSecretStore.for_settings(settings)
    return TableSecretStore(table(), fernet_for(settings))
