"""What must hold between infra/ (Bicep, parameters, hooks), azure.yaml and Vigil's code.

`problems(root)` reads the deployment under `root` with tests/bicep_model.py and returns every
broken rule as a sentence; tests/test_infra.py asserts that the repository has none and that each
of a list of deliberate breakages, applied to a copy, is caught.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from shared.config import SETTINGS, ConfigError, Settings, is_unresolved_reference
from shared.governance import actions as act
from shared.telemetry import parse_authentication
from tests.bicep_model import (
    Arr,
    BicepError,
    BicepFile,
    Call,
    Decl,
    Evaluator,
    Obj,
    Ref,
    members,
    path_of,
    refs,
)

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
    "WEBSITE_HOSTNAME": "App Service sets it",
    "VIGIL_CONSOLE_URL": "its default comes from WEBSITE_HOSTNAME",
}
# Settings whose default is right locally but wrong in Azure: the Bicep must set them.
WRONG_DEFAULT_IN_AZURE = {
    "GRAPH_AUTH": "Azure authenticates to Graph with the managed identity",
    "AzureWebJobsStorage__tableServiceUri": "identity-based storage",
    "AzureWebJobsStorage__queueServiceUri": "identity-based storage",
    "AzureWebJobsStorage__clientId": "identity-based storage (user-assigned identity)",
}
# Settings only the Functions host reads (not Vigil's code), with the value each must have;
# `{storage}` is the storage account's name, `{client}` the identity's client id.
HOST_SETTINGS = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__blobServiceUri": "https://{storage}.blob.core.windows.net",
}

# Azure built-in roles by id (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
# What the managed identity needs, on which resource type (the narrowest scope).
IDENTITY_ROLES = {
    ("Microsoft.Storage/storageAccounts", "Storage Blob Data Owner"),  # host, package, timers
    ("Microsoft.Storage/storageAccounts", "Storage Queue Data Contributor"),  # triggers, -poison
    ("Microsoft.Storage/storageAccounts", "Storage Table Data Contributor"),  # Vigil's tables
    ("Microsoft.KeyVault/vaults", "Key Vault Secrets Officer"),  # references + install tokens
    ("Microsoft.Insights/components", "Monitoring Metrics Publisher"),  # Entra telemetry
    ("Microsoft.Insights/dataCollectionRules", "Monitoring Metrics Publisher"),  # SIEM
}

# Microsoft Graph application permission each Graph action needs (graph-governance reference).
GRAPH_ACTION_PERMISSIONS = {
    act.NOTIFY_USER: "Mail.Send",
    act.REVOKE_SESSIONS: "User.RevokeSessions.All",
    act.SUSPEND_USER: "User.EnableDisableAccount.All",
    act.CONFIRM_COMPROMISED: "IdentityRiskyUser.ReadWrite.All",
}
GRAPH_ALWAYS = {"User.Read.All", "User.RevokeSessions.All", "User.EnableDisableAccount.All"}

REQUIRED_AZD = ">= 1.18.0"
PYTHON = "3.11"

# The parameter values a scenario deploys with (besides the defaults).
BASE = {"environmentName": "vigil-test", "location": "swedencentral", "principalId": ""}
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything on": {
        "workplaceAppId": "123",
        "workplaceCustomIntegration": True,
        "governanceMailSender": "vigil@contoso.com",
        "enableGraphRoleAssignment": True,
        "enableIdentityProtection": True,
        "vigilSources": "workplace,entra",
        "vnetEnabled": True,
        "keyVaultSalt": "a1b2c3d4",
        "notifyEmailTo": "soc@contoso.com",
        "enableTeamsNotifications": True,
        "enableWebhookNotifications": True,
        "siemEnabled": True,
        "siemActivities": True,
    },
    "sender scoped in Exchange": {
        "governanceMailSender": "vigil@contoso.com",
        "grantMailSendTenantWide": False,
    },
    "entra source only": {"vigilSources": "entra", "enableGraphRoleAssignment": True},
}


class Deployment:
    """infra/ and azure.yaml under one root, parsed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        infra = root / "infra"
        self.main = BicepFile.read(infra / "main.bicep")
        self.app = {p.stem: BicepFile.read(p) for p in sorted((infra / "app").glob("*.bicep"))}
        self.hooks = infra / "hooks"
        self.parameters = json.loads((infra / "main.parameters.json").read_text())
        self.azure_yaml = yaml.safe_load((root / "azure.yaml").read_text())

    def evaluator(self, scenario: str) -> Evaluator:
        return Evaluator(self.main, {**BASE, **SCENARIOS[scenario]})

    def module(self, name: str) -> Decl:
        return self.main.modules[name]

    def module_param(self, module: str, param: str) -> Any:
        body = self.module(module).value
        return body.get("params", Obj(())).get(param) if isinstance(body, Obj) else None

    def app_settings(self, scenario: str) -> dict[str, str]:
        ev = self.evaluator(scenario)
        value = ev.eval(self.module_param("api", "appSettings"))
        if not isinstance(value, dict):
            raise BicepError("the api module's appSettings is not an object")
        return {k: ev.text(v) for k, v in value.items()}


