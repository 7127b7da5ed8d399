// otel-chatbot on Azure: the bot on App Service (Linux, Python) with an autoscaling plan, its conversation state in
// Blob Storage shared by every instance, an Azure Bot registration that reaches it with a user-assigned managed
// identity (no password, no storage key), workspace-based Application Insights with retention, the seed's alerts,
// read-only access for an operators' group, a workbook and a KQL query pack.
//
//   azd up                                    (azure.yaml at the repository root; parameters: main.parameters.json)
//   az deployment sub create -l <region> -f infra/azure/main.bicep -p environmentName=dev location=<region>
//
// Subscription scope, as Azure's own azd templates: the deployment creates the resource group rg-<environment>
// (or resourceGroupName) and every resource lives in it; deleting the group removes everything
// (see docs/deploy-azure.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the environment (dev, test, prod, ...). Used in resource names and in deployment.environment.')
param environmentName string

@minLength(1)
@description('Region of the resource group and of every regional resource. The Azure Bot registration itself is global.')
param location string

@description('Name of the resource group to create. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('OTEL_SERVICE_NAME of the bot: the cloud role name in Application Insights.')
param serviceName string = 'otel-chatbot'

@description('Name shown for the bot in channels (Teams, Web Chat).')
param botDisplayName string = 'otel-chatbot'

@allowed([
  '3.11'
  '3.12'
])
@description('Python version of the App Service runtime.')
param pythonVersion string = '3.11'

@allowed([
  'B1'
  'B2'
  'B3'
  'S1'
  'S2'
  'P0v3'
  'P1v3'
])
@description('App Service plan size. Standard (S1) is the smallest with autoscale; Basic runs minInstances instances (at most 3) with no autoscale setting.')
param appServiceSkuName string = 'S1'

@minValue(1)
@maxValue(10)
@description('Instances the plan always runs (the autoscale minimum and the count it starts with). Standard plans have at most 10.')
param minInstances int = 1

@minValue(1)
@maxValue(10)
@description('Instances autoscale may add up to when CPU is high (at least minInstances).')
param maxInstances int = 3

@minValue(1)
@maxValue(100)
@description('Average CPU percentage of the plan over 5 minutes above which autoscale adds an instance. Below cpuThresholdPercent, so the plan grows before the CPU alert fires.')
param scaleOutCpuPercent int = 70

@minValue(1)
@maxValue(100)
@description('Average CPU percentage of the plan over 10 minutes below which autoscale removes an instance. Keep it well under scaleOutCpuPercent: the remaining instances take the load of the removed one.')
param scaleInCpuPercent int = 30

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Replication of the storage account that holds conversation and user state.')
param stateStorageSkuName string = 'Standard_LRS'

@minValue(1)
@description('Days after its last write that a conversation or user state blob is deleted (a dialog idle that long starts again).')
param stateRetentionDays int = 90

@allowed([
  'F0'
  'S1'
])
@description('Azure Bot pricing tier: F0 is free (standard channels unlimited, premium channels limited).')
param botSkuName string = 'F0'

@minValue(30)
@maxValue(730)
@description('How many days the Log Analytics workspace (and so Application Insights) keeps data.')
param logRetentionDays int = 30

@minValue(0)
@description('Daily ingestion cap of the workspace in GB; 0 means no cap. Data beyond the cap is dropped until the next day.')
param dailyCapGb int = 0

@description('Refuse telemetry sent with the connection string only: ingestion then needs an Entra ID token (the bot identity holds Monitoring Metrics Publisher).')
param disableLocalAuth bool = false

@description('E-mail address that receives the alerts. Empty: no e-mail (alerts still show in the portal, and in the webhook if set).')
param alertEmailAddress string = ''

@secure()
@description('Optional webhook called for every alert (common alert schema). Empty: no webhook.')
param alertWebhookUrl string = ''

@description('Object id of the Entra ID group of operators: Monitoring Reader and Log Analytics Reader on this resource group. Empty: no role assignment.')
param operatorsGroupPrincipalId string = ''

@minValue(1)
@description('Average response time of requests, in milliseconds, above which an alert fires (seed: 2 s).')
param responseTimeThresholdMs int = 2000

@minValue(1)
@maxValue(100)
@description('Average CPU percentage of the App Service plan above which an alert fires (seed: 80 %).')
param cpuThresholdPercent int = 80

@minValue(1)
@description('Failed requests within 5 minutes above which an alert fires.')
param failedRequestsThreshold int = 5

@minValue(1)
@maxValue(100)
@description('Share of failed requests (percent) per channel within 15 minutes above which the error-spike alert fires.')
param errorSpikePercent int = 10

@minValue(1)
@description('Requests failing authentication (401) on one instance within 5 minutes above which an alert fires (60 = 0.2/s, as the Prometheus alert ChatbotAuthFailureSurge).')
param authFailuresThreshold int = 60

@minValue(1)
@maxValue(5)
@description('Azure locations (of the five the /healthz availability test runs from) that must fail at once for its alert to fire.')
param availabilityFailedLocations int = 2

@description('Deploy the KQL query pack (infra/azure/queries) as a Log Analytics query pack.')
param deployQueryPack bool = true

@description('Deploy an Azure OpenAI account and chat deployment for the answer engine (docs/genai.md); the bot calls it with its managed identity, no key.')
param deployOpenAi bool = false

@description('Model of the chat deployment (with deployOpenAi).')
param openAiModelName string = 'gpt-4o-mini'

@description('Version of that model.')
param openAiModelVersion string = '2024-07-18'

@minValue(1)
@description('Capacity of the chat deployment in thousands of tokens per minute (its rate limit; the bot answers 429s with its fallback).')
param openAiCapacity int = 10

@description('Deploy the language-model alerts (model errors, 429s, token budget) although deployOpenAi is false: the bot calls a model configured outside this template (OPENAI_BASE_URL or another Azure OpenAI account in its app settings).')
param deployModelAlerts bool = false

@minValue(1)
@maxValue(100)
@description('Share of model calls (percent) failing on one instance within 10 minutes above which an alert fires (10 %, as the Prometheus alert ChatbotModelErrors).')
param modelErrorPercent int = 10

@minValue(1)
@maxValue(100)
@description('Share of model calls (percent) refused with 429 on one instance within 15 minutes above which an alert fires (5 %, as the Prometheus alert ChatbotModelThrottled).')
param modelThrottledPercent int = 5

@minValue(1)
@description('Model tokens (input and output) all instances may use in an hour before an alert fires (1,000,000, as the Prometheus alert ChatbotTokenBudget).')
param tokenBudgetPerHour int = 1000000

@description('Base address of the published runbooks (docs/runbooks): the model alerts link <base>/<alert name>.md, as the Prometheus rules do with their runbook_base_url.')
param runbookBaseUrl string = 'https://runbooks.example.com/otel-chatbot'

@description('Turn on the Microsoft Teams channel of the Azure Bot (Web Chat is always on).')
param enableTeamsChannel bool = false

@secure()
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
@description('BOT_TELEMETRY_HASH_KEY: keeps the hashes of user and conversation ids stable across restarts and instances (azd generates it once). Empty: a random key per process, and users per day are overcounted.')
param telemetryHashKey string

@description('Tags added to every resource.')
param tags object = {}

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'otel-chatbot'
})

