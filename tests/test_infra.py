"""The deployment matches the code: settings, queues, tables, environment access, telemetry.

The Bicep cannot be compiled here (CI does that: .github/workflows/bicep.yml), so these tests read
its text: the app settings between `// app settings: begin` and `// app settings: end` in
infra/main.bicep, its `var` literals and the queues it creates.
"""

from __future__ import annotations

import ast
import json
import os
import re
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
from tests.test_bindings import triggers

ROOT = Path(__file__).resolve().parents[1]
MAIN_BICEP = ROOT / "infra" / "main.bicep"

# Settings the Bicep deliberately leaves unset in Azure, and why (each is still in SETTINGS).
NOT_SET_IN_AZURE = {
    "AzureWebJobsStorage": "shared keys are disabled: the identity-based "
    "AzureWebJobsStorage__* settings replace the connection string",
    "GRAPH_CLIENT_ID": "client-credentials only; Azure uses GRAPH_AUTH=managed-identity",
    "GRAPH_CLIENT_SECRET": "client-credentials only; Azure uses GRAPH_AUTH=managed-identity",
    "GRAPH_CLIENT_CERTIFICATE_PATH": "client-credentials only; Azure uses the managed identity",
    "GRAPH_CA_BUNDLE": "only the local Graph simulator needs an extra CA",
    "SECRET_ENCRYPTION_KEY": "KEY_VAULT_URL is set: install tokens live in Key Vault, not in an "
    "encrypted table",
    "POLICIES_PATH": "optional: unset means the shipped `policies` folder",
    "IP_RANGES_PATH": "optional customer IP ranges file; unset: built-in data only",
    "GEOIP_CITY_DB": "optional licensed MaxMind database, not shipped; add it to the package and "
    "set it after deploying (README, Deploy)",
    "GEOIP_ASN_DB": "optional licensed MaxMind database (as GEOIP_CITY_DB)",
    "GEOIP_ANONYMOUS_DB": "optional licensed MaxMind database (as GEOIP_CITY_DB)",
}
# Settings whose default is right locally but wrong in Azure: the Bicep must set them.
WRONG_DEFAULT_IN_AZURE = {
    "GRAPH_AUTH": "Azure authenticates to Graph with the managed identity",
    "AzureWebJobsStorage__tableServiceUri": "identity-based storage",
    "AzureWebJobsStorage__queueServiceUri": "identity-based storage",
    "AzureWebJobsStorage__clientId": "identity-based storage (user-assigned identity)",
}
# Settings only the Functions host reads (not Vigil's code).
HOST_SETTINGS = {"AzureWebJobsStorage__credential", "AzureWebJobsStorage__blobServiceUri"}


def bicep_app_settings() -> dict[str, str]:
    text = MAIN_BICEP.read_text()
    block = text.split("// app settings: begin", 1)[1].split("// app settings: end", 1)[0]
    settings: dict[str, str] = {}
    for line in block.splitlines():
        m = re.match(r"^\s*'?([A-Za-z_][A-Za-z0-9_]*)'?\s*:\s*(.+?)\s*$", line)
        if m:
            assert m.group(1) not in settings, f"{m.group(1)} set twice in infra/main.bicep"
            settings[m.group(1)] = m.group(2)
    assert settings, "no app settings found between the markers in infra/main.bicep"
    return settings


def bicep_vars() -> dict[str, str]:
    """`var name = 'literal'` and `param name string = 'default'` lines of main.bicep."""
    pattern = r"^(?:var|param) (\w+)(?: string)? = '([^'$]*)'\s*$"
    return dict(re.findall(pattern, MAIN_BICEP.read_text(), flags=re.M))


def bicep_queues() -> set[str]:
    text = MAIN_BICEP.read_text()
    block = text.split("queueServices:", 1)[1].split("}\n", 1)[0]
    names = re.findall(r"name:\s*([\w']+)", block)
    values = bicep_vars()
    return {n.strip("'") if n.startswith("'") else values[n] for n in names}


def resolved(value: str) -> str:
    """A Bicep app-setting value that is a literal or a literal `var`, as a string."""
    if value.startswith("'") and value.endswith("'") and "${" not in value:
        return value[1:-1]
    return bicep_vars()[value]


def test_every_setting_is_set_by_the_bicep_or_has_a_default() -> None:
    bicep = bicep_app_settings()
    problems = []
    for spec in SETTINGS:
        if spec.name in bicep or spec.name in NOT_SET_IN_AZURE:
            continue
        if spec.default is None:
            problems.append(f"{spec.name}: no default, not set in infra/main.bicep")
        elif spec.name in WRONG_DEFAULT_IN_AZURE:
            problems.append(f"{spec.name}: its default is wrong in Azure, set it in the Bicep")
    assert problems == []


