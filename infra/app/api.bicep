// The function app: Flex Consumption (FC1), Python 3.11, the user-assigned identity for storage,
// deployment package, Key Vault references, telemetry and Graph. No keys or connection strings.
param name string
param location string
param tags object
param planResourceId string
param identityResourceId string
@description('Blob container URL of the deployment package (Flex pulls it with the identity).')
param deploymentContainerUrl string
param instanceMemoryMB int
param maximumInstanceCount int
@description('App settings, built in main.bicep (checked by tests/test_infra.py).')
param appSettings object
@description('VNet mode: the subnet (delegated to Microsoft.App/environments) the app sends its traffic through. Empty: none.')
param virtualNetworkSubnetId string = ''

module site 'br/public:avm/res/web/site:0.15.1' = {
  name: 'site'
  params: {
    name: name
    location: location
    kind: 'functionapp,linux'
    tags: union(tags, { 'azd-service-name': 'api' })
    serverFarmResourceId: planResourceId
    httpsOnly: true
    managedIdentities: {
      systemAssigned: false
      userAssignedResourceIds: [identityResourceId]
    }
    keyVaultAccessIdentityResourceId: identityResourceId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      alwaysOn: false // not available on Flex Consumption
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    // No basic-auth publishing: azd deploys with an Entra token.
    // VNet mode: all outbound traffic through the subnet, so storage and Key Vault (references
    // included) are reached at their private endpoints.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    vnetRouteAllEnabled: !empty(virtualNetworkSubnetId)
    basicPublishingCredentialsPolicies: [
      { name: 'ftp', allow: false }
      { name: 'scm', allow: false }
    ]
    appSettingsKeyValuePairs: appSettings
  }
}

output name string = site.outputs.name
output defaultHostname string = site.outputs.defaultHostname
