"""`make run` with `NOTIFY_TEAMS_WEBHOOK_URL=local`, `NOTIFY_WEBHOOK_URL=local` or
`LOG_ANALYTICS_DCE_ENDPOINT=local`: those settings get a local simulator (the webhook receiver,
the Logs Ingestion endpoint with its managed identity endpoint) instead of a real service."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from local.sim_logs_ingestion import SimulatedLogsIngestion
from local.sim_webhooks import WebhookReceiver

LOCAL = "local"
log = logging.getLogger("vigil.run")


@dataclass
class NotifySims:
    receiver: WebhookReceiver | None = None
    ingestion: SimulatedLogsIngestion | None = None


def _wanted(env: dict[str, str], name: str) -> bool:
    return (env.get(name) or os.environ.get(name, "")).strip().lower() == LOCAL


@contextlib.contextmanager
def notify_simulators(env: dict[str, str]) -> Iterator[NotifySims]:
    """Start the simulators the settings ask for, and point those settings (in `env`) at them."""
    sims = NotifySims()
    with contextlib.ExitStack() as stack:
        teams, hooks = _wanted(env, "NOTIFY_TEAMS_WEBHOOK_URL"), _wanted(env, "NOTIFY_WEBHOOK_URL")
        if teams or hooks:
            secret = env.get("NOTIFY_WEBHOOK_SECRET") or secrets.token_urlsafe(24)
            sims.receiver = stack.enter_context(WebhookReceiver(secret=secret))
            if teams:
                env["NOTIFY_TEAMS_WEBHOOK_URL"] = sims.receiver.teams_url
            if hooks:
                env["NOTIFY_WEBHOOK_URL"] = sims.receiver.hooks_url
                env["NOTIFY_WEBHOOK_SECRET"] = secret
        if _wanted(env, "LOG_ANALYTICS_DCE_ENDPOINT"):
            sims.ingestion = stack.enter_context(SimulatedLogsIngestion())
            env["LOG_ANALYTICS_DCE_ENDPOINT"] = sims.ingestion.endpoint
            env["LOG_ANALYTICS_DCR_ID"] = sims.ingestion.rule_id
            # azure-identity's ManagedIdentityCredential finds App Service's endpoint by these.
            env["IDENTITY_ENDPOINT"] = sims.ingestion.identity_endpoint
            env["IDENTITY_HEADER"] = sims.ingestion.identity_header
        yield sims