def test_the_exceptions_are_current() -> None:
    names = {s.name for s in SETTINGS}
    bicep = bicep_app_settings()
    for name in [*NOT_SET_IN_AZURE, *WRONG_DEFAULT_IN_AZURE]:
        assert name in names, f"{name} is no longer a setting: drop it from tests/test_infra.py"
    assert not set(NOT_SET_IN_AZURE) & set(bicep)


def test_the_bicep_sets_only_known_settings() -> None:
    known = {s.name for s in SETTINGS} | HOST_SETTINGS
    assert sorted(set(bicep_app_settings()) - known) == []


def test_secrets_are_key_vault_references() -> None:
    text = MAIN_BICEP.read_text()
    assert "var kv = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName='" in text
    bicep = bicep_app_settings()
    reference = r"'\$\{kv\}[a-z0-9-]+\)'"
    for spec in SETTINGS:
        if spec.secret and spec.name in bicep:
            value = bicep[spec.name]  # a reference, or a choice between one and nothing
            assert re.fullmatch(reference, value) or re.fullmatch(
                rf"\w+ \? {reference} : ''", value
            ), f"{spec.name} = {value}: a secret must be a Key Vault reference"


def test_every_binding_expression_is_set_by_the_bicep() -> None:
    """The host resolves %NAME% from app settings only; Vigil's defaults do not reach it."""
    bicep = bicep_app_settings()
    expressions = {
        name
        for trigger in triggers().values()
        for value in trigger.values()
        if isinstance(value, str)
        for name in re.findall(r"%([A-Za-z0-9_]+)%", value)
    }
    assert {"SYNC_SCHEDULE", "ACTIVITY_QUEUE", "GOVERN_QUEUE"} <= expressions
    assert sorted(expressions - set(bicep)) == []


def test_the_queue_triggers_listen_on_queues_the_bicep_creates() -> None:
    bicep, queues = bicep_app_settings(), bicep_queues()
    for trigger in triggers().values():
        if trigger["type"] == "queueTrigger":
            setting = trigger["queueName"].strip("%")
            assert resolved(bicep[setting]) in queues, setting


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
    bicep, queues = bicep_app_settings(), bicep_queues()
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
        assert resolved(bicep[setting]) in queues, setting


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
    prefix = resolved(bicep_app_settings()["STORAGE_PREFIX"])
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


