// Vigil on Azure: `azd up` provisions everything here, then deploys the function app.
// Azure Verified Modules are pinned by version; the role assignments live in app/rbac.bicep, the
// optional Microsoft Graph app roles in app/graph-roles.bicep, the optional private network
// (vnetEnabled) in app/vnet.bicep and app/private-endpoints.bicep. CI compiles and lints this
// (.github/workflows/bicep.yml); tests/test_infra.py parses it where no compiler is available.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; with the subscription and location it makes every resource name unique.')
param environmentName string

// The regions that offer Flex Consumption, as listed by the Flex quickstart
// (Azure-Samples/functions-quickstart-python-http-azd, infra/main.bicep, 2025-11-24; its
// canary region eastus2euap left out). An unsupported region fails validation before anything
// is created, and azd offers only these when it asks. Check a new region with
// `az functionapp list-flexconsumption-locations -o table` and add it here.
@minLength(1)
@description('Region of every resource: one that offers Flex Consumption.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID): gets Key Vault Secrets Officer so the postprovision hook can store the secrets. Empty: none.')
param principalId string = ''

@description('Type of principalId.')
@allowed(['User', 'ServicePrincipal'])
param principalType string = 'User'

@description('Workplace app id (WORKPLACE_APP_ID). Empty until the app or custom integration exists.')
param workplaceAppId string = ''

@description('Workplace custom integration mode (one community, an access token from the Admin Panel) instead of the third-party app install flow. True: WORKPLACE_ACCESS_TOKEN is read from Key Vault.')
param workplaceCustomIntegration bool = false

@description('GOVERNANCE_MODE: off, dry-run or enforce. Start with dry-run.')
@allowed(['off', 'dry-run', 'enforce'])
param governanceMode string = 'dry-run'

@description('GOVERNANCE_MAIL_SENDER: mailbox that notification mail is sent from. Empty: notify is unavailable.')
param governanceMailSender string = ''

@description('VIGIL_SOURCES: the sources sync_timer feeds the engine from, comma-separated: workplace, entra or both. With entra, the managed identity is granted AuditLog.Read.All (sign-in and directory-audit logs; sign-ins need Entra ID P1 or P2) and GroupMember.Read.All (groups and their members).')
param vigilSources string = 'workplace'

@description('SYNC_SCHEDULE: NCRONTAB (six fields, UTC) of the timer that drains the webhook inbox.')
param syncSchedule string = '0 * * * * *'

@description('TOR_REFRESH_SCHEDULE: NCRONTAB (six fields, UTC) of the timer that refreshes the Tor exit list.')
param torRefreshSchedule string = '0 0 * * * *'

@description('RETENTION_SCHEDULE: NCRONTAB (six fields, UTC) of the timer that deletes data past its retention.')
param retentionSchedule string = '0 30 3 * * *'

@description('STORAGE_PREFIX: prefix of every table Vigil creates.')
param storagePrefix string = 'vigil'

@description('Assign the Microsoft Graph application permissions to the managed identity with the Microsoft Graph Bicep extension. The deployer then needs AppRoleAssignment.ReadWrite.All and Application.Read.All (for example Privileged Role Administrator). False: run infra/hooks/grant-graph-permissions.sh as an admin instead.')
param enableGraphRoleAssignment bool = false

@description('With a mail sender (governanceMailSender), grant Mail.Send and Mail.ReadBasic.All (notify reads its Sent Items before it could send twice) in Entra, which covers every mailbox (scope them with Exchange RBAC for Applications or an application access policy). False: grant them in Exchange Online RBAC for Applications for the sender mailbox only (README, Deploy). Without a sender neither is ever granted.')
param grantMailSendTenantWide bool = true

@description('Include IdentityRiskyUser.ReadWrite.All (confirm compromised; needs Entra ID P2).')
param enableIdentityProtection bool = false

@description('Put App Service Authentication (Microsoft Entra ID, app roles Vigil.Reader and Vigil.Responder) in front of the analyst API: infra/app/auth.bicep. The deployer needs Application.ReadWrite.All unless authClientId names an existing registration.')
param enableAppServiceAuth bool = true

