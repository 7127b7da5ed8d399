// Who may see what (the seed's "secure access"):
//   - the operators' group reads monitoring data of this resource group: Monitoring Reader and Log Analytics Reader,
//     nothing that can change a resource or read a secret;
//   - the bot's identity may publish telemetry to its Application Insights resource (Monitoring Metrics Publisher),
//     which is what ingestion with Entra ID needs once local authentication is disabled.

param operatorsGroupPrincipalId string
param appInsightsName string
param botPrincipalId string

// Built-in role definition ids (the same in every tenant).
var monitoringReaderRoleId = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'
var logAnalyticsReaderRoleId = '73c42c96-874c-492b-b04d-ab87d138a893'
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

// No group given: no assignment (the loop runs over an empty list).
var operatorRoles = empty(operatorsGroupPrincipalId) ? [] : [
  monitoringReaderRoleId
  logAnalyticsReaderRoleId
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource operatorAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in operatorRoles: {
    name: guid(resourceGroup().id, operatorsGroupPrincipalId, roleId)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: operatorsGroupPrincipalId
      principalType: 'Group'
      description: 'otel-chatbot operators: read monitoring data and logs'
    }
  }
]

resource botPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, botPrincipalId, monitoringMetricsPublisherRoleId)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
    description: 'otel-chatbot: send telemetry with Entra ID'
  }
}