def test_azure_yaml_has_one_python_function_service() -> None:
    text = (ROOT / "azure.yaml").read_text()
    services = re.split(r"\n(?=\S)", text.split("\nservices:\n", 1)[1], maxsplit=1)[0]
    assert re.findall(r"^  (\w+):$", services, flags=re.M) == ["api"]  # one service
    assert re.findall(r"^    (\w+): (.+)$", services, flags=re.M) == [
        ("project", "."),
        ("language", "python"),
        ("host", "function"),
    ]
    hook = re.search(r"postprovision:\n(?:\s+.*\n)*?\s+run: (\S+)", text)
    assert hook, "azure.yaml has no postprovision hook"
    assert os.access(ROOT / hook.group(1), os.X_OK), hook.group(1)
    main = MAIN_BICEP.read_text()
    assert main.startswith("//") and "targetScope = 'subscription'" in main
    assert "'azd-service-name': 'api'" in (ROOT / "infra" / "app" / "api.bicep").read_text()
    params = json.loads((ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    declared = set(re.findall(r"^param (\w+) ", main, flags=re.M))
    assert set(params) <= declared
    assert {"environmentName", "location"} <= set(params)


def test_every_role_is_assigned_in_the_rbac_module() -> None:
    rbac = (ROOT / "infra" / "app" / "rbac.bicep").read_text()
    for guid in (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",  # Key Vault Secrets Officer
        "3913510d-42f4-4e42-8a64-420c390055eb",  # Monitoring Metrics Publisher
    ):
        assert guid in rbac
    infra = "".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    assert infra.count("Microsoft.Authorization/roleAssignments@") == rbac.count(
        "Microsoft.Authorization/roleAssignments@"
    )


def test_modules_are_pinned_azure_verified_modules() -> None:
    infra = "".join(p.read_text() for p in (ROOT / "infra").rglob("*.bicep"))
    refs = re.findall(r"'br/public:(avm/res/[\w/-]+):([^']*)'", infra)
    assert {r for r, _ in refs} >= {
        "avm/res/managed-identity/user-assigned-identity",
        "avm/res/web/serverfarm",
        "avm/res/web/site",
        "avm/res/storage/storage-account",
        "avm/res/key-vault/vault",
        "avm/res/operational-insights/workspace",
        "avm/res/insights/component",
    }
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for _, version in refs)
    main = MAIN_BICEP.read_text()
    assert "allowSharedKeyAccess: false" in main
    assert "enableRbacAuthorization: true" in main
    assert "disableLocalAuth: true" in main


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


# --- azd hooks, run against a fake `az` that records what it was asked -----------------------

FAKE_AZ = r"""#!/bin/sh
# Records each call; `keyvault secret set --file F` keeps F's content; `secret show` fails unless
# the secret name is listed in $FAKE_EXISTING; `ad sp show` and `rest` answer canned ids.
echo "$*" >>"$FAKE_LOG/calls"
name=""; file=""; prev=""
for arg in "$@"; do
  case "$prev" in --name) name="$arg" ;; --file) file="$arg" ;; esac
  prev="$arg"
done
case "$1 $2 $3" in
  "keyvault secret show") echo " $FAKE_EXISTING " | grep -q " $name " || exit 3; echo id ;;
  "keyvault secret set") cp "$file" "$FAKE_LOG/secret-$name" ;;
  "ad sp show")
    case "$*" in
      *"appRoles[?value=='User.Read.All']"*) echo role-read ;;
      *"appRoles[?value=='Mail.Send']"*) echo role-mail ;;
      *appRoles*) echo "" ;;
      *) echo graph-sp ;;
    esac ;;
  "rest --method GET") echo role-read ;;
esac
exit 0
"""


def _hook(tmp_path: Path, script: str, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir(parents=True)
    log.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    result = subprocess.run(  # noqa: S603 (our own script, fixed arguments)
        ["/bin/sh", str(ROOT / "infra" / "hooks" / script), *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_LOG": str(log), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    calls = (log / "calls").read_text() if (log / "calls").exists() else ""
    return result.returncode, calls + result.stdout + result.stderr


def test_postprovision_stores_the_given_secrets_in_key_vault_without_showing_them(
    tmp_path: Path,
) -> None:
    code, out = _hook(
        tmp_path,
        "postprovision.sh",
        [],
        {
            "AZURE_KEY_VAULT_NAME": "kv-test",
            "AZURE_FUNCTION_NAME": "func-vigil-test",
            "AZURE_RESOURCE_GROUP": "rg-test",
            "AZURE_FUNCTION_URL": "https://func-vigil-test.azurewebsites.net",
            "WORKPLACE_APP_SECRET": "s3cr3t-app",
            "FAKE_EXISTING": "workplace-app-secret",
        },
    )
    assert code == 0, out
    log = tmp_path / "log"
    assert (log / "secret-workplace-app-secret").read_text() == "s3cr3t-app"
    assert not (log / "secret-workplace-webhook-verify-token").exists()
    assert "s3cr3t-app" not in out  # never on a command line or in the output
    assert "missing: secret workplace-webhook-verify-token in kv-test" in out
    assert "functionapp restart --name func-vigil-test --resource-group rg-test" in out
    assert "https://func-vigil-test.azurewebsites.net/api/workplace/webhook" in out


def test_postprovision_outside_azd_says_what_is_missing(tmp_path: Path) -> None:
    code, out = _hook(tmp_path, "postprovision.sh", [], {})
    assert code != 0
    assert "AZURE_KEY_VAULT_NAME is not set" in out


def test_grant_graph_permissions_is_idempotent_and_rejects_unknown_permissions(
    tmp_path: Path,
) -> None:
    code, out = _hook(
        tmp_path, "grant-graph-permissions.sh", ["mi-principal", "User.Read.All", "Mail.Send"], {}
    )
    assert code == 0, out
    assert "already granted: User.Read.All" in out
    assert "granted: Mail.Send" in out
    posts = [line for line in out.splitlines() if line.startswith("rest --method POST")]
    assert len(posts) == 1
    assert "servicePrincipals/graph-sp/appRoleAssignedTo" in posts[0]
    assert '"principalId": "mi-principal"' in posts[0] and '"appRoleId": "role-mail"' in posts[0]

    code, out = _hook(tmp_path / "again", "grant-graph-permissions.sh", ["mi", "Nope.All"], {})
    assert code != 0 and "unknown Graph application permission: Nope.All" in out