def problems(root: Path) -> list[str]:
    try:
        d = Deployment(root)
    except (BicepError, KeyError, ValueError, OSError) as e:
        return [f"infra/ cannot be read: {e}"]
    found: list[str] = []
    for check in CHECKS:
        try:
            found.extend(check(d))
        except (BicepError, KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            found.append(f"{check.__name__}: cannot check ({type(e).__name__}: {e})")
    return found


# --- app settings -----------------------------------------------------------------------------


def app_settings(d: Deployment) -> Iterator[str]:
    """The literal settings each scenario writes, through Vigil's own settings parser."""
    names = {s.name for s in SETTINGS}
    for scenario in SCENARIOS:
        ev = d.evaluator(scenario)
        env = d.app_settings(scenario)
        where = f"app settings ({scenario})"
        storage = ev.var("storageAccountName")
        vault = ev.eval(d.module_param("keyVault", "name"))
        client = "<identity.outputs.clientId>"
        unknown = sorted(set(env) - names - set(HOST_SETTINGS))
        if unknown:
            yield f"{where}: settings Vigil does not read: {unknown}"
        for spec in SETTINGS:
            if spec.name in env or spec.name in NOT_SET_IN_AZURE:
                continue
            if spec.default is None or spec.name in WRONG_DEFAULT_IN_AZURE:
                yield f"{where}: {spec.name} is not set (no default, or its default is wrong)"
        for name in set(NOT_SET_IN_AZURE) & set(env):
            yield f"{where}: {name} is set although {NOT_SET_IN_AZURE[name]}"
        for name, expected in HOST_SETTINGS.items():
            want = expected.format(storage=storage, client=client)
            if env.get(name) != want:
                yield f"{where}: host setting {name} = {env.get(name)!r}, want {want!r}"
        try:
            s = Settings.from_env(env)
        except ConfigError as e:
            yield f"{where}: Vigil's settings parser refuses them: {e}"
            continue
        expect = {
            "storage_connection": None,
            "table_service_uri": f"https://{storage}.table.core.windows.net",
            "queue_service_uri": f"https://{storage}.queue.core.windows.net",
            "storage_client_id": client,
            "graph_auth": "managed-identity",
            "graph_managed_identity_client_id": client,
            "graph_tenant_id": "<tenant().tenantId>",
            "key_vault_url": f"https://{vault}.vault.azure.net",
            "appinsights_connection_string": "<monitoring.outputs.connectionString>",
            "workplace_redirect_uri": f"https://{ev.var('functionAppName')}.azurewebsites.net"
            "/api/workplace/callback",
            "governance_mode": ev.param("governanceMode"),
            "governance_mail_sender": ev.param("governanceMailSender") or None,
        }
        for attr, want in expect.items():
            if getattr(s, attr) != want:
                yield f"{where}: Settings.{attr} = {getattr(s, attr)!r}, want {want!r}"
        if parse_authentication(s.appinsights_authentication_string) != (True, client):
            yield f"{where}: telemetry is not authenticated as the identity ({client})"
        # Secrets: a reference (which Vigil sees as unresolved until App Service resolves it).
        references = {n for n, v in env.items() if is_unresolved_reference(v)}
        secrets = {spec.name for spec in SETTINGS if spec.secret and env.get(spec.name)}
        if secrets != references or s.unresolved_references != references:
            yield f"{where}: secrets {sorted(secrets)} are not all Key Vault references"
        for name in references:
            m = re.fullmatch(
                r"@Microsoft\.KeyVault\(VaultName=([^;]+);SecretName=([a-z0-9-]+)\)", env[name]
            )
            if not m or m.group(1) != vault:
                yield f"{where}: {name} does not reference a secret of vault {vault}: {env[name]}"
        if ev.param("workplaceCustomIntegration") != ("WORKPLACE_ACCESS_TOKEN" in references):
            yield f"{where}: WORKPLACE_ACCESS_TOKEN must be a reference exactly in custom mode"


def bindings_and_queues(d: Deployment) -> Iterator[str]:
    from tests.test_bindings import triggers

    env = d.app_settings("defaults")
    ev = d.evaluator("defaults")
    queues = {q["name"] for q in ev.eval(d.module_param("storage", "queueServices"))["queues"]}
    for name, trigger in triggers().items():
        for value in trigger.values():
            for setting in re.findall(r"%([A-Za-z0-9_]+)%", str(value)):
                if setting not in env:
                    yield f"binding {name}: %{setting}% is not an app setting (the host needs it)"
        if trigger["type"] == "queueTrigger":
            queue = env.get(trigger["queueName"].strip("%"))
            if queue not in queues:
                yield f"binding {name}: queue {queue!r} is not created (queues: {sorted(queues)})"


def secret_names(d: Deployment) -> Iterator[str]:
    """The vault secrets the references name are the ones the hook stores, from the same names."""
    env = d.app_settings("everything on")
    hook = (d.hooks / "postprovision.sh").read_text()
    stored = dict(re.findall(r'put_secret ([a-z0-9-]+) "\$([A-Z_]+)"', hook))  # secret -> setting
    referenced = {
        m.group(1): name
        for name, value in env.items()
        if (m := re.search(r"SecretName=([a-z0-9-]+)\)", value))
    }
    for secret, setting in referenced.items():
        if stored.get(secret) != setting:
            yield f"secret {secret} ({setting}) is not stored by postprovision.sh from ${setting}"
    for secret in set(stored) - set(referenced):
        yield f"postprovision.sh stores {secret}, which no app setting references"


# --- identity and roles -----------------------------------------------------------------------


def roles(d: Deployment) -> Iterator[str]:
    rbac = d.app["rbac"]
    ev = Evaluator(
        rbac,
        {
            "storageAccountName": "st",
            "keyVaultName": "kv",
            "appInsightsName": "appi",
            "identityPrincipalId": "<identity>",
            "deployerPrincipalId": "<deployer>",
        },
    )
    defined: dict[str, str] = ev.var("roles")
    for key, role_id in defined.items():
        name = ROLE_IDS.get(role_id)
        if name is None or name.replace(" ", "").lower() != key.lower():
            yield f"rbac.bicep: role {key} has id {role_id} ({name or 'not a known role'})"
    used: set[str] = set()
    granted: set[tuple[str, str, str]] = set()  # (principal, scope type, role name)
    for decl in rbac.resources.values():
        if not decl.type.startswith("Microsoft.Authorization/roleAssignments@"):
            continue
        source = decl.loop.source if decl.loop else None
        scope_nodes = [source] if source is not None else []
        for var in refs(source) & set(rbac.vars) if source is not None else set():
            scope_nodes.append(rbac.vars[var].value)
        for node in [decl.body, *scope_nodes]:
            used |= {m.split(".", 1)[1] for m in members(node) if m.startswith("roles.")}
        body = decl.body
        scope = body.get("scope")
        scope_type = (
            rbac.resources[scope.name].type.split("@")[0] if isinstance(scope, Ref) else "?"
        )
        items = ev.eval(source) if decl.loop else [None]
        for item in items:
            inner = {decl.loop.item: item} if decl.loop else {}
            props = ev.eval(body.get("properties"), inner)
            role_id = props["roleDefinitionId"].rsplit("/", 1)[-1]
            principal = props["principalId"]
            if principal == "<identity>" and props.get("principalType") != "ServicePrincipal":
                yield f"rbac.bicep: {decl.name} must give principalType ServicePrincipal"
            granted.add((principal, scope_type, ROLE_IDS.get(role_id, role_id)))
    for key in sorted(set(defined) - used):
        yield f"rbac.bicep: role {key} is defined but never assigned"
    have = {(t, r) for p, t, r in granted if p == "<identity>"}
    for scope_type, role in sorted(IDENTITY_ROLES - have):
        yield f"rbac.bicep: the identity lacks {role} on {scope_type}"
    for scope_type, role in sorted(have - IDENTITY_ROLES):
        yield f"rbac.bicep: the identity has {role} on {scope_type}, which it does not need"
    if ("<deployer>", "Microsoft.KeyVault/vaults", "Key Vault Secrets Officer") not in granted:
        yield "rbac.bicep: the deployer cannot store the secrets (Key Vault Secrets Officer)"
    wiring = {
        "identityPrincipalId": "identity.outputs.principalId",
        "deployerPrincipalId": "principalId",
    }
    for param, source in wiring.items():
        if path_of(d.module_param("rbac", param)) != source:
            yield f"main.bicep: the rbac module's {param} is not {source}"
    files = [d.main, *d.app.values()]
    count = sum(
        1
        for f in files
        for r in f.resources.values()
        if r.type.startswith("Microsoft.Authorization/roleAssignments@")
    )
    if count != sum(1 for r in rbac.resources.values() if r.type.startswith("Microsoft.Auth")):
        yield "role assignments outside infra/app/rbac.bicep"
    for f in files:
        for m in f.modules.values():
            params = m.body.get("params") if isinstance(m.body, Obj) else None
            if isinstance(params, Obj) and params.get("roleAssignments") is not None:
                yield f"{f.path.name}: module {m.name} assigns roles (keep them in rbac.bicep)"


def function_app(d: Deployment) -> Iterator[str]:
    site = d.app["api"].modules["site"].value.get("params")
    config = site.get("functionAppConfig")
    runtime = config.get("runtime")
    if (runtime.get("name"), runtime.get("version")) != ("python", PYTHON):
        got = f"{runtime.get('name')} {runtime.get('version')}"
        yield f"api.bicep: runtime {got}, want python {PYTHON}"
    pyproject = (
        tomllib.loads((d.root / "pyproject.toml").read_text())
        if (d.root / "pyproject.toml").exists()
        else {}
    )
    wanted = pyproject.get("tool", {}).get("mypy", {}).get("python_version", PYTHON)
    if wanted != PYTHON:
        yield f"pyproject.toml targets Python {wanted}, the app runs {PYTHON}"
    if site.get("kind") != "functionapp,linux":
        yield f"api.bicep: kind {site.get('kind')!r}"
    identity = Ref("identityResourceId")
    storage = config.get("deployment").get("storage")
    auth = storage.get("authentication")
    if (
        auth.get("type") != "UserAssignedIdentity"
        or auth.get("userAssignedIdentityResourceId") != identity
    ):
        yield "api.bicep: the deployment package is not read with the user-assigned identity"
    if site.get("keyVaultAccessIdentityResourceId") != identity:
        yield "api.bicep: Key Vault references are not resolved with the user-assigned identity"
    if site.get("managedIdentities").get("userAssignedResourceIds") != Arr((identity,)):
        yield "api.bicep: the app does not carry the user-assigned identity"
    if site.get("appSettingsKeyValuePairs") != Ref("appSettings"):
        yield "api.bicep: the app settings are not the ones main.bicep builds"
    if path_of(d.module_param("api", "identityResourceId")) != "identity.outputs.resourceId":
        yield "main.bicep: the api module is not given the identity's resource id"
    if site.get("virtualNetworkSubnetId") is None or site.get("vnetRouteAllEnabled") is None:
        yield "api.bicep: no virtual network integration (subnet, vnetRouteAllEnabled)"
    memory = d.main.params["instanceMemoryMB"]
    allowed = {x for x in memory.decorators["allowed"][0].items}
    if not allowed <= {512, 2048, 4096} or memory.value not in allowed:
        yield f"main.bicep: instanceMemoryMB {memory.value} / allowed {sorted(allowed)}"
    plan = d.module_param("plan", "sku")
    if (plan.get("name"), plan.get("tier")) != ("FC1", "FlexConsumption"):
        yield "main.bicep: the plan is not Flex Consumption (FC1)"
    storage_params = d.module("storage").value.get("params")
    for key, want in (("allowSharedKeyAccess", False), ("allowBlobPublicAccess", False)):
        if storage_params.get(key) != want:
            yield f"main.bicep: storage {key} must be {want}"
    if d.module_param("keyVault", "enableRbacAuthorization") is not True:
        yield "main.bicep: Key Vault must use RBAC"
    if d.module_param("monitoring", "disableLocalAuth") is not True:
        yield "main.bicep: Application Insights must have local auth disabled"


def graph_roles(d: Deployment) -> Iterator[str]:
    graph_actions = set(act.ACTIONS) - act.WORKPLACE_ACTIONS
    if graph_actions != set(GRAPH_ACTION_PERMISSIONS):
        yield f"actions without a known Graph permission: {sorted(graph_actions)}"
    module = d.module("graphRoles")
    if module.condition != Ref("enableGraphRoleAssignment"):
        yield "main.bicep: the Graph role module must depend on enableGraphRoleAssignment"
    for scenario in SCENARIOS:
        ev = d.evaluator(scenario)
        granted = set(ev.eval(d.module_param("graphRoles", "appRoles")))
        want = set(GRAPH_ALWAYS)
        if ev.param("governanceMailSender") and ev.param("grantMailSendTenantWide"):
            want |= {"Mail.Send", "Mail.ReadBasic.All"}  # notify reads Sent Items first
        if ev.param("enableIdentityProtection"):
            want.add("IdentityRiskyUser.ReadWrite.All")
        if "entra" in str(ev.param("vigilSources")).split(","):
            # The Entra source's pull and its directory's groups, nothing broader.
            want |= {"AuditLog.Read.All", "GroupMember.Read.All"}
        mail = {r for r in granted if r.startswith("Mail.")}
        if mail and "Mail.Send" not in want:
            yield f"graph roles ({scenario}): {sorted(mail)} granted without a mail sender"
        if want - granted:
            yield f"graph roles ({scenario}): missing {sorted(want - granted)}"
        if granted - want - mail:
            yield f"graph roles ({scenario}): not needed {sorted(granted - want - mail)}"
    if (
        path_of(d.module_param("graphRoles", "identityPrincipalId"))
        != "identity.outputs.principalId"
    ):
        yield "main.bicep: Graph roles are not granted to the identity"
    g = d.app["graph-roles"]
    graph = g.resources["graph"]
    appid = Evaluator(g, {"identityPrincipalId": "x", "appRoles": []}).eval(
        graph.value.get("appId")
    )
    if not graph.existing or appid != "00000003-0000-0000-c000-000000000000":
        yield "graph-roles.bicep: not Microsoft Graph's service principal"
    assignment = g.resources["assignments"]
    body = assignment.body
    if (
        not assignment.type.startswith("Microsoft.Graph/appRoleAssignedTo@")
        or assignment.loop is None
        or assignment.loop.source != Ref("appRoles")
        or body.get("principalId") != Ref("identityPrincipalId")
        or path_of(body.get("resourceId")) != "graph.id"
        or "graph.appRoles" not in members(body.get("appRoleId"))
    ):
        yield "graph-roles.bicep: each app role must be assigned to the identity on Graph"


# --- network, region, names -------------------------------------------------------------------


def network(d: Deployment) -> Iterator[str]:
    for scenario in ("defaults", "everything on"):
        ev = d.evaluator(scenario)
        vnet = ev.param("vnetEnabled")
        for module in ("storage", "keyVault"):
            access = ev.eval(d.module_param(module, "publicNetworkAccess"))
            acls = ev.eval(d.module_param(module, "networkAcls"))
            closed = ("Disabled", "Deny") if vnet else ("Enabled", "Allow")
            if (access, acls.get("defaultAction")) != closed:
                yield f"{module} ({scenario}): public access {access}/{acls.get('defaultAction')}"
        subnet = ev.eval(d.module_param("api", "virtualNetworkSubnetId"))
        if bool(subnet) != vnet or (vnet and "vnet.outputs.appSubnetId" not in subnet):
            yield f"api ({scenario}): subnet {subnet!r}"
    for name in ("vnet", "privateEndpoints"):
        if d.module(name).condition != Ref("vnetEnabled"):
            yield f"main.bicep: module {name} must depend on vnetEnabled"
    if d.parameters["parameters"].get("vnetEnabled", {}).get("value") != "${VNET_ENABLED=false}":
        yield "main.parameters.json: vnetEnabled must come from VNET_ENABLED (default false)"
    pe = d.app["private-endpoints"]
    ev = Evaluator(
        pe,
        {
            "location": "x",
            "tags": {},
            "virtualNetworkName": "vnet",
            "subnetName": "pe",
            "storageAccountName": "st",
            "keyVaultName": "kv",
        },
    )
    endpoints = {e["service"]: e for e in ev.var("endpoints")}
    want: dict[str, tuple[str, str]] = {
        "blob": ("<storageAccount.id>", "privatelink.blob.core.windows.net"),
        "queue": ("<storageAccount.id>", "privatelink.queue.core.windows.net"),
        "table": ("<storageAccount.id>", "privatelink.table.core.windows.net"),
        "vault": ("<vault.id>", "privatelink.vaultcore.azure.net"),
    }
    got = {k: (e["targetId"], e["zone"]) for k, e in endpoints.items()}
    if got != want:
        yield f"private-endpoints.bicep: endpoints {got}, want {want}"
    for name, decl in pe.modules.items():
        if decl.loop is None or decl.loop.source != Ref("endpoints"):
            yield f"private-endpoints.bicep: {name} must make one per endpoint"
    connection = (
        pe.modules["privateEndpoints"].body.get("params").get("privateLinkServiceConnections")
    )
    if "endpoint.service" not in members(connection) or "endpoint.targetId" not in members(
        connection
    ):
        yield "private-endpoints.bicep: each connection must target its service's group id"
    vnet = d.app["vnet"].modules["virtualNetwork"].value.get("params")
    delegated = [s for s in vnet.get("subnets").items if s.get("delegation")]
    if [s.get("delegation") for s in delegated] != ["Microsoft.App/environments"]:
        yield "vnet.bicep: the app subnet must be delegated to Microsoft.App/environments"


def region_and_names(d: Deployment) -> Iterator[str]:
    location = d.main.params["location"]
    allowed = location.decorators.get("allowed")
    regions = [r for r in allowed[0].items] if allowed else []
    if len(regions) < 10 or not all(re.fullmatch(r"[a-z0-9]+", r) for r in regions):
        yield "main.bicep: location must be limited to the Flex Consumption regions (@allowed)"
    if any("euap" in r for r in regions):
        yield "main.bicep: canary regions are not for customers"
    names = set()
    for salt in ("", "a1b2c3d4", "e5f6a7b8"):
        ev = Evaluator(d.main, {**BASE, "keyVaultSalt": salt})
        name = ev.eval(d.module_param("keyVault", "name"))
        if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", name):
            yield f"main.bicep: vault name {name!r} is not a valid Key Vault name"
        names.add(name)
        # Where the preprovision hook finds the salt: the resource group, and the vault itself
        # (a soft-deleted vault keeps its tags).
        group_tags = ev.eval(d.main.resources["rg"].value.get("tags"))
        vault_tags = ev.eval(d.module_param("keyVault", "tags"))
        for what, tags in (("resource group", group_tags), ("vault", vault_tags)):
            want = {"azd-env-name": BASE["environmentName"], "vigil-key-vault-salt": salt}
            if {k: tags.get(k) for k in want} != want:
                yield f"main.bicep: the {what} does not carry the vault salt and environment tags"
    if len(names) != 3:
        yield "main.bicep: the vault name must change with keyVaultSalt (re-deploy after azd down)"
    if d.parameters["parameters"].get("keyVaultSalt", {}).get("value") != "${KEY_VAULT_SALT=}":
        yield "main.parameters.json: keyVaultSalt must come from KEY_VAULT_SALT"
    if "KEY_VAULT_SALT" not in (d.hooks / "preprovision.sh").read_text():
        yield "preprovision.sh does not keep KEY_VAULT_SALT"
    declared = set(d.main.params)
    unknown = sorted(set(d.parameters["parameters"]) - declared)
    if unknown:
        yield f"main.parameters.json sets undeclared parameters {unknown}"


def azure_yaml(d: Deployment) -> Iterator[str]:
    y = d.azure_yaml
    if y.get("requiredVersions", {}).get("azd") != REQUIRED_AZD:
        yield f"azure.yaml: requiredVersions.azd must be {REQUIRED_AZD!r}"
    if y.get("services") != {"api": {"project": ".", "language": "python", "host": "function"}}:
        yield "azure.yaml: one Python function service `api`"
    for hook in ("preprovision", "postprovision"):
        run = y.get("hooks", {}).get(hook, {}).get("posix", {}).get("run", "")
        if run != f"./infra/hooks/{hook}.sh" or not (d.root / run).exists():
            yield f"azure.yaml: {hook} hook is not infra/hooks/{hook}.sh"
    tag = d.app["api"].modules["site"].value.get("params").get("tags")
    if not isinstance(tag, Call) or Obj((("azd-service-name", "api"),)) not in tag.args:
        yield "api.bicep: the site is not tagged azd-service-name: api"
    if d.main.decls[0].kind != "targetScope" or d.main.decls[0].value != "subscription":
        yield "main.bicep: targetScope must be subscription"
    refs_ = [r for f in [d.main, *d.app.values()] for r in f.modules.values()]
    for m in refs_:
        if m.type.startswith("br/public:") and not re.fullmatch(
            r"br/public:avm/res/[\w/-]+:\d+\.\d+\.\d+", m.type
        ):
            yield f"module {m.name}: {m.type} is not a pinned Azure Verified Module"


# --- SIEM -------------------------------------------------------------------------------------


def siem(d: Deployment) -> Iterator[str]:
    """Only with siemEnabled: the endpoint, the tables and the rule, their streams' columns the
    ones shared/siem/rows.py writes, and the app settings that point Vigil at them."""
    from datetime import UTC, datetime

    from shared.models import Activity, Alert, Evidence
    from shared.siem.rows import activity_row, alert_row

    module = d.app["siem"]
    ev = Evaluator(
        module,
        {
            "location": "x",
            "tags": {},
            "workspaceName": "log",
            "endpointName": "dce",
            "ruleName": "dcr",
        },
    )
    t = datetime(2026, 1, 1, tzinfo=UTC)
    written = {
        "Custom-VigilAlerts_CL": set(
            alert_row(
                Alert(
                    "a",
                    "t",
                    "s",
                    "d",
                    "x",
                    "x",
                    "low",
                    "c",
                    (),
                    "u",
                    "e",
                    t,
                    t,
                    t,
                    Evidence({}, ()),
                    "k",
                )
            )
        ),
        "Custom-VigilActivities_CL": set(
            activity_row(Activity("s", "t", "e", t, "login", "LOGIN", "login", "success", "u"))
        ),
    }
    (rule,) = [r for r in module.resources.values() if "dataCollectionRules@" in r.type]
    props = ev.eval(rule.body.get("properties"))
    streams = props["streamDeclarations"]
    for stream, columns in written.items():
        declared = {c["name"] for c in streams.get(stream, {}).get("columns", [])}
        if declared != columns:
            differ = sorted(declared ^ columns)
            yield f"siem.bicep: stream {stream}: columns {differ} differ from rows.py"
        flows = [f for f in props["dataFlows"] if stream in f["streams"]]
        if [f.get("outputStream") for f in flows] != [stream]:
            yield f"siem.bicep: stream {stream} does not flow to its table"
    tables = {
        ev.eval(r.body.get("name")): ev.eval(r.body.get("properties"))["schema"]["columns"]
        for r in module.resources.values()
        if "workspaces/tables@" in r.type
    }
    for stream in written:
        table = stream.removeprefix("Custom-")
        if tables.get(table) != streams.get(stream, {}).get("columns"):
            yield f"siem.bicep: table {table} does not have its stream's columns"
    defaults = {s.name: s.default for s in SETTINGS}
    for setting, stream in (
        ("LOG_ANALYTICS_STREAM", "Custom-VigilAlerts_CL"),
        ("LOG_ANALYTICS_ACTIVITY_STREAM", "Custom-VigilActivities_CL"),
    ):
        if defaults[setting] != stream:
            yield f"{setting} defaults to {defaults[setting]}, not the rule's stream {stream}"
    for scenario in SCENARIOS:
        on = bool(d.evaluator(scenario).param("siemEnabled"))
        env = d.app_settings(scenario)
        if bool(env.get("LOG_ANALYTICS_DCE_ENDPOINT")) != on:
            yield f"app settings ({scenario}): LOG_ANALYTICS_DCE_ENDPOINT set unlike siemEnabled"
        if on and env.get("LOG_ANALYTICS_DCR_ID") != "<siem.outputs.ruleId>":
            yield f"app settings ({scenario}): LOG_ANALYTICS_DCR_ID is not the rule's immutable id"
    condition = d.module("siem").condition
    if condition is None or path_of(condition) != "siemEnabled":
        yield "main.bicep: the siem module is not deployed only when siemEnabled"
    wired = d.module_param("rbac", "dataCollectionRuleName")
    if "siem.outputs.ruleName" not in members(wired):
        yield "main.bicep: the rbac module is not given the SIEM's data collection rule"


CHECKS: tuple[Callable[[Deployment], Iterator[str]], ...] = (
    app_settings,
    bindings_and_queues,
    secret_names,
    roles,
    function_app,
    graph_roles,
    network,
    region_and_names,
    azure_yaml,
    siem,
)
