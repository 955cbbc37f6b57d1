import pytest

from shared.config import SETTINGS, ConfigError, Settings


def test_defaults_work_without_any_setting() -> None:
    s = Settings.from_env({})
    assert s.storage_connection == "UseDevelopmentStorage=true"
    assert s.governance_mode == "dry-run"
    assert s.sync_schedule == "0 * * * * *"
    assert (s.failed_login_threshold, s.failed_login_window_minutes) == (10, 5)
    assert s.workplace_graph_url == "https://graph.workplace.com"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GOVERNANCE_MODE": "yes"}, "GOVERNANCE_MODE"),
        ({"FAILED_LOGIN_THRESHOLD": "ten"}, "FAILED_LOGIN_THRESHOLD"),
        ({"FAILED_LOGIN_WINDOW_MINUTES": "0"}, "FAILED_LOGIN_WINDOW_MINUTES"),
        ({"FAILED_LOGIN_ACTIONS": "delete_user"}, "FAILED_LOGIN_ACTIONS"),
        ({"STORAGE_PREFIX": "no-dash"}, "STORAGE_PREFIX"),
    ],
)
def test_invalid_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_missing_feature_settings_are_reported_where_they_are_needed() -> None:
    s = Settings.from_env({})
    with pytest.raises(ConfigError, match="WORKPLACE_APP_ID is not set"):
        s.workplace_app()
    with pytest.raises(ConfigError, match="GRAPH_TENANT_ID is not set"):
        s.graph_app()
    with pytest.raises(ConfigError, match="GRAPH_CLIENT_SECRET or GRAPH_CLIENT_CERTIFICATE_PATH"):
        Settings.from_env({"GRAPH_TENANT_ID": "t", "GRAPH_CLIENT_ID": "c"}).graph_app()


def test_identity_based_storage_needs_no_connection_string() -> None:
    s = Settings.from_env(
        {
            "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net",
            "AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net",
        }
    )
    assert s.storage_connection is None


def test_every_setting_is_in_the_readme_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [spec.name for spec in SETTINGS if f"`{spec.name}`" not in readme]
    assert missing == []


REFERENCE = "@Microsoft.KeyVault(VaultName=kv-x;SecretName=workplace-app-secret)"


@pytest.mark.parametrize("name", [s.name for s in SETTINGS if s.secret])
def test_an_unresolved_key_vault_reference_is_not_a_secret(name: str) -> None:
    """App Service leaves a reference it could not resolve as the literal string."""
    s = Settings.from_env({name: f"  {REFERENCE.lower()} "})
    assert s.unresolved_references == {name}
    values = [v for v in vars(s).values() if isinstance(v, str)]
    assert not any("keyvault" in v.lower() for v in values)  # nor a default in its place
    assert Settings.from_env({name: "real-value"}).unresolved_references == frozenset()


@pytest.mark.parametrize(
    ("env", "read"),
    [
        ({"WORKPLACE_APP_ID": "1", "WORKPLACE_APP_SECRET": REFERENCE}, "workplace_app"),
        ({"WORKPLACE_APP_SECRET": REFERENCE}, "webhook_secret"),
        ({"WORKPLACE_WEBHOOK_VERIFY_TOKEN": REFERENCE}, "verify_token"),
        (
            {"GRAPH_TENANT_ID": "t", "GRAPH_CLIENT_ID": "c", "GRAPH_CLIENT_SECRET": REFERENCE},
            "graph_app",
        ),
    ],
)
def test_the_error_names_the_setting_whose_reference_did_not_resolve(
    env: dict[str, str], read: str
) -> None:
    name = next(k for k, v in env.items() if v == REFERENCE)
    with pytest.raises(ConfigError, match=f"{name} is not set: it holds a Key Vault reference"):
        getattr(Settings.from_env(env), read)()


def test_an_unresolved_encryption_key_is_reported_by_name() -> None:
    from shared.secrets import fernet_for

    env = {
        "SECRET_ENCRYPTION_KEY": REFERENCE,
        "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net",
        "AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net",
    }
    with pytest.raises(ConfigError, match="SECRET_ENCRYPTION_KEY is not set: it holds a Key"):
        fernet_for(Settings.from_env(env))
