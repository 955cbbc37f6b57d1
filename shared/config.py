"""Vigil's settings: read once from the environment, validated, cached.

Every setting the code reads is listed in `SETTINGS` with its default and whether it is a secret;
the README's configuration table is checked against it by a test.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

from shared.governance.actions import ACTIONS

GovernanceMode = Literal["off", "dry-run", "enforce"]
GraphAuth = Literal["client-credentials", "managed-identity"]

DEV_STORAGE = "UseDevelopmentStorage=true"

# App Service leaves a Key Vault reference it could not resolve in the setting as written
# (learn.microsoft.com/azure/app-service/app-service-key-vault-references, "Troubleshoot").
KEY_VAULT_REFERENCE = "@microsoft.keyvault("


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it and says how to fix it."""


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: str | None  # None: no default (required when its feature is used)
    secret: bool
    description: str


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "AzureWebJobsStorage",
        DEV_STORAGE,
        True,
        "Storage connection string (Azurite locally). In Azure use the identity-based "
        "`AzureWebJobsStorage__*` settings instead.",
    ),
    SettingSpec(
        "AzureWebJobsStorage__tableServiceUri",
        None,
        False,
        "Identity-based storage: Table service URI (with `__queueServiceUri` and `__clientId`).",
    ),
    SettingSpec(
        "AzureWebJobsStorage__queueServiceUri",
        None,
        False,
        "Identity-based storage: Queue service URI.",
    ),
    SettingSpec(
        "AzureWebJobsStorage__clientId",
        None,
        False,
        "Client id of the user-assigned managed identity used for storage (identity-based).",
    ),
    SettingSpec("STORAGE_PREFIX", "vigil", False, "Prefix of every table name Vigil creates."),
    SettingSpec(
        "ACTIVITY_QUEUE",
        "activity",
        False,
        "Queue of activity batches for detection (the trigger's `%ACTIVITY_QUEUE%`).",
    ),
    SettingSpec(
        "GOVERN_QUEUE",
        "govern",
        False,
        "Queue of governance actions (the trigger's `%GOVERN_QUEUE%`).",
    ),
    SettingSpec("WORKPLACE_APP_ID", None, False, "Workplace app id (third-party install)."),
    SettingSpec(
        "WORKPLACE_APP_SECRET",
        None,
        True,
        "Workplace app secret: signs webhooks, `appsecret_proof`, code exchange.",
    ),
    SettingSpec(
        "WORKPLACE_REDIRECT_URI",
        None,
        False,
        "The Redirect URL registered for the app, e.g. "
        "`https://<app>.azurewebsites.net/api/workplace/callback`.",
    ),
    SettingSpec(
        "WORKPLACE_GRAPH_URL", "https://graph.workplace.com", False, "Workplace Graph API base URL."
    ),
    SettingSpec(
        "WORKPLACE_DIALOG_URL",
        "https://work.workplace.com/dialog/work/app_install/",
        False,
        "Workplace install dialog.",
    ),
    SettingSpec(
        "WORKPLACE_WEBHOOK_VERIFY_TOKEN",
        None,
        True,
        "The verify token entered on the app's webhook page (`hub.verify_token`).",
    ),
    SettingSpec("INSTALL_STATE_TTL_SECONDS", "600", False, "Lifetime of an install `state` nonce."),
    SettingSpec(
        "SECRET_ENCRYPTION_KEY",
        None,
        True,
        "Fernet key that encrypts stored Workplace tokens (required unless storage is Azurite, "
        "where a fixed development key is used).",
    ),
    SettingSpec(
        "GRAPH_URL", "https://graph.microsoft.com/v1.0", False, "Microsoft Graph base URL."
    ),
    SettingSpec(
        "GRAPH_AUTHORITY_HOST",
        "https://login.microsoftonline.com",
        False,
        "Entra ID authority host for the client-credentials flow.",
    ),
    SettingSpec("GRAPH_TENANT_ID", None, False, "Entra tenant id (required to govern)."),
    SettingSpec("GRAPH_CLIENT_ID", None, False, "App registration client id (required to govern)."),
    SettingSpec(
        "GRAPH_CLIENT_SECRET",
        None,
        True,
        "Client secret of the app registration (or use `GRAPH_CLIENT_CERTIFICATE_PATH`).",
    ),
    SettingSpec(
        "GRAPH_CLIENT_CERTIFICATE_PATH",
        None,
        False,
        "PEM file with the private key and certificate of the app registration.",
    ),
    SettingSpec(
        "GRAPH_CA_BUNDLE",
        None,
        False,
        "Extra CA bundle trusted for Entra and Graph (only the local simulator needs it).",
    ),
    SettingSpec("SYNC_SCHEDULE", "0 * * * * *", False, "NCRONTAB schedule of `sync_timer` (UTC)."),
    SettingSpec("SYNC_MAX_ENVELOPES", "500", False, "Webhook envelopes drained per timer run."),
    SettingSpec(
        "FAILED_LOGIN_THRESHOLD",
        "10",
        False,
        "Multiple failed logins: alert when a user has MORE than this many failures...",
    ),
    SettingSpec(
        "FAILED_LOGIN_WINDOW_MINUTES", "5", False, "...within this many minutes (event time)."
    ),
    SettingSpec(
        "FAILED_LOGIN_ACTIONS",
        "revoke_sessions",
        False,
        "Governance actions for a failed-logins alert, comma-separated (empty: none).",
    ),
    SettingSpec(
        "LEARNING_PERIOD_DAYS",
        "7",
        False,
        "Learning period of the baseline detections, per user and per tenant (event time): no "
        "baseline alerts meanwhile (the failed-login hard floor still fires).",
    ),
    SettingSpec(
        "POLICIES_PATH",
        None,
        False,
        "Folder (or file) of policy YAML: built-in switches and activity policies (default: the "
        "shipped `policies` folder).",
    ),
    SettingSpec(
        "IP_RANGES_PATH",
        None,
        False,
        "YAML of customer IP ranges (MDCA categories and tags) and risky IPs; beats built-in data.",
    ),
    SettingSpec("GEOIP_CITY_DB", None, False, "MaxMind City `.mmdb` (coordinates and radius)."),
    SettingSpec("GEOIP_ASN_DB", None, False, "MaxMind ASN `.mmdb`."),
    SettingSpec("GEOIP_ANONYMOUS_DB", None, False, "MaxMind Anonymous-IP `.mmdb`."),
    SettingSpec(
        "TOR_EXIT_LIST_URL",
        "https://check.torproject.org/torbulkexitlist",
        False,
        "Tor exit list fetched by `intel_timer` (bulk list or TorDNSEL exit-addresses).",
    ),
    SettingSpec(
        "TOR_REFRESH_SCHEDULE",
        "0 0 * * * *",
        False,
        "NCRONTAB schedule of `intel_timer` (UTC, six fields: hourly by default).",
    ),
    SettingSpec(
        "ACTIVITY_RETENTION_DAYS",
        "180",
        False,
        "Days activities (and quarantined deliveries) are kept, by event day; 0: forever.",
    ),
    SettingSpec(
        "ALERT_RETENTION_DAYS",
        "365",
        False,
        "Days alerts are kept, by when they were raised (event time); 0: forever.",
    ),
    SettingSpec(
        "RETENTION_SCHEDULE",
        "0 30 3 * * *",
        False,
        "NCRONTAB schedule of `retention_timer` (UTC, six fields: daily at 03:30).",
    ),
    SettingSpec(
        "GOVERNANCE_MODE",
        "dry-run",
        False,
        "`off` (record nothing is done), `dry-run` (record what would be sent), `enforce`.",
    ),
    SettingSpec(
        "GRAPH_AUTH",
        "client-credentials",
        False,
        "How Vigil gets its Graph token: `client-credentials` (MSAL with `GRAPH_CLIENT_SECRET` "
        "or `GRAPH_CLIENT_CERTIFICATE_PATH`) or `managed-identity` (azure-identity).",
    ),
    SettingSpec(
        "GRAPH_MANAGED_IDENTITY_CLIENT_ID",
        None,
        False,
        "Client id of the user-assigned managed identity for Graph (empty: system-assigned).",
    ),
    SettingSpec(
        "GOVERNANCE_MAIL_SENDER",
        None,
        False,
        "Mailbox (UPN or object id) that `notify_user` mail is sent from (required to notify).",
    ),
    SettingSpec(
        "GOVERNANCE_PROTECTED_ACCOUNTS",
        "",
        False,
        "Entra object ids (or UPNs) never acted on: break-glass accounts and admins, "
        "comma-separated.",
    ),
    SettingSpec(
        "GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR",
        "20",
        False,
        "Circuit breaker: automatic suspensions per tenant per hour (alert event time) above "
        "which Vigil raises an alert instead of suspending.",
    ),
    SettingSpec(
        "GOVERNANCE_MAX_ATTEMPTS",
        "8",
        False,
        "Attempts per governance action on throttling / unavailability before it fails.",
    ),
    SettingSpec(
        "GRAPH_USER_CACHE_HOURS",
        "24",
        False,
        "How long a Workplace e-mail -> Entra user match is cached.",
    ),
    SettingSpec(
        "AzureFunctionsJobHost__extensions__queues__maxDequeueCount",
        "5",
        False,
        "Deliveries before the host moves a queue message to `<queue>-poison` (host.json's "
        "value; governance records the move).",
    ),
    SettingSpec(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        None,
        False,
        "Application Insights connection string: when set, traces, logs and Vigil's metrics go "
        "to Azure Monitor through OpenTelemetry (`shared/telemetry.py`); unset, telemetry is off.",
    ),
    SettingSpec(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        None,
        False,
        "`ClientId=<managed identity client id>;Authorization=AAD`: send telemetry with Entra "
        "authentication (the component has local auth disabled).",
    ),
    SettingSpec(
        "WORKPLACE_ACCESS_TOKEN",
        None,
        True,
        "Custom integration mode: the access token an admin created in Workplace's Admin Panel "
        "(with `WORKPLACE_APP_SECRET` set to the integration's app secret). Set means this mode; "
        "there is no install flow and the community is read from `/community`.",
    ),
    SettingSpec(
        "KEY_VAULT_URL",
        None,
        False,
        "Key Vault (`https://<name>.vault.azure.net`) that keeps Workplace install tokens, read "
        "and written with the managed identity `AzureWebJobsStorage__clientId`. Unset: tokens are "
        "encrypted with `SECRET_ENCRYPTION_KEY` into a table.",
    ),
    SettingSpec(
        "WORKPLACE_DIRECTORY_SYNC_MINUTES",
        "60",
        False,
        "How often `sync_timer` snapshots each community's members, former members and admins.",
    ),
    SettingSpec(
        "WORKPLACE_DECOMMISSION_AFTER_FAILURES",
        "24",
        False,
        "Consecutive directory syncs failing the way calls fail after Workplace's shutdown (no "
        "answer, 404, token refused) before an install is `decommissioned`.",
    ),
    SettingSpec(
        "WORKPLACE_SHUTDOWN_DATE",
        "2026-06-01",
        False,
        "Workplace's end of access (ISO date, UTC): from then on such a failure decommissions "
        "the install at once.",
    ),
    SettingSpec(
        "APP_SERVICE_AUTH",
        "false",
        False,
        "`true` when App Service Authentication (Microsoft Entra ID) fronts the app "
        "(`infra/app/auth.bicep` sets it): only then is `X-MS-CLIENT-PRINCIPAL` believed, and "
        "the analyst API answers signed-in holders of Vigil.Reader / Vigil.Responder.",
    ),
    SettingSpec(
        "AUTOMATION_KEY",
        None,
        True,
        "A key automation sends in `x-functions-key` to use the analyst API without signing in "
        "(acts as `automation key` with Vigil.Responder's rights; recorded so in the audit "
        "log). Unset: only signed-in analysts.",
    ),
    SettingSpec(
        "VIGIL_SOURCES",
        "workplace",
        False,
        "Comma-separated sources `sync_timer` feeds the engine from: `workplace`, `entra` or both.",
    ),
    SettingSpec(
        "ENTRA_BACKFILL_DAYS",
        "7",
        False,
        "Entra source: days of sign-ins and directory audits the first run reads back (1-30; "
        "the logs are kept 30 days on P1/P2, 7 on Free).",
    ),
    SettingSpec(
        "ENTRA_OVERLAP_MINUTES",
        "30",
        False,
        "Entra source: minutes before the watermark each run reads again, for records Entra "
        "logs late (idempotent on the record id).",
    ),
    SettingSpec(
        "ENTRA_MAX_REQUESTS_PER_RUN",
        "12",
        False,
        "Entra source: Graph reporting requests one timer run makes at most (paced at 4 per 10 s).",
    ),
    SettingSpec(
        "ENTRA_NONINTERACTIVE_SIGNINS",
        "false",
        False,
        "Entra source: also pull non-interactive user sign-ins through Graph beta "
        "(`signInEventTypes`); beta is not supported by Microsoft in production.",
    ),
)

