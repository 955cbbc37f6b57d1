// App Service Authentication (Microsoft Entra ID) in front of the function app, and the app
// registration with Vigil's two app roles. Analysts sign in; the app reads who they are and
// which roles they hold from X-MS-CLIENT-PRINCIPAL (shared/access.py, APP_SERVICE_AUTH=true).
//
// Unauthenticated requests are let through to the app (AllowAnonymous) on purpose: the Workplace
// webhook, install callback and uninstall routes authenticate by signature, and automation
// presents AUTOMATION_KEY. Every analyst route answers 401 without a principal or that key.
// Creating the registration needs Application.ReadWrite.All (or the Application Developer role)
// for the deployer; pass authClientId to take an existing registration instead.
extension microsoftGraphV1

@description('The function app (Microsoft.Web/sites) to put behind App Service Authentication.')
param functionAppName string

@description('Its default host name, for the sign-in redirect URI.')
param defaultHostname string

@description('Client id of an existing app registration to use. Empty: one is created with the roles.')
param authClientId string = ''

var createRegistration = empty(authClientId)
var roles = [
  {
    value: 'Vigil.Reader'
    displayName: 'Vigil reader'
    description: 'Read alerts, activities, users, posture, the governance and audit logs.'
  }
  {
    value: 'Vigil.Responder'
    displayName: 'Vigil responder'
    description: 'Everything a reader does, and triage alerts, approve, retry and revert governance actions.'
  }
]

resource registration 'Microsoft.Graph/applications@v1.0' = if (createRegistration) {
  uniqueName: 'vigil-${functionAppName}'
  displayName: 'Vigil (${functionAppName})'
  signInAudience: 'AzureADMyOrg'
  web: {
    redirectUris: ['https://${defaultHostname}/.auth/login/aad/callback']
    implicitGrantSettings: { enableIdTokenIssuance: true } // sign-in without a client secret
  }
  appRoles: [
    for role in roles: {
      id: guid(functionAppName, role.value)
      value: role.value
      displayName: role.displayName
      description: role.description
      allowedMemberTypes: ['User', 'Application']
      isEnabled: true
    }
  ]
}

resource principal 'Microsoft.Graph/servicePrincipals@v1.0' = if (createRegistration) {
  appId: registration.appId
  appRoleAssignmentRequired: true // only people given a Vigil role can sign in at all
}

var clientId = createRegistration ? registration.appId : authClientId

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [clientId, 'api://${clientId}']
        }
      }
    }
    login: {
      tokenStore: { enabled: true }
    }
  }
  dependsOn: [principal]
}

output clientId string = clientId
