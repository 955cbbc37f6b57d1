// VNet mode (vnetEnabled): the virtual network of the function app, as in the Flex Consumption
// quickstarts (Azure-Samples/functions-quickstart-python-http-azd, infra/app/vnet.bicep): one
// subnet for the private endpoints, one delegated to Microsoft.App/environments for the app's
// outbound traffic (Flex Consumption's virtual network integration).
param name string
param location string
param tags object

var privateEndpointSubnetName = 'private-endpoints'
var appSubnetName = 'app'

module virtualNetwork 'br/public:avm/res/network/virtual-network:0.6.1' = {
  name: 'virtual-network'
  params: {
    name: name
    location: location
    tags: tags
    addressPrefixes: ['10.0.0.0/16']
    subnets: [
      {
        name: privateEndpointSubnetName
        addressPrefix: '10.0.1.0/24'
        privateEndpointNetworkPolicies: 'Disabled'
        privateLinkServiceNetworkPolicies: 'Enabled'
      }
      {
        name: appSubnetName
        addressPrefix: '10.0.2.0/24'
        privateEndpointNetworkPolicies: 'Disabled'
        privateLinkServiceNetworkPolicies: 'Enabled'
        delegation: 'Microsoft.App/environments'
      }
    ]
  }
}

output privateEndpointSubnetName string = privateEndpointSubnetName
output appSubnetId string = '${virtualNetwork.outputs.resourceId}/subnets/${appSubnetName}'
