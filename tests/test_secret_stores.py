"""The Key Vault secret store's soft-delete handling, against an in-memory stand-in of the SDK's
SecretClient (Key Vault itself has no local emulator)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.config import Settings
from shared.secrets import KeyVaultSecretStore, TableSecretStore, secret_store_for


@dataclass
class _Poller:
    done: list[str]
    name: str

    def wait(self) -> None:
        self.done.append(self.name)


@dataclass
class _Secret:
    value: str


@dataclass
class FakeVault:
    """Key Vault's semantics that matter: soft delete, and a name in soft delete cannot be set."""

    live: dict[str, str] = field(default_factory=dict)
    deleted: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def get_secret(self, name: str) -> _Secret:
        if name not in self.live:
            raise ResourceNotFoundError(f"secret {name} not found")
        return _Secret(self.live[name])

    def set_secret(self, name: str, value: str, **kw: Any) -> None:
        if name in self.deleted:
            raise ResourceExistsError(f"secret {name} is in a deleted but recoverable state")
        self.live[name] = value

    def begin_delete_secret(self, name: str) -> _Poller:
        if name not in self.live:
            raise ResourceNotFoundError(f"secret {name} not found")
        self.deleted[name] = self.live.pop(name)
        return _Poller(self.calls, f"deleted {name}")

    def begin_recover_deleted_secret(self, name: str) -> _Poller:
        self.live[name] = self.deleted.pop(name)
        return _Poller(self.calls, f"recovered {name}")


def test_key_vault_store_sets_gets_deletes_and_recovers_after_an_uninstall() -> None:
    vault = FakeVault()
    store = KeyVaultSecretStore(vault)  # type: ignore[arg-type]
    assert store.get("workplace-token-1") is None
    store.set("workplace-token-1", "first")
    assert store.get("workplace-token-1") == "first"
    store.delete("workplace-token-1")
    store.delete("workplace-token-1")  # twice: an uninstall retried
    assert store.get("workplace-token-1") is None
    store.set("workplace-token-1", "second")  # a reinstall after the soft delete
    assert store.get("workplace-token-1") == "second"
    assert vault.calls == ["deleted workplace-token-1", "recovered workplace-token-1"]


def test_the_store_follows_key_vault_url(svc: Any) -> None:
    assert isinstance(svc.secrets, TableSecretStore)
    settings = Settings.from_env({"KEY_VAULT_URL": "https://vigil-kv.vault.azure.net/"})
    store = secret_store_for(settings, lambda: pytest.fail("no table in Key Vault mode"))
    assert isinstance(store, KeyVaultSecretStore)
