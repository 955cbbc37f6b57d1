"""The embedded default stack: Azurite, simulated Workplace and Graph, and the local host, as
`make run`, `make demo` and the end-to-end tests start Vigil (`local_stack()`). Settings that say
`local` (`NOTIFY_TEAMS_WEBHOOK_URL`, `NOTIFY_WEBHOOK_URL`, `LOG_ANALYTICS_DCE_ENDPOINT`) get a
local simulator instead of a real service."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from local.azurite import ROOT, ensure_azurite
from local.functions_host import LocalFunctionsHost
from local.sim_graph import SimulatedGraph, SimUser
from local.sim_logs_ingestion import SimulatedLogsIngestion
from local.sim_webhooks import WebhookReceiver
from local.sim_workplace import SimulatedWorkplace
from shared import services
from shared.access import READER, RESPONDER, encode_principal

APP_ID = "880000000000001"
APP_SECRET = "sim-workplace-app-secret"  # the simulator's, never a real one
VERIFY_TOKEN = "sim-verify-token"
# The people the local stack signs in (App Service Authentication's part, played by the host).
ANALYST = ("analyst@contoso.com", "00000000-0000-4000-8000-00000000a001", (RESPONDER,))
READER_ONLY = ("reader@contoso.com", "00000000-0000-4000-8000-00000000a002", (READER,))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NotifySims:
    receiver: WebhookReceiver | None = None
    ingestion: SimulatedLogsIngestion | None = None


def _local(env: dict[str, str], name: str) -> bool:
    return (env.get(name) or os.environ.get(name, "")).strip().lower() == "local"


@contextlib.contextmanager
def notify_simulators(env: dict[str, str]) -> Iterator[NotifySims]:
    """Start the simulators the settings ask for, and point those settings (in `env`) at them."""
    sims = NotifySims()
    with contextlib.ExitStack() as stack:
        teams, hooks = _local(env, "NOTIFY_TEAMS_WEBHOOK_URL"), _local(env, "NOTIFY_WEBHOOK_URL")
        if teams or hooks:
            secret = env.get("NOTIFY_WEBHOOK_SECRET") or secrets.token_urlsafe(24)
            sims.receiver = stack.enter_context(WebhookReceiver(secret=secret))
            if teams:
                env["NOTIFY_TEAMS_WEBHOOK_URL"] = sims.receiver.teams_url
            if hooks:
                env["NOTIFY_WEBHOOK_URL"] = sims.receiver.hooks_url
                env["NOTIFY_WEBHOOK_SECRET"] = secret
        if _local(env, "LOG_ANALYTICS_DCE_ENDPOINT"):
            sims.ingestion = stack.enter_context(SimulatedLogsIngestion())
            env["LOG_ANALYTICS_DCE_ENDPOINT"] = sims.ingestion.endpoint
            env["LOG_ANALYTICS_DCR_ID"] = sims.ingestion.rule_id
            # azure-identity's ManagedIdentityCredential finds App Service's endpoint by these.
            env["IDENTITY_ENDPOINT"] = sims.ingestion.identity_endpoint
            env["IDENTITY_HEADER"] = sims.ingestion.identity_header
        yield sims


@dataclass
class Stack:
    host: LocalFunctionsHost
    workplace: SimulatedWorkplace
    graph: SimulatedGraph
    env: dict[str, str]
    function_key: str
    analyst_token: str = ""  # `Authorization: Bearer <it>`: signed in as ANALYST (Responder)
    reader_token: str = ""  # ...as READER_ONLY (Vigil.Reader)
    notify: NotifySims | None = None  # the webhook receiver and Logs Ingestion endpoint, if asked

    def as_analyst(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.analyst_token}"}

    def as_reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader_token}"}

    @property
    def api(self) -> str:
        return f"{self.host.base_url}/api"

    @property
    def webhook_url(self) -> str:
        return f"{self.api}/workplace/webhook"

    def install(self) -> requests.Response:
        """What an admin does: open the install link, approve in Workplace, land on the callback."""
        key = {"x-functions-key": self.function_key}
        dialog = _redirect(f"{self.api}/workplace/install", "install did not redirect", key)
        callback = _redirect(dialog, "the Workplace dialog refused")
        if not callback.startswith(self.api):
            raise RuntimeError(f"the dialog redirected elsewhere: {urlsplit(callback).path}")
        return requests.get(callback, allow_redirects=False, timeout=30)

    def verify_subscription(self) -> requests.Response:
        mode = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
        return requests.get(
            self.webhook_url, params={**mode, "hub.challenge": secrets.token_hex(8)}, timeout=10
        )


def _redirect(url: str, refused: str, headers: dict[str, str] | None = None) -> str:
    """Where a GET of `url` redirects to; RuntimeError(`refused`, the answer) when it does not."""
    answer = requests.get(url, headers=headers, allow_redirects=False, timeout=10)
    if answer.status_code != 302:
        raise RuntimeError(f"{refused}: {answer.status_code} {answer.text[:300]}")
    return str(answer.headers["Location"])


def graph_settings(graph: SimulatedGraph) -> dict[str, str]:
    """Vigil's Graph settings, pointed at the simulated Graph and its token endpoint."""
    return {
        "GRAPH_URL": graph.graph_url,
        "GRAPH_AUTHORITY_HOST": graph.authority_host,
        "GRAPH_TENANT_ID": graph.tenant_id,
        "GRAPH_CLIENT_ID": graph.client_id,
        "GRAPH_CLIENT_SECRET": graph.client_secret,
        "GRAPH_CA_BUNDLE": str(graph.ca_path),
    }


