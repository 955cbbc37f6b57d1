"""Vigil's settings, each declared once, by the feature that reads it.

Every setting is a field of its feature's group below, annotated with its `Setting` declaration
(environment name, default, secret, documentation; `shared/settings_schema.py` parses it by the
field's type). `Settings` is every group at once: a function that needs one feature's settings
takes that group's type, so it can read nothing else, and is handed `Settings` or the group.

Nothing is read at import: `get_settings()` (or `<Group>.from_env()`) reads the environment
when first called, from a handler or the app's start. `python -m shared.config markdown`
prints the README's configuration table; a test keeps the README equal to it.
"""

import functools
import os
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import urlsplit

from shared.settings_schema import ConfigError as ConfigError
from shared.settings_schema import (
    Declared,
    Setting,
    declarations,
    markdown,
    parse,
    require,
    unresolved,
)
from shared.settings_schema import is_unresolved_reference as is_unresolved_reference

GovernanceMode = Literal["off", "dry-run", "enforce"]
GraphAuth = Literal["client-credentials", "managed-identity"]

DEV_STORAGE = "UseDevelopmentStorage=true"
# Every source Vigil reads (`Activity.source`): VIGIL_SOURCES' choices, and the one list the rest
# names them from (`shared/sources.py` holds each one's parts).
SOURCES = ("workplace", "entra")


def _table_prefix(prefix: str) -> bool:
    return prefix.isalnum() and prefix[0].isalpha()