// azd finds the environment's resource group by its azd-env-name tag (and AZURE_RESOURCE_GROUP, an output below).
resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: allTags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: allTags
    workspaceName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    retentionInDays: logRetentionDays
    dailyCapGb: dailyCapGb
    disableLocalAuth: disableLocalAuth
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: allTags
    identityName: 'id-bot-${resourceToken}'
  }
}

module openAi 'modules/openai.bicep' = if (deployOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    location: location
    tags: allTags
    accountName: 'oai-${resourceToken}'
    deploymentName: 'chat'
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    capacity: openAiCapacity
    botPrincipalId: identity.outputs.principalId
  }
}

// Conversation and user state shared by every instance (BOT_STATE_STORE=blob); the bot reaches it as its identity.
module stateStorage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: allTags
    accountName: 'st${resourceToken}'
    containerName: 'bot-state'
    skuName: stateStorageSkuName
    retentionDays: stateRetentionDays
    botPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

module app 'modules/app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    location: location
    tags: allTags
    planName: 'plan-${resourceToken}'
    siteName: 'app-${resourceToken}'
    skuName: appServiceSkuName
    pythonVersion: pythonVersion
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    minInstances: minInstances
    maxInstances: maxInstances
    scaleOutCpuPercent: scaleOutCpuPercent
    scaleInCpuPercent: scaleInCpuPercent
    stateBlobEndpoint: stateStorage.outputs.blobEndpoint
    stateContainerName: stateStorage.outputs.containerName
    appInsightsName: monitoring.outputs.appInsightsName
    workspaceId: monitoring.outputs.workspaceId
    serviceName: serviceName
    environmentName: environmentName
    telemetryHashKey: telemetryHashKey
    openAiEndpoint: deployOpenAi ? openAi.outputs.endpoint : ''
    openAiDeployment: deployOpenAi ? openAi.outputs.deploymentName : ''
  }
}