@description('Client id of an existing app registration for App Service Authentication. Empty: one is created.')
param authClientId string = ''

@description('Read AUTOMATION_KEY (secret automation-key in Key Vault) so automation can call the analyst API without signing in.')
param enableAutomationKey bool = false

@description('Flex Consumption: most instances the app scales out to (a cost ceiling).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: memory per instance in MB. 2048 holds the largest measured function process (523 MB at 10,000 users) with room for the host; 512 suits communities up to a few thousand users (README, Cost).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Storage redundancy. LRS is the cheapest; ZRS survives a zone outage.')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
param storageSkuName string = 'Standard_LRS'

@description('Days Log Analytics keeps data (31 days are included in the ingestion price).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 31

@description('Key Vault purge protection. Keep true in production; false lets `azd down --purge` remove a test vault at once.')
param keyVaultPurgeProtection bool = true

@description('KEY_VAULT_SALT, kept by infra/hooks/preprovision.sh: part of the vault name. Empty (a new environment): kv-<resource token>. The hook draws a new one when the vault of the current salt is soft-deleted (after `azd down`), so the next provision creates a vault with a new name instead of failing on the deleted one.')
param keyVaultSalt string = ''

@description('VNET_ENABLED: put the function app in a virtual network and reach storage (blob, queue, table) and Key Vault only through private endpoints, with their public network access off. False (default): public endpoints, identity-only access.')
param vnetEnabled bool = false

@description('Where new alerts at or above notifyMinSeverity are announced: an e-mail address (sent from governanceMailSender); empty: no e-mail.')
param notifyEmailTo string = ''

@allowed(['informational', 'low', 'medium', 'high'])
param notifyMinSeverity string = 'medium'

@description('Announce alerts in a Teams channel: the postprovision hook stores NOTIFY_TEAMS_WEBHOOK_URL in Key Vault.')
param enableTeamsNotifications bool = false

@description('Announce alerts to a signed webhook: the postprovision hook stores NOTIFY_WEBHOOK_URL and NOTIFY_WEBHOOK_SECRET in Key Vault.')
param enableWebhookNotifications bool = false

@description('Send alerts to Log Analytics tables through the Logs Ingestion API (a data collection endpoint and rule).')
param siemEnabled bool = false

@description('With siemEnabled, also send every detected activity.')
param siemActivities bool = false

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
// The salt is recorded where infra/hooks/preprovision.sh finds it from any machine (a CI runner
// starts with an empty azd environment): on the resource group, and on the vault, whose tags a
// soft-deleted vault keeps.
var saltTags = union(tags, { 'vigil-key-vault-salt': keyVaultSalt })

var functionAppName = '${abbrs.webSitesFunctions}vigil-${resourceToken}'
var storageAccountName = '${abbrs.storageStorageAccounts}${resourceToken}'
// A soft-deleted vault keeps its name for the retention period (90 days with purge protection),
// so the name takes a salt that changes after `azd down` (see keyVaultSalt).
var keyVaultSeed = empty(keyVaultSalt) ? resourceToken : uniqueString(resourceToken, keyVaultSalt)
var keyVaultToken = toLower(keyVaultSeed)
var keyVaultName = '${abbrs.keyVaultVaults}${keyVaultToken}'
var vnetName = '${abbrs.networkVirtualNetworks}${resourceToken}'
// Network rules of storage and Key Vault: only private endpoints in VNet mode (as the quickstarts).
var privateAcls = { defaultAction: 'Deny', bypass: 'None' }
var publicAcls = { defaultAction: 'Allow', bypass: 'AzureServices' }
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var activityQueueName = 'activity'
var governQueueName = 'govern'
var notifyQueueName = 'notify'

var storageSuffix = environment().suffixes.storage
var blobServiceUri = 'https://${storageAccountName}.blob.${storageSuffix}'
var queueServiceUri = 'https://${storageAccountName}.queue.${storageSuffix}'
var tableServiceUri = 'https://${storageAccountName}.table.${storageSuffix}'

// Key Vault references: the app resolves them with the managed identity (keyVaultReferenceIdentity).
// An unresolved reference leaves the setting missing, which Vigil reports by name when needed.
var kv = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName='

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: saltTags
}

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}vigil-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage'
  scope: rg
  params: {
    name: storageAccountName
    location: location
    tags: tags
    skuName: storageSkuName
    kind: 'StorageV2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity only: no connection strings anywhere
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    // As the Flex quickstarts: private endpoints only in VNet mode.
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: vnetEnabled ? privateAcls : publicAcls
    blobServices: {
      containers: [{ name: deploymentContainerName }]
    }
    // The triggers' queues; `<queue>-poison` is created by the host on first use.
    queueServices: {
      queues: [{ name: activityQueueName }, { name: governQueueName }, { name: notifyQueueName }]
    }
    // Tables are created by shared/storage.py on first use (names carry STORAGE_PREFIX).
    tableServices: {
      tables: []
    }
  }
}