@dataclass(frozen=True, kw_only=True, repr=False)
class SettingsGroup:
    """One feature's settings, read from the environment when asked."""

    FEATURE: ClassVar[str] = ""
    # Secret settings whose value was a Key Vault reference App Service had not resolved.
    unresolved_references: frozenset[str] = frozenset()

    @classmethod
    def declared(cls) -> tuple[Declared, ...]:
        """The group's settings, in declaration order."""
        if cls not in _DECLARED:
            _DECLARED[cls] = tuple(declarations(cls, cls.FEATURE))
        return _DECLARED[cls]

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, actions: Collection[str] | None = None
    ) -> Self:
        """The group's settings from `env` (the process environment by default), validated.

        `actions`: the governance action names FAILED_LOGIN_ACTIONS may list (governance knows
        them; given None, only their form is read).
        """
        e = os.environ if env is None else env
        declared = cls.declared()
        values = {d.attr: parse(d, e, actions) for d in declared}
        return cls(**values, unresolved_references=unresolved(e, declared))

    def __repr__(self) -> str:
        """The fields, each secret that is set shown as `<secret>` (so a log never holds it)."""
        secret = {d.attr for d in self.declared() if d.setting.secret}
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown.append(f"{f.name}={'<secret>' if f.name in secret and value else repr(value)}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def require_secret(self, name: str, value: str | None, purpose: str) -> str:
        """A secret the feature needs, or an error that says whether its reference failed."""
        return require(name, value, purpose, self.unresolved_references)


_DECLARED: dict[type[SettingsGroup], tuple[Declared, ...]] = {}


@dataclass(frozen=True, kw_only=True, repr=False)
class StorageSettings(SettingsGroup):
    FEATURE = "Storage, queues and install tokens"

    storage_connection: Annotated[
        str | None,
        Setting(
            "AzureWebJobsStorage",
            DEV_STORAGE,
            "Storage connection string (Azurite locally). In Azure use the identity-based "
            "`AzureWebJobsStorage__*` settings instead.",
            secret=True,
        ),
    ]
    table_service_uri: Annotated[
        str | None,
        Setting(
            "AzureWebJobsStorage__tableServiceUri",
            None,
            "Identity-based storage: Table service URI (with `__queueServiceUri` and "
            "`__clientId`).",
        ),
    ]
    queue_service_uri: Annotated[
        str | None,
        Setting(
            "AzureWebJobsStorage__queueServiceUri",
            None,
            "Identity-based storage: Queue service URI.",
        ),
    ]
    storage_client_id: Annotated[
        str | None,
        Setting(
            "AzureWebJobsStorage__clientId",
            None,
            "Client id of the user-assigned managed identity used for storage (identity-based).",
        ),
    ]
    storage_prefix: Annotated[
        str,
        Setting(
            "STORAGE_PREFIX",
            "vigil",
            "Prefix of every table name Vigil creates.",
            check=_table_prefix,
            check_doc="letters and digits",
        ),
    ]
    activity_queue: Annotated[
        str,
        Setting(
            "ACTIVITY_QUEUE",
            "activity",
            "Queue of activity batches for detection (the trigger's `%ACTIVITY_QUEUE%`).",
        ),
    ]
    govern_queue: Annotated[
        str,
        Setting(
            "GOVERN_QUEUE",
            "govern",
            "Queue of governance actions (the trigger's `%GOVERN_QUEUE%`).",
        ),
    ]
    secret_encryption_key: Annotated[
        str | None,
        Setting(
            "SECRET_ENCRYPTION_KEY",
            None,
            "Fernet key that encrypts stored Workplace tokens (required unless storage is "
            "Azurite, where a fixed development key is used).",
            secret=True,
        ),
    ]
    key_vault_url: Annotated[
        str | None,
        Setting(
            "KEY_VAULT_URL",
            None,
            "Key Vault (`https://<name>.vault.azure.net`) for Workplace install tokens, used with "
            "the managed identity `AzureWebJobsStorage__clientId`. Unset: tokens are encrypted "
            "with `SECRET_ENCRYPTION_KEY` into a table.",
            url=True,
        ),
    ]

    def __post_init__(self) -> None:
        if self.table_service_uri and self.queue_service_uri:  # identity-based: no keys
            object.__setattr__(self, "storage_connection", None)

    @property
    def uses_dev_storage(self) -> bool:
        conn = self.storage_connection or ""
        return conn == DEV_STORAGE or "devstoreaccount1" in conn


@dataclass(frozen=True, kw_only=True, repr=False)
class WorkplaceSettings(SettingsGroup):
    FEATURE = "Workplace connector"

    workplace_app_id: Annotated[
        str | None, Setting("WORKPLACE_APP_ID", None, "Workplace app id (third-party install).")
    ]
    workplace_app_secret: Annotated[
        str | None,
        Setting(
            "WORKPLACE_APP_SECRET",
            None,
            "Workplace app secret: signs webhooks, `appsecret_proof`, code exchange.",
            secret=True,
        ),
    ]
    workplace_redirect_uri: Annotated[
        str | None,
        Setting(
            "WORKPLACE_REDIRECT_URI",
            None,
            "The Redirect URL registered for the app, e.g. "
            "`https://<app>.azurewebsites.net/api/workplace/callback`.",
        ),
    ]
    workplace_graph_url: Annotated[
        str,
        Setting(
            "WORKPLACE_GRAPH_URL",
            "https://graph.workplace.com",
            "Workplace Graph API base URL.",
            url=True,
        ),
    ]
    workplace_dialog_url: Annotated[
        str,
        Setting(
            "WORKPLACE_DIALOG_URL",
            "https://work.workplace.com/dialog/work/app_install/",
            "Workplace install dialog.",
        ),
    ]
    workplace_verify_token: Annotated[
        str | None,
        Setting(
            "WORKPLACE_WEBHOOK_VERIFY_TOKEN",
            None,
            "The verify token entered on the app's webhook page (`hub.verify_token`).",
            secret=True,
        ),
    ]
    install_state_ttl_seconds: Annotated[
        int,
        Setting("INSTALL_STATE_TTL_SECONDS", "600", "Lifetime of an install `state` nonce."),
    ]
    workplace_access_token: Annotated[
        str | None,
        Setting(
            "WORKPLACE_ACCESS_TOKEN",
            None,
            "Custom integration mode: the token an admin created in Workplace's Admin Panel "
            "(with `WORKPLACE_APP_SECRET` = the integration's app secret). Set means this mode: "
            "no install flow, the community comes from `/community`.",
            secret=True,
        ),
    ]
    workplace_directory_sync_minutes: Annotated[
        int,
        Setting(
            "WORKPLACE_DIRECTORY_SYNC_MINUTES",
            "60",
            "How often `sync_timer` snapshots each community's members, former members and "
            "admins.",
        ),
    ]
    workplace_decommission_after_failures: Annotated[
        int,
        Setting(
            "WORKPLACE_DECOMMISSION_AFTER_FAILURES",
            "24",
            "Consecutive directory syncs failing the way calls fail after Workplace's shutdown "
            "(no answer, 404, token refused) before an install becomes `decommissioned`.",
        ),
    ]
    workplace_shutdown_date: Annotated[
        date,
        Setting(
            "WORKPLACE_SHUTDOWN_DATE",
            "2026-06-01",
            "Workplace's end of access (UTC): from then on such a failure decommissions the "
            "install at once.",
        ),
    ]

    # Each feature asks for what it needs, so a missing setting is reported where it matters.
    def workplace_app(self) -> tuple[str, str]:
        return (
            require("WORKPLACE_APP_ID", self.workplace_app_id, "install Vigil into Workplace"),
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
        return require(
            "WORKPLACE_REDIRECT_URI", self.workplace_redirect_uri, "complete the install flow"
        )

    def verify_token(self) -> str:
        return self.require_secret(
            "WORKPLACE_WEBHOOK_VERIFY_TOKEN",
            self.workplace_verify_token,
            "answer Workplace's webhook verification",
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class SyncSettings(SettingsGroup):
    FEATURE = "Sources and sync"

    sources: Annotated[
        tuple[str, ...],
        Setting(
            "VIGIL_SOURCES",
            "workplace",
            "Comma-separated sources `sync_timer` feeds the engine from: `workplace`, `entra` or "
            "both. See [Entra ID source](#entra-id-source).",
            choices=SOURCES,
        ),
    ]
    sync_schedule: Annotated[
        str,
        Setting(
            "SYNC_SCHEDULE",
            "0 * * * * *",
            "NCRONTAB schedule of `sync_timer` (UTC, six fields: every minute by default).",
        ),
    ]
    sync_max_envelopes: Annotated[
        int,
        Setting("SYNC_MAX_ENVELOPES", "500", "Webhook envelopes drained per timer run."),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class GraphSettings(SettingsGroup):
    FEATURE = "Microsoft Graph (governance and the Entra ID source)"

    graph_url: Annotated[
        str,
        Setting(
            "GRAPH_URL", "https://graph.microsoft.com/v1.0", "Microsoft Graph base URL.", url=True
        ),
    ]
    graph_authority_host: Annotated[
        str,
        Setting(
            "GRAPH_AUTHORITY_HOST",
            "https://login.microsoftonline.com",
            "Entra ID authority host for the client-credentials flow.",
            url=True,
        ),
    ]
    graph_tenant_id: Annotated[
        str | None, Setting("GRAPH_TENANT_ID", None, "Entra tenant id (required to govern).")
    ]
    graph_client_id: Annotated[
        str | None,
        Setting("GRAPH_CLIENT_ID", None, "App registration client id (required to govern)."),
    ]
    graph_client_secret: Annotated[
        str | None,
        Setting(
            "GRAPH_CLIENT_SECRET",
            None,
            "Client secret of the app registration (or use `GRAPH_CLIENT_CERTIFICATE_PATH`).",
            secret=True,
        ),
    ]
    graph_client_certificate_path: Annotated[
        str | None,
        Setting(
            "GRAPH_CLIENT_CERTIFICATE_PATH",
            None,
            "PEM file with the private key and certificate of the app registration.",
        ),
    ]
    graph_ca_bundle: Annotated[
        str | None,
        Setting(
            "GRAPH_CA_BUNDLE",
            None,
            "Extra CA bundle trusted for Entra and Graph (only the local simulator needs it).",
        ),
    ]
    graph_auth: Annotated[
        GraphAuth,
        Setting(
            "GRAPH_AUTH",
            "client-credentials",
            "How governance gets its Graph token: `client-credentials` (MSAL, with "
            "`GRAPH_CLIENT_SECRET` or `GRAPH_CLIENT_CERTIFICATE_PATH`) or `managed-identity` "
            "(azure-identity `ManagedIdentityCredential`; no secret).",
        ),
    ]
    graph_managed_identity_client_id: Annotated[
        str | None,
        Setting(
            "GRAPH_MANAGED_IDENTITY_CLIENT_ID",
            None,
            "Client id of the user-assigned managed identity used for Graph (empty: the "
            "system-assigned one).",
        ),
    ]

    def graph_app(self) -> tuple[str, str]:
        tenant = require("GRAPH_TENANT_ID", self.graph_tenant_id, "call Microsoft Graph")
        client = require("GRAPH_CLIENT_ID", self.graph_client_id, "call Microsoft Graph")
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


@dataclass(frozen=True, kw_only=True, repr=False)
class EntraSettings(SettingsGroup):
    FEATURE = "Entra ID source"

    entra_backfill_days: Annotated[
        int,
        Setting(
            "ENTRA_BACKFILL_DAYS",
            "7",
            "Entra source: days of sign-ins and directory audits the first run reads back (1-30; "
            "the logs are kept 30 days on P1/P2, 7 on Free).",
            maximum=30,
        ),
    ]
    entra_overlap_minutes: Annotated[
        int,
        Setting(
            "ENTRA_OVERLAP_MINUTES",
            "30",
            "Entra source: minutes before the watermark each run reads again, for records Entra "
            "logs late (idempotent on the record id).",
            minimum=0,
        ),
    ]
    entra_max_requests_per_run: Annotated[
        int,
        Setting(
            "ENTRA_MAX_REQUESTS_PER_RUN",
            "12",
            "Entra source: Graph reporting requests one timer run makes at most (paced at 4 per "
            "10 s).",
        ),
    ]
    entra_noninteractive_signins: Annotated[
        bool,
        Setting(
            "ENTRA_NONINTERACTIVE_SIGNINS",
            "false",
            "Entra source: also pull non-interactive user sign-ins through Graph beta "
            "(`signInEventTypes`); beta is not supported by Microsoft in production.",
        ),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class DetectionSettings(SettingsGroup):
    FEATURE = "Detection"

    failed_login_threshold: Annotated[
        int,
        Setting(
            "FAILED_LOGIN_THRESHOLD",
            "10",
            "Multiple failed logins: alert when a user has more than this many failures...",
        ),
    ]
    failed_login_window_minutes: Annotated[
        int,
        Setting("FAILED_LOGIN_WINDOW_MINUTES", "5", "...within this many minutes (event time)."),
    ]
    failed_login_actions: Annotated[
        tuple[str, ...],
        Setting(
            "FAILED_LOGIN_ACTIONS",
            "revoke_sessions",
            "Governance actions for a failed-logins alert, comma-separated (empty: none).",
            actions=True,
        ),
    ]
    learning_period_days: Annotated[
        int,
        Setting(
            "LEARNING_PERIOD_DAYS",
            "7",
            "Learning period of the baseline detections, per user and per tenant (event time); "
            "the failed-login hard floor fires during it.",
            minimum=0,
        ),
    ]
    policies_path: Annotated[
        str | None,
        Setting(
            "POLICIES_PATH",
            None,
            "Folder (or file) of policy YAML: built-in switches and activity policies.",
            shown_default="the shipped `policies` folder",
        ),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class IpIntelSettings(SettingsGroup):
    FEATURE = "IP intelligence"

    ip_ranges_path: Annotated[
        str | None,
        Setting(
            "IP_RANGES_PATH",
            None,
            "YAML of customer IP ranges (MDCA categories and tags) and risky IPs; beats built-in "
            "data.",
        ),
    ]
    geoip_city_db: Annotated[
        str | None,
        Setting("GEOIP_CITY_DB", None, "MaxMind City `.mmdb` (coordinates and `accuracy_radius`)."),
    ]
    geoip_asn_db: Annotated[str | None, Setting("GEOIP_ASN_DB", None, "MaxMind ASN `.mmdb`.")]
    geoip_anonymous_db: Annotated[
        str | None, Setting("GEOIP_ANONYMOUS_DB", None, "MaxMind Anonymous-IP `.mmdb`.")
    ]
    tor_exit_list_url: Annotated[
        str,
        Setting(
            "TOR_EXIT_LIST_URL",
            "https://check.torproject.org/torbulkexitlist",
            "Tor exit list fetched by `intel_timer` (bulk list or TorDNSEL `exit-addresses`).",
        ),
    ]
    tor_refresh_schedule: Annotated[
        str,
        Setting(
            "TOR_REFRESH_SCHEDULE",
            "0 0 * * * *",
            "NCRONTAB schedule of `intel_timer` (UTC, six fields: hourly).",
        ),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class GovernanceSettings(SettingsGroup):
    FEATURE = "Governance"

    governance_mode: Annotated[
        GovernanceMode,
        Setting(
            "GOVERNANCE_MODE",
            "dry-run",
            "`off` (record that nothing was done), `dry-run` (record the request that would be "
            "sent), `enforce`.",
        ),
    ]
    graph_user_cache_hours: Annotated[
        int,
        Setting(
            "GRAPH_USER_CACHE_HOURS",
            "24",
            "How long a Workplace e-mail -> Entra user match is cached (table `EntraUsers`; "
            "misses are not cached).",
            minimum=0,
        ),
    ]
    governance_mail_sender: Annotated[
        str | None,
        Setting(
            "GOVERNANCE_MAIL_SENDER",
            None,
            "Mailbox (UPN or object id) `notify_user` sends from; scope Mail.Send to it (see "
            "Deploy). Unset: notify actions fail and say so.",
        ),
    ]
    governance_protected_accounts: Annotated[
        frozenset[str],
        Setting(
            "GOVERNANCE_PROTECTED_ACCOUNTS",
            "",
            "Comma-separated Entra object ids (preferred) or UPNs / Workplace ids never acted "
            "on: break-glass accounts, admins. Only `notify_user` still reaches them; a skip "
            "raises a high alert.",
        ),
    ]
    governance_max_suspensions_per_hour: Annotated[
        int,
        Setting(
            "GOVERNANCE_MAX_SUSPENSIONS_PER_HOUR",
            "20",
            "Circuit breaker: automatic `suspend_user` / `workplace_deactivate` per tenant within "
            "an hour of the alert's event time; beyond it the action is skipped and a high alert "
            "raised.",
            minimum=0,
        ),
    ]
    governance_max_attempts: Annotated[
        int,
        Setting(
            "GOVERNANCE_MAX_ATTEMPTS",
            "8",
            "Attempts per action on 429 / 5xx / unreachable before it fails for good.",
        ),
    ]
    max_dequeue_count: Annotated[
        int,
        Setting(
            "AzureFunctionsJobHost__extensions__queues__maxDequeueCount",
            "5",
            "The host's deliveries before `<queue>-poison` (as in host.json); governance reads "
            "it to record the move on the action.",
        ),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class RetentionSettings(SettingsGroup):
    FEATURE = "Data retention"

    activity_retention_days: Annotated[
        int,
        Setting(
            "ACTIVITY_RETENTION_DAYS",
            "180",
            "Days activities (and quarantined deliveries) are kept, by event day; `0`: forever.",
            minimum=0,
        ),
    ]
    alert_retention_days: Annotated[
        int,
        Setting(
            "ALERT_RETENTION_DAYS",
            "365",
            "Days alerts are kept, by when they were raised (event time); `0`: forever.",
            minimum=0,
        ),
    ]
    retention_schedule: Annotated[
        str,
        Setting(
            "RETENTION_SCHEDULE",
            "0 30 3 * * *",
            "NCRONTAB schedule of `retention_timer` (UTC, six fields: daily at 03:30).",
        ),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class AnalystApiSettings(SettingsGroup):
    FEATURE = "Analyst API"

    app_service_auth: Annotated[
        bool,
        Setting(
            "APP_SERVICE_AUTH",
            "false",
            "`true` when App Service Authentication (Microsoft Entra ID) fronts the app "
            "(`infra/app/auth.bicep` sets it): only then is `X-MS-CLIENT-PRINCIPAL` believed, "
            "and the analyst API answers signed-in holders of Vigil.Reader / Vigil.Responder.",
        ),
    ]
    automation_key: Annotated[
        str | None,
        Setting(
            "AUTOMATION_KEY",
            None,
            "A key automation sends in `x-functions-key` to use the analyst API without signing "
            "in (acts as `automation key` with Vigil.Responder's rights, recorded so in the "
            "audit log). Unset: only signed-in analysts.",
            secret=True,
        ),
    ]


@dataclass(frozen=True, kw_only=True, repr=False)
class TelemetrySettings(SettingsGroup):
    FEATURE = "Telemetry"

    appinsights_connection_string: Annotated[
        str | None,
        Setting(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            None,
            "Application Insights connection string. Set (the Bicep sets it), Vigil sends "
            "traces, logs and its metrics through OpenTelemetry (`shared/telemetry.py`); unset, "
            "telemetry is off and costs nothing. Dependency spans carry URLs without their query "
            "string (where `appsecret_proof`, `code` and `state` travel); "
            "`tests/test_telemetry.py` looks for every secret in what is exported.",
        ),
    ]
    appinsights_authentication_string: Annotated[
        str | None,
        Setting(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            None,
            "`ClientId=<managed identity client id>;Authorization=AAD`: telemetry authenticated "
            "with Entra (the component has local auth disabled).",
        ),
    ]


Severity = Literal["informational", "low", "medium", "high"]
SEVERITIES: tuple[str, ...] = ("informational", "low", "medium", "high")
LOOPBACK_HOSTS = ("localhost", "::1")
WEBHOOK_URL_DOC = "an https:// URL (plain http only to a loopback address)"


def is_loopback_http(url: str) -> bool:
    """Plain HTTP to a loopback address (the local receivers and simulators)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and (host in LOOPBACK_HOSTS or host.startswith("127."))


def allowed_webhook_url(url: str) -> bool:
    """HTTPS, or plain HTTP to a loopback address; never credentials in the authority."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        return False
    return parts.scheme == "https" or is_loopback_http(url)


def _not_plain_http_elsewhere(url: str) -> bool:
    return urlsplit(url).scheme != "http" or is_loopback_http(url)


@dataclass(frozen=True, kw_only=True, repr=False)
class NotifySettings(SettingsGroup):
    FEATURE = "Notifications"

    notify_queue: Annotated[
        str,
        Setting(
            "NOTIFY_QUEUE",
            "notify",
            "Queue of alert notifications (the trigger's `%NOTIFY_QUEUE%`). See "
            "[Notifications and SIEM](#notifications-and-siem).",
        ),
    ]
    notify_min_severity: Annotated[
        Severity,
        Setting(
            "NOTIFY_MIN_SEVERITY",
            "medium",
            "Lowest severity notified: `informational`, `low`, `medium`, `high` (governance "
            "guardrail alerts always are).",
        ),
    ]
    notify_email_to: Annotated[
        str | None,
        Setting(
            "NOTIFY_EMAIL_TO",
            None,
            "Address (a person, shared mailbox or distribution list) alert e-mails go to, sent "
            "with Graph `sendMail` from `GOVERNANCE_MAIL_SENDER`. Empty: no e-mail.",
        ),
    ]
    notify_teams_url: Annotated[
        str | None,
        Setting(
            "NOTIFY_TEAMS_WEBHOOK_URL",
            None,
            "Microsoft Teams incoming webhook (HTTPS) that gets an Adaptive Card per alert. Its "
            "URL is its credential: a Key Vault reference in Azure, never logged. Empty: no "
            "Teams.",
            secret=True,
            check=allowed_webhook_url,
            check_doc=WEBHOOK_URL_DOC,
        ),
    ]
    notify_webhook_url: Annotated[
        str | None,
        Setting(
            "NOTIFY_WEBHOOK_URL",
            None,
            "Generic webhook (HTTPS; plain HTTP only to a loopback address) that gets each alert "
            "as JSON, signed in `X-Vigil-Signature-256`. Empty: none.",
            secret=True,
            check=allowed_webhook_url,
            check_doc=WEBHOOK_URL_DOC,
        ),
    ]
    notify_webhook_secret: Annotated[
        str | None,
        Setting(
            "NOTIFY_WEBHOOK_SECRET",
            None,
            "Key of the HMAC-SHA256 signature of the generic webhook's body (required with "
            "`NOTIFY_WEBHOOK_URL`: without it nothing is sent there).",
            secret=True,
        ),
    ]
    notify_daily_cap: Annotated[
        int,
        Setting(
            "NOTIFY_DAILY_CAP",
            "100",
            "Alerts notified per destination per UTC day of sending; the first one over it "
            'sends one "cap reached" message instead.',
            maximum=10_000,
        ),
    ]
    notify_max_attempts: Annotated[
        int,
        Setting(
            "NOTIFY_MAX_ATTEMPTS",
            "6",
            "Attempts per alert and destination (backoff through the queue) before the record "
            "says failed.",
            maximum=50,
        ),
    ]
    vigil_console_url: Annotated[
        str | None,
        Setting(
            "VIGIL_CONSOLE_URL",
            None,
            "The console's address in notification links (`<it>#/alert/<id>`).",
            url=True,
            shown_default="`https://<WEBSITE_HOSTNAME>/api/console`",
        ),
    ]
    website_hostname: Annotated[
        str | None,
        Setting(
            "WEBSITE_HOSTNAME",
            None,
            "Set by App Service: the app's host name (the default console address).",
        ),
    ]

    @property
    def console_url(self) -> str | None:
        if self.vigil_console_url:
            return self.vigil_console_url
        return f"https://{self.website_hostname}/api/console" if self.website_hostname else None

    @property
    def destinations(self) -> tuple[str, ...]:
        """The configured destinations, in the order they are tried."""
        named = (
            ("email", self.notify_email_to),
            ("teams", self.notify_teams_url),
            ("webhook", self.notify_webhook_url),
        )
        return tuple(name for name, value in named if value)


@dataclass(frozen=True, kw_only=True, repr=False)
class SiemSettings(SettingsGroup):
    FEATURE = "SIEM (Log Analytics)"

    siem_endpoint: Annotated[
        str | None,
        Setting(
            "LOG_ANALYTICS_DCE_ENDPOINT",
            None,
            "The data collection endpoint's logs ingestion URL (`infra/` sets it when "
            "`siemEnabled`). Set with `LOG_ANALYTICS_DCR_ID`, alerts go to Log Analytics.",
            url=True,
            check=_not_plain_http_elsewhere,
            check_doc="an https:// URL (plain http only to a loopback address)",
        ),
    ]
    siem_rule_id: Annotated[
        str | None,
        Setting(
            "LOG_ANALYTICS_DCR_ID",
            None,
            "The data collection rule's immutable id (`dcr-...`).",
        ),
    ]
    siem_stream: Annotated[
        str,
        Setting(
            "LOG_ANALYTICS_STREAM",
            "Custom-VigilAlerts_CL",
            "The rule's stream for alerts (table `VigilAlerts_CL`).",
        ),
    ]
    siem_activities: Annotated[
        bool,
        Setting(
            "LOG_ANALYTICS_ACTIVITIES",
            "false",
            "`true` also sends the activities of every detected batch.",
        ),
    ]
    siem_activity_stream: Annotated[
        str,
        Setting(
            "LOG_ANALYTICS_ACTIVITY_STREAM",
            "Custom-VigilActivities_CL",
            "The rule's stream for activities (table `VigilActivities_CL`).",
        ),
    ]
    siem_schedule: Annotated[
        str,
        Setting(
            "LOG_ANALYTICS_SCHEDULE",
            "0 * * * * *",
            "NCRONTAB schedule of `siem_timer`, which sends what waits in batches (UTC, six "
            "fields).",
        ),
    ]
    siem_client_id: Annotated[
        str | None,
        Setting(
            "LOG_ANALYTICS_CLIENT_ID",
            None,
            "Client id of the user-assigned managed identity that sends (default: "
            "`AzureWebJobsStorage__clientId`; neither: the system-assigned one).",
        ),
    ]

    @property
    def siem_enabled(self) -> bool:
        """Both the endpoint and the rule are set (one without the other is an error)."""
        if bool(self.siem_endpoint) != bool(self.siem_rule_id):
            raise ConfigError(
                "LOG_ANALYTICS_DCE_ENDPOINT and LOG_ANALYTICS_DCR_ID are set together (or "
                "neither): only one of them is set"
            )
        return bool(self.siem_endpoint)


@dataclass(frozen=True, kw_only=True, repr=False)
class Settings(
    StorageSettings,
    WorkplaceSettings,
    SyncSettings,
    GraphSettings,
    EntraSettings,
    DetectionSettings,
    IpIntelSettings,
    GovernanceSettings,
    RetentionSettings,
    AnalystApiSettings,
    TelemetrySettings,
    NotifySettings,
    SiemSettings,
):
    """Every feature's settings: what the composition root reads and hands to each feature."""

    @classmethod
    def declared(cls) -> tuple[Declared, ...]:
        return tuple(d for group in GROUPS for d in group.declared())


# The feature groups, in the README's order.
GROUPS = tuple(group for group in Settings.__bases__ if issubclass(group, SettingsGroup))
# Every setting the code reads, in the README's order (the table is generated from these).
SETTINGS: tuple[Setting, ...] = tuple(d.setting for d in Settings.declared())


@functools.cache
def get_settings(actions: tuple[str, ...] | None = None) -> Settings:
    """The process's settings, read on first use (not at import, so tests can set the env first).

    `actions`: the governance action names a setting may list (the caller passes governance's).
    """
    return Settings.from_env(actions=actions)


def main(argv: list[str]) -> int:
    """`markdown`: print the README's configuration table (0), anything else: usage (2)."""
    if argv != ["markdown"]:
        print("usage: python -m shared.config markdown", file=sys.stderr)
        return 2
    print(markdown(Settings.declared()), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