SOURCES = ("workplace", "entra")

_SPECS = {s.name: s for s in SETTINGS}


def is_unresolved_reference(value: str | None) -> bool:
    """A Key Vault reference App Service did not resolve: the literal `@Microsoft.KeyVault(...)`."""
    return value is not None and value.strip().lower().startswith(KEY_VAULT_REFERENCE)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if _SPECS[name].secret and is_unresolved_reference(value):
        return None  # never the reference string, never a default standing in for the secret
    if value is None or value.strip() == "":
        return _SPECS[name].default
    return value.strip()


def _unresolved(env: Mapping[str, str]) -> frozenset[str]:
    return frozenset(
        s.name for s in SETTINGS if s.secret and is_unresolved_reference(env.get(s.name))
    )


def _int(env: Mapping[str, str], name: str, minimum: int = 1) -> int:
    raw = _get(env, name)
    try:
        value = int(raw or "")
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _int_in(env: Mapping[str, str], name: str, lo: int, hi: int) -> int:
    value = _int(env, name, lo)
    if value > hi:
        raise ConfigError(f"{name} must be at most {hi}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (_get(env, name) or "").lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def _sources(env: Mapping[str, str]) -> tuple[str, ...]:
    names = [n.strip().lower() for n in (_get(env, "VIGIL_SOURCES") or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if not names or unknown:
        raise ConfigError(
            f"VIGIL_SOURCES must list one or more of {', '.join(SOURCES)}, got "
            f"{_get(env, 'VIGIL_SOURCES')!r}"
        )
    return tuple(dict.fromkeys(names))


def _date(env: Mapping[str, str], name: str) -> date:
    raw = _get(env, name) or ""
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an ISO date (YYYY-MM-DD), got {raw!r}") from None


def _require(
    name: str, value: str | None, purpose: str, unresolved: frozenset[str] = frozenset()
) -> str:
    if not value and name in unresolved:
        raise ConfigError(
            f"{name} is not set: it holds a Key Vault reference that App Service could not "
            f"resolve, and it is needed to {purpose}. Check that the secret exists and the app's "
            f"identity may read it, then refresh the references (README, Deploy)."
        )
    if not value:
        raise ConfigError(
            f"{name} is not set: it is needed to {purpose}. Add it to the Function App settings "
            f"(or to the environment / local.settings.json when running locally)."
        )
    return value


@dataclass(frozen=True)
class Settings:
    storage_connection: str | None
    table_service_uri: str | None
    queue_service_uri: str | None
    storage_client_id: str | None
    storage_prefix: str
    activity_queue: str
    govern_queue: str
    workplace_app_id: str | None
    workplace_app_secret: str | None
    workplace_redirect_uri: str | None
    workplace_graph_url: str
    workplace_dialog_url: str
    workplace_verify_token: str | None
    install_state_ttl_seconds: int
    secret_encryption_key: str | None
    graph_url: str
    graph_authority_host: str
    graph_tenant_id: str | None
    graph_client_id: str | None
    graph_client_secret: str | None
    graph_client_certificate_path: str | None
    graph_ca_bundle: str | None
    sync_schedule: str
    sync_max_envelopes: int
    failed_login_threshold: int
    failed_login_window_minutes: int
    failed_login_actions: tuple[str, ...]
    learning_period_days: int
    policies_path: str | None
    ip_ranges_path: str | None
    geoip_city_db: str | None
    geoip_asn_db: str | None
    geoip_anonymous_db: str | None
    tor_exit_list_url: str
    tor_refresh_schedule: str
    governance_mode: GovernanceMode
    graph_auth: GraphAuth = "client-credentials"
    graph_managed_identity_client_id: str | None = None
    governance_mail_sender: str | None = None
    governance_protected_accounts: frozenset[str] = frozenset()
    governance_max_suspensions_per_hour: int = 20
    governance_max_attempts: int = 8
    graph_user_cache_hours: int = 24
    max_dequeue_count: int = 5
    appinsights_connection_string: str | None = None
    appinsights_authentication_string: str | None = None
    workplace_access_token: str | None = None
    key_vault_url: str | None = None
    workplace_directory_sync_minutes: int = 60
    workplace_decommission_after_failures: int = 24
    workplace_shutdown_date: date = date(2026, 6, 1)
    sources: tuple[str, ...] = ("workplace",)
    entra_backfill_days: int = 7
    entra_overlap_minutes: int = 30
    entra_max_requests_per_run: int = 12
    entra_noninteractive_signins: bool = False
    # Secret settings whose value was a Key Vault reference App Service had not resolved.
    unresolved_references: frozenset[str] = frozenset()
    activity_retention_days: int = 180
    alert_retention_days: int = 365
    retention_schedule: str = "0 30 3 * * *"
    app_service_auth: bool = False
    automation_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        table_uri = _get(e, "AzureWebJobsStorage__tableServiceUri")
        queue_uri = _get(e, "AzureWebJobsStorage__queueServiceUri")
        connection = None if (table_uri and queue_uri) else _get(e, "AzureWebJobsStorage")
        mode = _get(e, "GOVERNANCE_MODE") or "dry-run"
        if mode not in ("off", "dry-run", "enforce"):
            raise ConfigError(f"GOVERNANCE_MODE must be off, dry-run or enforce, got {mode!r}")
        actions = tuple(
            a.strip() for a in (_get(e, "FAILED_LOGIN_ACTIONS") or "").split(",") if a.strip()
        )
        for action in actions:
            if action not in ACTIONS:
                raise ConfigError(
                    f"FAILED_LOGIN_ACTIONS: unknown action {action!r} (known: {', '.join(ACTIONS)})"
                )
        graph_auth = _get(e, "GRAPH_AUTH") or "client-credentials"
        if graph_auth not in ("client-credentials", "managed-identity"):
            raise ConfigError(
                f"GRAPH_AUTH must be client-credentials or managed-identity, got {graph_auth!r}"
            )
        prefix = _get(e, "STORAGE_PREFIX") or "vigil"
        if not prefix.isalnum() or not prefix[0].isalpha():
            raise ConfigError(f"STORAGE_PREFIX must be letters and digits, got {prefix!r}")
        return cls(
            storage_connection=connection,
            table_service_uri=table_uri,
            queue_service_uri=queue_uri,
            storage_client_id=_get(e, "AzureWebJobsStorage__clientId"),
            storage_prefix=prefix,
            activity_queue=_get(e, "ACTIVITY_QUEUE") or "activity",
            govern_queue=_get(e, "GOVERN_QUEUE") or "govern",
            workplace_app_id=_get(e, "WORKPLACE_APP_ID"),
            workplace_app_secret=_get(e, "WORKPLACE_APP_SECRET"),
            workplace_redirect_uri=_get(e, "WORKPLACE_REDIRECT_URI"),
            workplace_graph_url=(_get(e, "WORKPLACE_GRAPH_URL") or "").rstrip("/"),
            workplace_dialog_url=_get(e, "WORKPLACE_DIALOG_URL") or "",
            workplace_verify_token=_get(e, "WORKPLACE_WEBHOOK_VERIFY_TOKEN"),
            install_state_ttl_seconds=_int(e, "INSTALL_STATE_TTL_SECONDS"),
            secret_encryption_key=_get(e, "SECRET_ENCRYPTION_KEY"),
            graph_url=(_get(e, "GRAPH_URL") or "").rstrip("/"),
            graph_authority_host=(_get(e, "GRAPH_AUTHORITY_HOST") or "").rstrip("/"),
            graph_tenant_id=_get(e, "GRAPH_TENANT_ID"),
            graph_client_id=_get(e, "GRAPH_CLIENT_ID"),
            graph_client_secret=_get(e, "GRAPH_CLIENT_SECRET"),
            graph_client_certificate_path=_get(e, "GRAPH_CLIENT_CERTIFICATE_PATH"),
            graph_ca_bundle=_get(e, "GRAPH_CA_BUNDLE"),
            sync_schedule=_get(e, "SYNC_SCHEDULE") or "",
            sync_max_envelopes=_int(e, "SYNC_MAX_ENVELOPES"),
            failed_login_threshold=_int(e, "FAILED_LOGIN_THRESHOLD"),
            failed_login_window_minutes=_int(e, "FAILED_LOGIN_WINDOW_MINUTES"),
            failed_login_actions=actions,
            learning_period_days=_int(e, "LEARNING_PERIOD_DAYS", minimum=0),
            policies_path=_get(e, "POLICIES_PATH"),
            ip_ranges_path=_get(e, "IP_RANGES_PATH"),
            geoip_city_db=_get(e, "GEOIP_CITY_DB"),
            geoip_asn_db=_get(e, "GEOIP_ASN_DB"),
            geoip_anonymous_db=_get(e, "GEOIP_ANONYMOUS_DB"),
            tor_exit_list_url=_get(e, "TOR_EXIT_LIST_URL") or "",
            tor_refresh_schedule=_get(e, "TOR_REFRESH_SCHEDULE") or "",
            activity_retention_days=_int(e, "ACTIVITY_RETENTION_DAYS", minimum=0),
            alert_retention_days=_int(e, "ALERT_RETENTION_DAYS", minimum=0),
            retention_schedule=_get(e, "RETENTION_SCHEDULE") or "",
            governance_mode=mode,  # type: ignore[arg-type]
            graph_auth=graph_auth,  # type: ignore[arg-type]
            graph_managed_identity_client_id=_get(e, "GRAPH_MANAGED_IDENTITY_CLIENT_ID"),
            governance_mail_sender=_get(e, "GOVERNANCE_MAIL_SENDER"),
            governance_protected_accounts=frozenset(
                a.strip().lower()
                for a in (_get(e, "GOVERNANCE_PROTECTED_ACCOUNTS") or "").split(",")
                if a.strip()
            ),
            governance_max_suspensions_per_hour=_int(e, "GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR", 0),
            governance_max_attempts=_int(e, "GOVERNANCE_MAX_ATTEMPTS"),
            graph_user_cache_hours=_int(e, "GRAPH_USER_CACHE_HOURS", 0),
            max_dequeue_count=_int(e, "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"),
            appinsights_connection_string=_get(e, "APPLICATIONINSIGHTS_CONNECTION_STRING"),
            appinsights_authentication_string=_get(e, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
            workplace_access_token=_get(e, "WORKPLACE_ACCESS_TOKEN"),
            key_vault_url=(_get(e, "KEY_VAULT_URL") or "").rstrip("/") or None,
            workplace_directory_sync_minutes=_int(e, "WORKPLACE_DIRECTORY_SYNC_MINUTES"),
            workplace_decommission_after_failures=_int(e, "WORKPLACE_DECOMMISSION_AFTER_FAILURES"),
            workplace_shutdown_date=_date(e, "WORKPLACE_SHUTDOWN_DATE"),
            sources=_sources(e),
            entra_backfill_days=_int_in(e, "ENTRA_BACKFILL_DAYS", 1, 30),
            entra_overlap_minutes=_int(e, "ENTRA_OVERLAP_MINUTES", 0),
            entra_max_requests_per_run=_int(e, "ENTRA_MAX_REQUESTS_PER_RUN"),
            entra_noninteractive_signins=_bool(e, "ENTRA_NONINTERACTIVE_SIGNINS"),
            unresolved_references=_unresolved(e),
            app_service_auth=_bool(e, "APP_SERVICE_AUTH"),
            automation_key=_get(e, "AUTOMATION_KEY"),
        )

    # Each feature asks for what it needs, so a missing setting is reported where it matters.
    def require_secret(self, name: str, value: str | None, purpose: str) -> str:
        return _require(name, value, purpose, self.unresolved_references)

    def workplace_app(self) -> tuple[str, str]:
        return (
            _require("WORKPLACE_APP_ID", self.workplace_app_id, "install Vigil into Workplace"),
            self.require_secret(
                "WORKPLACE_APP_SECRET",
                self.workplace_app_secret,
                "verify Workplace webhooks and exchange install codes",
            ),
        )

    def webhook_secret(self) -> str:
        """The app secret: it signs webhooks and proofs in both token modes."""
        return self.require_secret(
            "WORKPLACE_APP_SECRET",
            self.workplace_app_secret,
            "verify Workplace webhooks and sign Graph calls (the app's or the custom "
            "integration's app secret)",
        )

    def redirect_uri(self) -> str:
        return _require(
            "WORKPLACE_REDIRECT_URI", self.workplace_redirect_uri, "complete the install flow"
        )

    def verify_token(self) -> str:
        return self.require_secret(
            "WORKPLACE_WEBHOOK_VERIFY_TOKEN",
            self.workplace_verify_token,
            "answer Workplace's webhook verification",
        )

    def graph_app(self) -> tuple[str, str]:
        tenant = _require("GRAPH_TENANT_ID", self.graph_tenant_id, "call Microsoft Graph")
        client = _require("GRAPH_CLIENT_ID", self.graph_client_id, "call Microsoft Graph")
        if self.graph_auth == "client-credentials" and not (
            self.graph_client_secret or self.graph_client_certificate_path
        ):
            if "GRAPH_CLIENT_SECRET" in self.unresolved_references:
                self.require_secret("GRAPH_CLIENT_SECRET", None, "call Microsoft Graph")
            raise ConfigError(
                "GRAPH_CLIENT_SECRET or GRAPH_CLIENT_CERTIFICATE_PATH must be set to call "
                "Microsoft Graph. Add one to the Function App settings."
            )
        return tenant, client

    @property
    def uses_dev_storage(self) -> bool:
        conn = self.storage_connection or ""
        return conn == DEV_STORAGE or "devstoreaccount1" in conn


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use (not at import, so tests can set the env first)."""
    return Settings.from_env()
