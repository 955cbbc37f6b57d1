// Microsoft Graph application permissions for the managed identity: Entra app-role assignments
// on the Graph service principal (not Azure RBAC). Optional (enableGraphRoleAssignment): the
// deployer needs AppRoleAssignment.ReadWrite.All and Application.Read.All. The same grants by
// script: infra/hooks/grant-graph-permissions.sh.
extension microsoftGraphV1

@description('Object id of the managed identity\'s service principal.')
param identityPrincipalId string

@description('Graph application permissions (app role values) to grant.')
param appRoles string[]

var graphAppId = '00000003-0000-0000-c000-000000000000' // Microsoft Graph, in every tenant

resource graph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: graphAppId
}

resource assignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in appRoles: {
    // The role's id is looked up by its value, so no GUID is copied by hand.
    appRoleId: filter(graph.appRoles, r => r.value == role)[0].id
    principalId: identityPrincipalId
    resourceId: graph.id
  }
]
