"""Composition of Vigil's services from its settings: built once per process, on first use."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import timedelta

from shared import clock
from shared import storage as st
from shared.activities import ActivityStore
from shared.activity_log import ActivityLog
from shared.alerts import AlertStore, alert_row_key
from shared.alerts import from_entity as alert_from_entity
from shared.analyst_api import AnalystDeps
from shared.audit import AuditLog
from shared.config import ConfigError, Settings, get_settings
from shared.detection import builtins
from shared.detection.directory_lookup import DirectoryLookup
from shared.detection.engine import DetectionDeps, Quarantine
from shared.detection.fold import DetectorSet
from shared.detection.state import ProfileStore
from shared.entra import pull as entra_pull
from shared.entra import status as entra_status
from shared.entra.pending import PendingDetection
from shared.entra.state import LogStateStore
from shared.entra.users_delta import DirectoryDeps, DirectoryStateStore
from shared.governance.actions import ACTIONS
from shared.governance.dependencies import Governance, GovernancePolicy
from shared.governance.graph import GraphClient
from shared.governance.identity import EntraUserCache
from shared.governance.message import ActionRequest
from shared.governance.records import ActionStore
from shared.governance.throttle import TenantRateLimit
from shared.groups import GroupStore
from shared.held import HeldEvents
from shared.id_index import IdIndex, Kind
from shared.inbox import WebhookInbox
from shared.installs import InstallStates, InstallStore
from shared.ipintel import IpDatabase, IpIntel
from shared.ipintel.ranges import load_ranges
from shared.ipintel.tor import TorExitStore
from shared.models import Alert
from shared.notify.delivery import Notifier
from shared.notify.requests import NotifyRequest
from shared.paging import TokenSigner, stored_key
from shared.posture import PostureStore
from shared.quarantine import QuarantineDeps
from shared.secrets import SecretStore, secret_store_for
from shared.siem.export import Ingestion
from shared.siem.outbox import SiemOutbox
from shared.sources import SourceDeps
from shared.suppressions import SuppressionStore
from shared.triage import TriageStore
from shared.user_page import UserPage
from shared.users import UserStore
from shared.workplace import status as workplace_status
from shared.workplace.client import RetryPolicy, WorkplaceClient
from shared.workplace.connect import ConnectDeps
from shared.workplace.counts import EventCountStore
from shared.workplace.custom_integration import RegistrationDeps
from shared.workplace.directory_sync import DirectorySyncDeps
from shared.workplace.inbox_drain import DrainDeps
from shared.workplace.sync_state import SyncStateStore
from shared.workplace.tokens import WorkplaceTokens

TOR_CACHE_SECONDS = 300.0


@dataclass
class Services:
    """The stores and clients, each built once on first use, and each module's dependency record
    (`*_deps`): only the function folders, the local stack and the benchmark hold a Services."""

    settings: Settings

    def __post_init__(self) -> None:
        self.storage = st.Storage(self.settings)
        self._tor: tuple[float, IpIntel] | None = None

    @functools.cached_property
    def installs(self) -> InstallStore:
        return InstallStore(self.storage.table(st.INSTALLS))

    @functools.cached_property
    def install_states(self) -> InstallStates:
        return InstallStates(self.storage.table(st.INSTALL_STATES))

    @functools.cached_property
    def secrets(self) -> SecretStore:
        return secret_store_for(self.settings, lambda: self.storage.table(st.SECRETS))

    @functools.cached_property
    def inbox(self) -> WebhookInbox:
        return WebhookInbox(self.storage.table(st.INBOX), self.storage.container("inbox"))

    @functools.cached_property
    def activities(self) -> ActivityStore:
        return ActivityStore(self.storage.table(st.ACTIVITIES))

    @functools.cached_property
    def detection_state(self) -> ProfileStore:
        return ProfileStore(self.storage.table(st.DETECTION_STATE))

    @functools.cached_property
    def detections(self) -> DetectorSet:
        """The built-ins and activity policies, from POLICIES_PATH (validated at first use), each
        activity policy with its creation time (recorded on its first load when the YAML has
        none)."""
        from shared.policies import load_policies
        from shared.policy_creation import PolicyCreationStore

        s = self.settings
        learning = timedelta(days=s.learning_period_days)
        policies = load_policies(s.policies_path, learning)
        unknown = builtins.unknown_ids(policies.anomaly)
        if unknown:
            raise ConfigError(
                f"POLICIES_PATH: anomaly policies {unknown} name no built-in detection "
                f"(known: {', '.join(builtins.DETECTOR_IDS)})"
            )
        configured = builtins.configure(
            policies.anomaly,
            learning=learning,
            failed_login_threshold=s.failed_login_threshold,
            failed_login_window_minutes=s.failed_login_window_minutes,
            failed_login_actions=s.failed_login_actions,
        )
        store = PolicyCreationStore(self.storage.table(st.POLICY_CREATION))
        activity = store.resolve(policies.activity, clock.now())
        return DetectorSet(configured, activity, learning)

    @functools.cached_property
    def tor_exits(self) -> TorExitStore:
        return TorExitStore(self.storage.table(st.IP_INTEL))

    @functools.cached_property
    def _ip_intel_without_tor(self) -> IpIntel:
        """The databases and IP_RANGES_PATH, read once per process."""
        from shared.ipintel.databases import EmbeddedDatabase, MaxMindDatabase

        s = self.settings
        dbs: list[IpDatabase] = []
        if s.geoip_city_db or s.geoip_asn_db or s.geoip_anonymous_db:
            dbs.append(MaxMindDatabase(s.geoip_city_db, s.geoip_asn_db, s.geoip_anonymous_db))
        dbs.append(EmbeddedDatabase())
        return IpIntel(tuple(dbs), load_ranges(s.ip_ranges_path))

    def ip_intel_with_tor(self) -> IpIntel:
        """IP intelligence with the Tor exit list as last refreshed, read at most every
        TOR_CACHE_SECONDS per process (the timer refreshes it hourly), not once per message."""
        now = time.monotonic()
        if self._tor is None or now - self._tor[0] >= TOR_CACHE_SECONDS:
            self._tor = (now, self._ip_intel_without_tor.with_tor(self.tor_exits.addresses()))
        return self._tor[1]

    @functools.cached_property
    def directory(self) -> DirectoryLookup:
        on = bool(self.settings.graph_tenant_id)
        return DirectoryLookup(
            self.users.get,
            workplace_users=self.users.get_many,
            group_names=self.groups.names,
            entra_users=(lambda upns: self.graph.get_users(upns)) if on else None,
            generation=self._directory_generation,
        )

    def _directory_generation(self, tenant_id: str) -> object:
        """When the tenant's directory sync (Workplace's, and with the Entra source its users
        delta round) last completed: its user records change only then (and a login's auth
        method in between, which DirectoryLookup ages out)."""
        states = SyncStateStore(self.storage.table(st.WORKPLACE_SYNC))
        workplace = states.get(tenant_id).directory_synced_at
        if "entra" not in self.settings.sources:
            return workplace
        # An Entra tenant's records change when a users delta round completes.
        entra = DirectoryStateStore(self.storage.table(st.ENTRA_SYNC)).get(tenant_id).synced_at
        return (workplace, entra)

    @functools.cached_property
    def alerts(self) -> AlertStore:
        return AlertStore(self.storage.table(st.ALERTS), self.id_index("alert"))

    def id_index(self, kind: Kind) -> IdIndex:
        return IdIndex(self.storage.table(st.ID_INDEX), self.storage.table(st.API_STATE), kind)

    @functools.cached_property
    def actions(self) -> ActionStore:
        return ActionStore(self.storage.table(st.ACTIONS), self.id_index("action"))

    @functools.cached_property
    def users(self) -> UserStore:
        return UserStore(self.storage.table(st.USERS))

    @functools.cached_property
    def groups(self) -> GroupStore:
        return GroupStore(self.storage.table(st.GROUPS))

    @property
    def workplace_tokens(self) -> WorkplaceTokens:
        return WorkplaceTokens(
            self.installs, lambda: self.secrets, self.settings.workplace_access_token
        )

    def workplace_token(self, community_id: str) -> str | None:
        """The Workplace access token Vigil holds for a community, if any (both token modes)."""
        return self.workplace_tokens.token_for(community_id)

    @functools.cached_property
    def workplace(self) -> WorkplaceClient:
        # A custom integration has no app id; both modes sign with the app secret.
        app_id, secret = self.settings.workplace_app_id or "", self.settings.webhook_secret()
        return WorkplaceClient(self.settings.workplace_graph_url, app_id, secret)

    @functools.cached_property
    def graph(self) -> GraphClient:
        return GraphClient(self.settings)

    def enqueue_action(self, request: ActionRequest, visibility_timeout: int = 0) -> None:
        """Queue governance work, invisible for `visibility_timeout` seconds (a retry's delay)."""
        self.storage.queue(self.settings.govern_queue).send_message(
            request.to_message(), visibility_timeout=visibility_timeout or None
        )

    @functools.cached_property
    def governance_workplace(self) -> WorkplaceClient:
        """A Workplace client that makes one attempt per call: governance returns throttled work
        to its queue with a delay instead of sleeping in the function."""
        app_id, secret = self.settings.workplace_app()
        return WorkplaceClient(
            self.settings.workplace_graph_url, app_id, secret, retry=RetryPolicy(attempts=1)
        )

    @functools.cached_property
    def governance(self) -> Governance:
        s = self.settings
        return Governance(
            alerts=self.alerts,
            actions=self.actions,
            identities=EntraUserCache(
                self.storage.table(st.ENTRA_USERS), timedelta(hours=s.graph_user_cache_hours)
            ),
            risk_slots=TenantRateLimit(
                self.storage.table(st.GOVERNANCE_THROTTLE), "riskyUsers", timedelta(seconds=1)
            ),
            policy=GovernancePolicy.from_settings(s),
            graph=lambda: self.graph,
            workplace=lambda: self.governance_workplace,
            workplace_token=self.workplace_token,
            enqueue=self.enqueue_action,
            notify=self.notify_alert,
        )

    @functools.cached_property
    def audit(self) -> AuditLog:
        return AuditLog(self.storage.table(st.AUDIT))

    @functools.cached_property
    def suppressions(self) -> SuppressionStore:
        return SuppressionStore(self.storage.table(st.SUPPRESSIONS))

    @functools.cached_property
    def posture(self) -> PostureStore:
        return PostureStore(self.storage.table(st.POSTURE))

    @functools.cached_property
    def triage(self) -> TriageStore:
        return TriageStore(self.alerts)

    @functools.cached_property
    def signer(self) -> TokenSigner:
        return TokenSigner(stored_key(self.storage.table(st.API_STATE)))

    @functools.cached_property
    def activity_log(self) -> ActivityLog:
        def alert_lookup(alert_id: str) -> Alert | None:
            entity = self.triage.find(alert_id)
            return alert_from_entity(entity) if entity is not None else None

        return ActivityLog(
            self.storage.table(st.ACTIVITIES),
            self.signer,
            self.ip_intel_with_tor,
            alert_lookup,
            lambda: [i.community_id for i in self.installs.all()],
            entra_tenants=self.entra_tenants,
        )

    def entra_tenants(self) -> list[str]:
        """The Entra tenant Vigil reads (GRAPH_TENANT_ID, while the Entra source is on)."""
        s = self.settings
        return [s.graph_tenant_id] if "entra" in s.sources and s.graph_tenant_id else []

    @functools.cached_property
    def user_page(self) -> UserPage:
        return UserPage(
            users=self.users,
            users_table=self.storage.table(st.USERS),
            groups=self.groups,
            activities=self.activity_log,
            alerts=self.alerts,
            actions=self.actions,
            profiles=self.detection_state,
            learning=timedelta(days=self.settings.learning_period_days),
        )

    def notify_alert(self, alert: Alert) -> None:
        """Queue a new alert's notifications (and its SIEM copy); nothing when neither is on or
        the alert is below NOTIFY_MIN_SEVERITY (and not a guardrail) and no SIEM is set."""
        from shared.notify.render import wanted

        s = self.settings
        notified = bool(s.destinations) and wanted(alert, s.notify_min_severity)
        if notified or s.siem_enabled:
            self.enqueue_notification(NotifyRequest(alert.tenant_id, alert_row_key(alert)))

    def enqueue_notification(self, request: NotifyRequest, visibility_timeout: int = 0) -> None:
        self.storage.queue(self.settings.notify_queue).send_message(
            request.to_message(), visibility_timeout=visibility_timeout or None
        )

    @functools.cached_property
    def notifier(self) -> Notifier:
        from shared.notify.channels import Mailer
        from shared.notify.records import NotifyStore

        s = self.settings
        return Notifier(
            settings=s,
            alerts=self.alerts,
            records=NotifyStore(self.storage.table(st.NOTIFICATIONS)),
            mailer=Mailer(lambda: self.graph, s.governance_mail_sender),
            enqueue=self.enqueue_notification,
            siem=self.siem_outbox.add_alert if s.siem_enabled else None,
        )

    @functools.cached_property
    def siem_outbox(self) -> SiemOutbox:
        return SiemOutbox(self.storage.table(st.SIEM_OUTBOX))

    def siem_activities(self, detect_message: bytes) -> None:
        """A detected batch's activities wait in the SIEM outbox (LOG_ANALYTICS_ACTIVITIES)."""
        if self.settings.siem_enabled and self.settings.siem_activities:
            self.siem_outbox.add_batch(detect_message)

    @functools.cached_property
    def siem_client(self) -> Ingestion:
        """The Logs Ingestion client, signed in as the app's managed identity (its token is
        cached by the credential until it expires)."""
        from azure.identity import ManagedIdentityCredential
        from azure.monitor.ingestion import LogsIngestionClient

        s = self.settings
        if not s.siem_endpoint:
            raise ConfigError("LOG_ANALYTICS_DCE_ENDPOINT is not set: it is needed to send to SIEM")
        credential = ManagedIdentityCredential(client_id=s.siem_client_id or s.storage_client_id)
        return LogsIngestionClient(s.siem_endpoint, credential, logging_enable=False)

    def enqueue_detection(self, message: str, visibility_timeout: int = 0) -> None:
        self.storage.queue(self.settings.activity_queue).send_message(
            message, visibility_timeout=visibility_timeout or None
        )

    # Each module's dependency record, built on each use (the stores in it are built once):
    # a module takes what it uses, never the whole of Services.

    def detection_deps(self, quarantine: Quarantine | None = None) -> DetectionDeps:
        """What detect_queue runs a batch with (raises ConfigError while the policies are
        invalid); `quarantine` keeps the activities a detection raises on."""
        return DetectionDeps(
            activities=self.activities,
            state=self.detection_state,
            alerts=self.alerts,
            enqueue=self.enqueue_action,
            detections=self.detections,
            intel=self.ip_intel_with_tor(),
            directory=self.directory,
            quarantine=quarantine,
            suppressions=self.suppressions.for_tenant,
            notify=self.notify_alert,
        )

    @property
    def quarantine_deps(self) -> QuarantineDeps:
        return QuarantineDeps(
            self.storage.table(st.QUARANTINE), lambda key, body: self.inbox.park(key, body)
        )

    @property
    def inbox_drain_deps(self) -> DrainDeps:
        return DrainDeps(
            inbox=self.inbox,
            installs=self.installs,
            activities=self.activities,
            activities_table=self.storage.table(st.ACTIVITIES),
            users_table=self.storage.table(st.USERS),
            held=HeldEvents(self.storage.table(st.HELD_EVENTS)),
            counts=EventCountStore(self.storage.table(st.EVENT_COUNTS)),
            sync_states=SyncStateStore(self.storage.table(st.WORKPLACE_SYNC)),
            quarantine=self.quarantine_deps,
            enqueue_detection=self.enqueue_detection,
            max_envelopes=self.settings.sync_max_envelopes,
        )

    @property
    def directory_sync_deps(self) -> DirectorySyncDeps:
        s = self.settings
        return DirectorySyncDeps(
            installs=self.installs,
            sync_states=SyncStateStore(self.storage.table(st.WORKPLACE_SYNC)),
            tokens=self.workplace_tokens,
            secrets=lambda: self.secrets,
            registration=RegistrationDeps(
                installs=self.installs,
                workplace=lambda: self.workplace,
                access_token=s.workplace_access_token,
                app_secret=s.webhook_secret,
            ),
            workplace=lambda: self.workplace,
            users=self.users,
            groups=self.groups,
            activities=self.activities,
            activities_table=self.storage.table(st.ACTIVITIES),
            staging=self.storage.table(st.DIRECTORY_SNAPSHOTS),
            counts=EventCountStore(self.storage.table(st.EVENT_COUNTS)),
            enqueue_detection=self.enqueue_detection,
            every=timedelta(minutes=s.workplace_directory_sync_minutes),
            shutdown_date=s.workplace_shutdown_date,
            decommission_after=s.workplace_decommission_after_failures,
        )

    @property
    def workplace_status_deps(self) -> workplace_status.StatusDeps:
        return workplace_status.StatusDeps(
            installs=self.installs,
            sync_states=SyncStateStore(self.storage.table(st.WORKPLACE_SYNC)),
            counts=EventCountStore(self.storage.table(st.EVENT_COUNTS)),
            held=HeldEvents(self.storage.table(st.HELD_EVENTS)),
            inbox=self.inbox,
            access_token=self.settings.workplace_access_token,
        )

    @property
    def connect_deps(self) -> ConnectDeps:
        s = self.settings
        return ConnectDeps(
            app_id=lambda: s.workplace_app()[0],
            redirect_uri=s.redirect_uri,
            dialog_url=s.workplace_dialog_url,
            state_ttl=timedelta(seconds=s.install_state_ttl_seconds),
            verify_token=s.verify_token,
            app_secret=s.webhook_secret,
            install_states=self.install_states,
            installs=self.installs,
            secrets=lambda: self.secrets,
            workplace=lambda: self.workplace,
            sync_states=SyncStateStore(self.storage.table(st.WORKPLACE_SYNC)),
            inbox=self.inbox,
        )

    @property
    def entra_pull_deps(self) -> entra_pull.PullDeps:
        return entra_pull.PullDeps(
            settings=self.settings,
            log_states=LogStateStore(self.storage.table(st.ENTRA_SYNC)),
            activities=self.activities,
            activities_table=self.storage.table(st.ACTIVITIES),
            quarantine=self.quarantine_deps,
            enqueue_detection=self.enqueue_detection,
            graph=lambda: self.graph,
            pending=PendingDetection(self.storage.table(st.ENTRA_SYNC)),
        )

    @property
    def entra_status_deps(self) -> entra_status.StatusDeps:
        table = self.storage.table(st.ENTRA_SYNC)
        return entra_status.StatusDeps(
            LogStateStore(table), DirectoryStateStore(table), self.settings.graph_tenant_id
        )

    @property
    def entra_directory_deps(self) -> DirectoryDeps:
        return DirectoryDeps(
            settings=self.settings,
            states=DirectoryStateStore(self.storage.table(st.ENTRA_SYNC)),
            users=self.users,
            groups=self.groups,
            graph=lambda: self.graph,
        )

    @property
    def source_deps(self) -> SourceDeps:
        return SourceDeps(
            enabled=self.settings.sources,
            workplace_drain=lambda: self.inbox_drain_deps,
            workplace_directory=lambda: self.directory_sync_deps,
            workplace_status=lambda: self.workplace_status_deps,
            entra_pull=lambda: self.entra_pull_deps,
            entra_status=lambda: self.entra_status_deps,
            entra_directory=lambda: self.entra_directory_deps,
        )

    @property
    def analyst_deps(self) -> AnalystDeps:
        return AnalystDeps(
            app_service_auth=self.settings.app_service_auth,
            automation_key=self.settings.automation_key,
            triage=self.triage,
            actions=self.actions,
            suppressions=self.suppressions,
            posture=self.posture,
            audit=self.audit,
            signer=lambda: self.signer,
            activity_log=lambda: self.activity_log,
            user_page=lambda: self.user_page,
        )


@functools.cache
def get_services() -> Services:
    return Services(get_settings(ACTIONS))


def reset() -> None:
    """Forget the cached settings and services (tests change the environment between cases)."""
    get_services.cache_clear()
    get_settings.cache_clear()
