// VNet mode (vnetEnabled): a private endpoint and a private DNS zone linked to the virtual
// network for each service the app reaches: storage blob, queue and table (host storage, the
// deployment package, the triggers' queues, Vigil's tables) and Key Vault (references and
// install tokens). Azure Verified Modules as in the Flex Consumption quickstarts
// (Azure-Samples/functions-quickstart-python-http-azd, infra/app/storage-PrivateEndpoint.bicep).
param location string
param tags object
param virtualNetworkName string
param subnetName string
param storageAccountName string
param keyVaultName string

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' existing = {
  name: virtualNetworkName
}

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// One entry per private endpoint: the target, its sub-resource (group id) and its DNS zone.
var endpoints = [
  {
    service: 'blob'
    targetId: storageAccount.id
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    service: 'queue'
    targetId: storageAccount.id
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    service: 'table'
    targetId: storageAccount.id
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    service: 'vault'
    targetId: vault.id
    zone: 'privatelink.vaultcore.azure.net' // Key Vault's private zone in the public cloud
  }
]

module zones 'br/public:avm/res/network/private-dns-zone:0.7.1' = [
  for endpoint in endpoints: {
    name: 'zone-${endpoint.service}'
    params: {
      name: endpoint.zone
      location: 'global'
      tags: tags
      virtualNetworkLinks: [
        {
          name: '${virtualNetworkName}-${endpoint.service}'
          virtualNetworkResourceId: vnet.id
          registrationEnabled: false
          location: 'global'
          tags: tags
        }
      ]
    }
  }
]

module privateEndpoints 'br/public:avm/res/network/private-endpoint:0.11.0' = [
  for (endpoint, i) in endpoints: {
    name: 'pep-${endpoint.service}'
    params: {
      name: 'pep-${endpoint.service}-${last(split(endpoint.targetId, '/'))}'
      location: location
      tags: tags
      subnetResourceId: '${vnet.id}/subnets/${subnetName}'
      privateLinkServiceConnections: [
        {
          name: '${endpoint.service}-connection'
          properties: {
            privateLinkServiceId: endpoint.targetId
            groupIds: [endpoint.service]
          }
        }
      ]
      privateDnsZoneGroup: {
        name: '${endpoint.service}-dns'
        privateDnsZoneGroupConfigs: [
          {
            name: endpoint.service
            privateDnsZoneResourceId: zones[i].outputs.resourceId
          }
        ]
      }
    }
  }
]
