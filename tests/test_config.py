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