module bot 'modules/bot.bicep' = {
  name: 'bot'
  scope: rg
  params: {
    tags: allTags
    botName: 'bot-${resourceToken}'
    displayName: botDisplayName
    skuName: botSkuName
    messagingEndpoint: 'https://${app.outputs.defaultHostName}/api/messages'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    enableTeamsChannel: enableTeamsChannel
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: allTags
    resourceToken: resourceToken
    alertEmailAddress: alertEmailAddress
    alertWebhookUrl: alertWebhookUrl
    appInsightsId: monitoring.outputs.appInsightsId
    workspaceId: monitoring.outputs.workspaceId
    planId: app.outputs.planId
    responseTimeThresholdMs: responseTimeThresholdMs
    cpuThresholdPercent: cpuThresholdPercent
    failedRequestsThreshold: failedRequestsThreshold
    errorSpikePercent: errorSpikePercent
    authFailuresThreshold: authFailuresThreshold
    healthUrl: 'https://${app.outputs.defaultHostName}/healthz'
    availabilityFailedLocations: availabilityFailedLocations
    // A model is configured when the template deploys one (the same condition as the app's AZURE_OPENAI_* settings)
    // or when the operator says the bot calls one of its own.
    modelAlerts: deployOpenAi || deployModelAlerts
    modelErrorPercent: modelErrorPercent
    modelThrottledPercent: modelThrottledPercent
    tokenBudgetPerHour: tokenBudgetPerHour
    runbookBaseUrl: runbookBaseUrl
  }
}

module access 'modules/access.bicep' = {
  name: 'access'
  scope: rg
  params: {
    operatorsGroupPrincipalId: operatorsGroupPrincipalId
    appInsightsName: monitoring.outputs.appInsightsName
    botPrincipalId: identity.outputs.principalId
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
    displayName: '${botDisplayName} (${environmentName})'
  }
}

module queryPack 'modules/querypack.bicep' = if (deployQueryPack) {
  name: 'querypack'
  scope: rg
  params: {
    location: location
    tags: allTags
    queryPackName: 'pack-${resourceToken}'
  }
}

// What azd keeps in the environment (`azd env get-values`). AZURE_* and SERVICE_BOT_* follow azd's conventions;
// APPLICATIONINSIGHTS_CONNECTION_STRING is for the local loop (a bot on your machine exporting to this resource): it
// identifies the resource and is not a secret (docs/deploy-azure.md). No key, password or secure parameter leaves.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_BOT_NAME string = app.outputs.siteName
output SERVICE_BOT_URI string = 'https://${app.outputs.defaultHostName}'
output SERVICE_BOT_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output BOT_WEB_APP_NAME string = app.outputs.siteName
output BOT_MESSAGING_ENDPOINT string = 'https://${app.outputs.defaultHostName}/api/messages'
output BOT_HEALTH_URL string = 'https://${app.outputs.defaultHostName}/healthz'
output BOT_RESOURCE_NAME string = bot.outputs.botName
output BOT_APP_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.workspaceName
output WORKBOOK_ID string = workbook.outputs.workbookId
output BOT_STATE_STORAGE_ACCOUNT string = stateStorage.outputs.accountName
