// SIEM (siemEnabled): Vigil's alerts, and if asked its activities, in Log Analytics custom tables
// through the Logs Ingestion API: a data collection endpoint, the two tables, and one data
// collection rule with a stream per table. The app sends with its managed identity, which
// rbac.bicep makes Monitoring Metrics Publisher on this rule only.
param location string
param tags object
param workspaceName string
param endpointName string
param ruleName string

// Each stream's columns: shared/siem/rows.py writes exactly these (tests/infra_checks.py).
var alertColumns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'AlertId', type: 'string' }
  { name: 'Tenant', type: 'string' }
  { name: 'Source', type: 'string' }
  { name: 'DetectorId', type: 'string' }
  { name: 'Title', type: 'string' }
  { name: 'Severity', type: 'string' }
  { name: 'Category', type: 'string' }
  { name: 'UserId', type: 'string' }
  { name: 'UserEmail', type: 'string' }
  { name: 'FirstActivity', type: 'datetime' }
  { name: 'LastActivity', type: 'datetime' }
  { name: 'EventCount', type: 'int' }
  { name: 'MitreTechniques', type: 'dynamic' }
  { name: 'Alert', type: 'dynamic' }
]
var activityColumns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'ActivityId', type: 'string' }
  { name: 'Tenant', type: 'string' }
  { name: 'Source', type: 'string' }
  { name: 'ActivityType', type: 'string' }
  { name: 'EventName', type: 'string' }
  { name: 'Outcome', type: 'string' }
  { name: 'ActorId', type: 'string' }
  { name: 'ActorEmail', type: 'string' }
  { name: 'TargetId', type: 'string' }
  { name: 'TargetEmail', type: 'string' }
  { name: 'IpAddress', type: 'string' }
  { name: 'Country', type: 'string' }
  { name: 'UserAgent', type: 'string' }
  { name: 'Interactive', type: 'boolean' }
  { name: 'Administrative', type: 'boolean' }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: workspaceName
}

resource alertsTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: 'VigilAlerts_CL'
  properties: {
    plan: 'Analytics'
    schema: {
      name: 'VigilAlerts_CL'
      columns: alertColumns
    }
  }
}

resource activitiesTable 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = {
  parent: workspace
  name: 'VigilActivities_CL'
  properties: {
    plan: 'Analytics'
    schema: {
      name: 'VigilActivities_CL'
      columns: activityColumns
    }
  }
}

resource endpoint 'Microsoft.Insights/dataCollectionEndpoints@2022-06-01' = {
  name: endpointName
  location: location
  tags: tags
  properties: {
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource rule 'Microsoft.Insights/dataCollectionRules@2022-06-01' = {
  name: ruleName
  location: location
  tags: tags
  properties: {
    dataCollectionEndpointId: endpoint.id
    streamDeclarations: {
      'Custom-VigilAlerts_CL': {
        columns: alertColumns
      }
      'Custom-VigilActivities_CL': {
        columns: activityColumns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: 'vigil'
          workspaceResourceId: workspace.id
        }
      ]
    }
    dataFlows: [
      {
        streams: ['Custom-VigilAlerts_CL']
        destinations: ['vigil']
        transformKql: 'source'
        outputStream: 'Custom-VigilAlerts_CL'
      }
      {
        streams: ['Custom-VigilActivities_CL']
        destinations: ['vigil']
        transformKql: 'source'
        outputStream: 'Custom-VigilActivities_CL'
      }
    ]
  }
  dependsOn: [alertsTable, activitiesTable]
}

output endpoint string = endpoint.properties.logsIngestion.endpoint
output ruleId string = rule.properties.immutableId
output ruleName string = rule.name