def seed_graph_users(workplace: SimulatedWorkplace, graph: SimulatedGraph) -> None:
    """The same people exist in Entra ID, matched by e-mail (= UPN)."""
    for m in workplace.members:
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, m.email))
        graph.add_user(
            SimUser(user_id, user_principal_name=m.email, mail=m.email, display_name=m.name)
        )


@contextlib.contextmanager
def local_stack(
    *,
    port: int | None = 7071,
    schedule: str = "*/5 * * * * *",
    prefix: str | None = None,
    azurite_location: Path | None = None,
    triggers: bool = True,
    extra_env: dict[str, str] | None = None,
    azurite_ports: dict[str, int] | None = None,
) -> Iterator[Stack]:
    """Start everything, point Vigil's settings at it, and stop everything afterwards.

    `azurite_ports` (blob, queue, table) runs on an Azurite of its own there instead of the one
    on 10000-10002 (the benchmark does, so nothing else shares its storage)."""
    port, prefix = port or free_port(), prefix or f"v{uuid.uuid4().hex[:8]}"
    key, analyst, reader = (secrets.token_urlsafe(24) for _ in range(3))
    saved = dict(os.environ)
    with contextlib.ExitStack() as stack:
        connection = stack.enter_context(ensure_azurite(azurite_location, ports=azurite_ports))
        workplace = stack.enter_context(SimulatedWorkplace(app_id=APP_ID, app_secret=APP_SECRET))
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vigil-graph-")))
        graph = stack.enter_context(SimulatedGraph(state_dir=state_dir))
        seed_graph_users(workplace, graph)
        env = {
            "AzureWebJobsStorage": connection,
            "STORAGE_PREFIX": prefix,
            "ACTIVITY_QUEUE": f"{prefix}-activity",
            "GOVERN_QUEUE": f"{prefix}-govern",
            "NOTIFY_QUEUE": f"{prefix}-notify",
            "WORKPLACE_APP_ID": APP_ID,
            "WORKPLACE_APP_SECRET": APP_SECRET,
            "WORKPLACE_REDIRECT_URI": f"http://127.0.0.1:{port}/api/workplace/callback",
            "WORKPLACE_GRAPH_URL": workplace.url,
            "WORKPLACE_DIALOG_URL": workplace.dialog_url,
            "WORKPLACE_WEBHOOK_VERIFY_TOKEN": VERIFY_TOKEN,
            **graph_settings(graph),
            "SYNC_SCHEDULE": schedule,
            "TOR_REFRESH_SCHEDULE": "0 0 * * * *",  # hourly; unreachable offline: last copy kept
            "RETENTION_SCHEDULE": "0 30 3 * * *",
            "LOG_ANALYTICS_SCHEDULE": "0 * * * * *",  # siem_timer: idle unless the SIEM is set
            "GOVERNANCE_MODE": "enforce",
            "APP_SERVICE_AUTH": "true",  # the local host plays App Service Authentication
            "VIGIL_CONSOLE_URL": f"http://127.0.0.1:{port}/api/console",  # notifications link
            "AUTOMATION_KEY": key,  # automation keeps using the function key
            **(extra_env or {}),
        }
        sims = stack.enter_context(notify_simulators(env))  # settings that say `local`
        os.environ.update(env)
        services.reset()
        stack.callback(_restore_environ, saved)
        from function_app import app

        host = LocalFunctionsHost(
            app,
            host_json=json.loads((ROOT / "host.json").read_text()),
            settings=env,
            storage_connection_string=connection,
            function_key=key,
            port=port,
            sign_ins={analyst: encode_principal(*ANALYST), reader: encode_principal(*READER_ONLY)},
        )
        host.start(triggers=triggers)
        stack.callback(host.stop)
        yield Stack(host, workplace, graph, env, key, analyst, reader, sims)


def _restore_environ(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)
    services.reset()
