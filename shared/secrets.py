"""Where Vigil keeps secrets it is given at run time (Workplace install tokens).

One small interface, so Key Vault can plug in; the local implementation encrypts every value
with a Fernet key before it reaches Table Storage, and never logs it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Protocol

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from cryptography.fernet import Fernet, InvalidToken

from shared.config import ConfigError, Settings

# Only ever used against Azurite, where nothing real is stored.
_DEV_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"vigil-local-development-only").digest())


class SecretStore(Protocol):
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


def fernet_for(settings: Settings) -> Fernet:
    key = settings.secret_encryption_key
    if not key:
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
        self._table.delete_entity(self.PARTITION, name)