module keyVault 'br/public:avm/res/key-vault/vault:0.11.0' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: saltTags
    sku: 'standard'
    enableRbacAuthorization: true
    enablePurgeProtection: keyVaultPurgeProtection
    softDeleteRetentionInDays: 90
    enableVaultForDeployment: false
    enableVaultForTemplateDeployment: false
    enableVaultForDiskEncryption: false
    // VNet mode: reachable through its private endpoint only (the postprovision hook opens it to
    // the deployer's address while it stores the secrets, then closes it again).
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    networkAcls: vnetEnabled ? privateAcls : publicAcls
  }
}

module vnet 'app/vnet.bicep' = if (vnetEnabled) {
  name: 'vnet'
  scope: rg
  params: {
    name: vnetName
    location: location
    tags: tags
  }
}

module privateEndpoints 'app/private-endpoints.bicep' = if (vnetEnabled) {
  name: 'private-endpoints'
  scope: rg
  params: {
    location: location
    tags: tags
    virtualNetworkName: vnetName
    subnetName: vnetEnabled ? vnet.outputs.privateEndpointSubnetName : ''
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.7.0' = {
  name: 'loganalytics'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: logRetentionDays
  }
}

module monitoring 'br/public:avm/res/insights/component:0.4.1' = {
  name: 'appinsights'
  scope: rg
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true // telemetry must carry an Entra token (Monitoring Metrics Publisher)
  }
}

module siem 'app/siem.bicep' = if (siemEnabled) {
  name: 'siem'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceName: logAnalytics.outputs.name
    endpointName: '${abbrs.insightsDataCollectionEndpoints}vigil-${resourceToken}'
    ruleName: '${abbrs.insightsDataCollectionRules}vigil-${resourceToken}'
  }
}

module plan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'plan'
  scope: rg
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true
  }
}

