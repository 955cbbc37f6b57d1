"""Composition of Vigil's services from its settings: built once per process, on first use."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from shared import storage as st
from shared.activities import ActivityStore
from shared.alerts import AlertStore
from shared.config import Settings, get_settings
from shared.detection import failed_logins
from shared.detection.engine import FailedLoginPolicy
from shared.detection.state import DetectionStateStore
from shared.governance.executor import ActionRequest, ActionStore
from shared.governance.graph import GraphClient
from shared.inbox import WebhookInbox
from shared.installs import InstallStates, InstallStore
from shared.secrets import SecretStore, TableSecretStore, fernet_for
from shared.users import UserStore
from shared.workplace.client import WorkplaceClient


@dataclass
class Services:
    settings: Settings

    def __post_init__(self) -> None:
        self.storage = st.Storage(self.settings)

    @functools.cached_property
    def installs(self) -> InstallStore:
        return InstallStore(self.storage.table(st.INSTALLS))

    @functools.cached_property
    def install_states(self) -> InstallStates:
        return InstallStates(self.storage.table(st.INSTALL_STATES))

    @functools.cached_property
    def secrets(self) -> SecretStore:
        return TableSecretStore(self.storage.table(st.SECRETS), fernet_for(self.settings))

    @functools.cached_property
    def inbox(self) -> WebhookInbox:
        return WebhookInbox(self.storage.table(st.INBOX))

    @functools.cached_property
    def activities(self) -> ActivityStore:
        return ActivityStore(self.storage.table(st.ACTIVITIES))

    @functools.cached_property
    def detection_state(self) -> DetectionStateStore:
        return DetectionStateStore(self.storage.table(st.DETECTION_STATE), "failedlogins")

    @functools.cached_property
    def alerts(self) -> AlertStore:
        return AlertStore(self.storage.table(st.ALERTS))

    @functools.cached_property
    def actions(self) -> ActionStore:
        return ActionStore(self.storage.table(st.ACTIONS))

    @functools.cached_property
    def users(self) -> UserStore:
        return UserStore(self.storage.table(st.USERS))

    def workplace_token(self, community_id: str) -> str | None:
        """The Workplace access token Vigil holds for a community, if any."""
        return self.secrets.get(f"workplace-token-{community_id}")

    @functools.cached_property
    def workplace(self) -> WorkplaceClient:
        app_id, secret = self.settings.workplace_app()
        return WorkplaceClient(self.settings.workplace_graph_url, app_id, secret)

    @functools.cached_property
    def graph(self) -> GraphClient:
        return GraphClient(self.settings)

    @property
    def failed_login_policy(self) -> FailedLoginPolicy:
        s = self.settings
        return FailedLoginPolicy(
            s.failed_login_threshold,
            timedelta(minutes=s.failed_login_window_minutes),
            s.failed_login_actions,
        )

    def enqueue_action(self, request: ActionRequest) -> None:
        self.storage.queue(self.settings.govern_queue).send_message(request.to_message())

    def enqueue_detection(self, message: str) -> None:
        self.storage.queue(self.settings.activity_queue).send_message(message)


DETECTOR_IDS = (failed_logins.DETECTOR_ID,)


@functools.cache
def get_services() -> Services:
    return Services(get_settings())


def reset() -> None:
    """Forget the cached settings and services (tests change the environment between cases)."""
    get_services.cache_clear()
    get_settings.cache_clear()