// Every app setting Vigil reads that has no default, or whose default is wrong in Azure
// (tests/test_infra.py evaluates them and runs them through shared.config's parser). Secrets are
// Key Vault references; the postprovision hook stores them under the same names. Workplace tokens
// Vigil obtains at install time go to the same vault (KEY_VAULT_URL), so SECRET_ENCRYPTION_KEY is
// not needed.
var appSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: blobServiceUri
  AzureWebJobsStorage__queueServiceUri: queueServiceUri
  AzureWebJobsStorage__tableServiceUri: tableServiceUri
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  STORAGE_PREFIX: storagePrefix
  ACTIVITY_QUEUE: activityQueueName
  GOVERN_QUEUE: governQueueName
  SYNC_SCHEDULE: syncSchedule
  TOR_REFRESH_SCHEDULE: torRefreshSchedule
  RETENTION_SCHEDULE: retentionSchedule
  WORKPLACE_APP_ID: workplaceAppId
  WORKPLACE_APP_SECRET: '${kv}workplace-app-secret)'
  WORKPLACE_WEBHOOK_VERIFY_TOKEN: '${kv}workplace-webhook-verify-token)'
  WORKPLACE_ACCESS_TOKEN: workplaceCustomIntegration ? '${kv}workplace-access-token)' : ''
  WORKPLACE_REDIRECT_URI: 'https://${functionAppName}.azurewebsites.net/api/workplace/callback'
  KEY_VAULT_URL: 'https://${keyVaultName}${environment().suffixes.keyvaultDns}'
  GRAPH_AUTH: 'managed-identity'
  GRAPH_MANAGED_IDENTITY_CLIENT_ID: identity.outputs.clientId
  GRAPH_TENANT_ID: tenant().tenantId
  GOVERNANCE_MODE: governanceMode
  GOVERNANCE_MAIL_SENDER: governanceMailSender
  APP_SERVICE_AUTH: enableAppServiceAuth ? 'true' : 'false'
  AUTOMATION_KEY: enableAutomationKey ? '${kv}automation-key)' : ''
  VIGIL_SOURCES: vigilSources
  NOTIFY_QUEUE: notifyQueueName
  NOTIFY_MIN_SEVERITY: notifyMinSeverity
  NOTIFY_EMAIL_TO: notifyEmailTo
  NOTIFY_TEAMS_WEBHOOK_URL: enableTeamsNotifications ? '${kv}notify-teams-webhook-url)' : ''
  NOTIFY_WEBHOOK_URL: enableWebhookNotifications ? '${kv}notify-webhook-url)' : ''
  NOTIFY_WEBHOOK_SECRET: enableWebhookNotifications ? '${kv}notify-webhook-secret)' : ''
  LOG_ANALYTICS_DCE_ENDPOINT: siemEnabled ? siem.outputs.endpoint : ''
  LOG_ANALYTICS_DCR_ID: siemEnabled ? siem.outputs.ruleId : ''
  LOG_ANALYTICS_ACTIVITIES: siemActivities ? 'true' : 'false'
  LOG_ANALYTICS_SCHEDULE: '0 * * * * *'
  LOG_ANALYTICS_CLIENT_ID: identity.outputs.clientId
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    planResourceId: plan.outputs.resourceId
    identityResourceId: identity.outputs.resourceId
    deploymentContainerUrl: '${blobServiceUri}/${deploymentContainerName}'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
    virtualNetworkSubnetId: vnetEnabled ? vnet.outputs.appSubnetId : ''
  }
  dependsOn: [storage, keyVault, rbac, privateEndpoints]
}

module auth 'app/auth.bicep' = if (enableAppServiceAuth) {
  name: 'auth'
  scope: rg
  params: {
    functionAppName: api.outputs.name
    defaultHostname: api.outputs.defaultHostname
    authClientId: authClientId
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.name
    identityPrincipalId: identity.outputs.principalId
    dataCollectionRuleName: siemEnabled ? siem.outputs.ruleName : ''
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
  }
}

// Mail.Send only when there is a sender to send from (and it is not scoped in Exchange instead).
var grantMailSend = !empty(governanceMailSender) && grantMailSendTenantWide
// The Entra source (VIGIL_SOURCES, no spaces) reads the reporting APIs: AuditLog.Read.All only
// (least privilege; the Directory.Read.All that older pages also list is not needed). Its
// /users delta query needs User.Read.All, which governance is granted anyway, and its
// /groups/delta (groups and their members) GroupMember.Read.All.
var entraSource = contains(split(vigilSources, ','), 'entra')

module graphRoles 'app/graph-roles.bicep' = if (enableGraphRoleAssignment) {
  name: 'graph-roles'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    appRoles: concat(
      ['User.Read.All', 'User.RevokeSessions.All', 'User.EnableDisableAccount.All'],
      grantMailSend ? ['Mail.Send', 'Mail.ReadBasic.All'] : [],
      enableIdentityProtection ? ['IdentityRiskyUser.ReadWrite.All'] : [],
      entraSource ? ['AuditLog.Read.All', 'GroupMember.Read.All'] : []
    )
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output AZURE_FUNCTION_URL string = 'https://${api.outputs.defaultHostname}'
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output VNET_ENABLED bool = vnetEnabled
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
