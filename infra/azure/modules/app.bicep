// Linux App Service plan (autoscaled on CPU) and the Python web app running `python -m bot`, with its logs and
// metrics sent to the workspace. App settings are the variables the bot reads (bot/settings.py, telemetry/config.py) plus the ones the
// platform needs to build and start it.

param location string
param tags object
param planName string
param siteName string
param skuName string
param pythonVersion string
param identityId string
param identityClientId string
param minInstances int
param maxInstances int
param scaleOutCpuPercent int
param scaleInCpuPercent int
@description('Blob endpoint of the state storage account (https://<account>.blob.core.windows.net/).')
param stateBlobEndpoint string
param stateContainerName string
param appInsightsName string
param workspaceId string
param serviceName string
param environmentName string

@secure()
param telemetryHashKey string
@description('Azure OpenAI endpoint of the answer engine; empty: no model (the bot answers from its knowledge base).')
param openAiEndpoint string = ''
param openAiDeployment string = ''

// Basic plans scale by hand only (up to 3 instances); Standard and Premium get the autoscale setting below.
var autoscaleSupported = !startsWith(skuName, 'B')

// App Service routes HTTPS traffic to this port inside the container; the bot listens on it (PORT, BOT_HOST).
var botPort = '8000'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: skuName
    // Where autoscale starts; it moves the count between minInstances and maxInstances afterwards.
    capacity: autoscaleSupported ? minInstances : min(minInstances, 3)
  }
  properties: {
    reserved: true
    // checkov:skip=CKV_AZURE_225: zone redundancy needs a Premium plan with at least three instances; the template starts on one Standard instance and scales out with load (raise appServiceSkuName and minInstances for production)
    zoneRedundant: false
  }
}

var baseSettings = [
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'OTEL_SERVICE_NAME'
    value: serviceName
  }
  {
    name: 'OTEL_RESOURCE_ATTRIBUTES'
    value: 'deployment.environment=${environmentName}'
  }
  {
    name: 'MicrosoftAppType'
    value: 'UserAssignedMSI'
  }
  {
    name: 'MicrosoftAppId'
    value: identityClientId
  }
  {
    name: 'MicrosoftAppTenantId'
    value: tenant().tenantId
  }
  {
    name: 'BOT_HOST'
    value: '0.0.0.0'
  }
  {
    // App Service's front ends terminate TLS and forward the client's scheme and host: requests read https.
    name: 'BOT_TRUST_FORWARDED_HEADERS'
    value: 'true'
  }
  {
    name: 'PORT'
    value: botPort
  }
  {
    // Prometheus cannot scrape an App Service instance; Azure Monitor gets every metric anyway.
    name: 'BOT_METRICS_PORT'
    value: '0'
  }
  {
    // Telemetry that could not be sent yet waits in a folder local to the instance, not under /home: /home is one
    // network share mounted on every instance of the plan, and there the exporters and resend schedules of all
    // instances would lease, expire and delete each other's files by their own clocks (a batch sent twice, or
    // removed while another instance sends it) within one shared 50 MiB cap. The price: a batch stored during an
    // ingestion outage is lost if its instance's container is replaced before the outage ends (docs/deploy-azure.md).
    name: 'BOT_TELEMETRY_STORAGE_DIRECTORY'
    value: '/tmp/otel-chatbot/telemetry'
  }
  {
    // Conversation and user state in the shared container, so any instance can take any turn (docs/scaling.md).
    name: 'BOT_STATE_STORE'
    value: 'blob'
  }
  {
    // No connection string: the bot authenticates as its managed identity (AZURE_CLIENT_ID below).
    name: 'BOT_STATE_BLOB_ACCOUNT_URL'
    value: stateBlobEndpoint
  }
  {
    name: 'BOT_STATE_BLOB_CONTAINER'
    value: stateContainerName
  }
  {
    // azure-identity picks the bot's user-assigned identity with it (Entra ID ingestion when local auth is off, and
    // the state store's DefaultAzureCredential).
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    // The bot's telemetry authenticates to Application Insights with the identity's Entra ID tokens, so
    // ingestion keeps working when local (connection-string-only) authentication is disabled.
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD;ClientId=${identityClientId}'
  }
  {
    name: 'WEBSITES_PORT'
    value: botPort
  }
  {
    // The build (Oryx) installs the root requirements.txt: the project itself with the pins of infra/dev/constraints.txt.
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
]
var hashKeySetting = empty(telemetryHashKey) ? [] : [
  {
    name: 'BOT_TELEMETRY_HASH_KEY'
    value: telemetryHashKey
  }
]

// The answer engine's model (docs/genai.md): endpoint and deployment, and the identity whose Entra ID tokens it uses.
// No key: AZURE_OPENAI_API_KEY stays unset, so the bot authenticates as its managed identity.
var openAiSettings = empty(openAiEndpoint) ? [] : [
  {
    name: 'AZURE_OPENAI_ENDPOINT'
    value: openAiEndpoint
  }
  {
    name: 'AZURE_OPENAI_DEPLOYMENT'
    value: openAiDeployment
  }
  {
    name: 'AZURE_OPENAI_CLIENT_ID'
    value: identityClientId
  }
]

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: siteName
  location: location
  // azd finds the web app to deploy the `bot` service of azure.yaml to by this tag.
  tags: union(tags, {
    'azd-service-name': 'bot'
  })
  kind: 'app,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_17: the Bot Connector presents no client certificate, so requiring one would block every message
    // checkov:skip=CKV_AZURE_222: the Bot Connector reaches the messaging endpoint over the public internet (no private endpoint for channels)
    // checkov:skip=CKV_AZURE_212: instances come from the plan (minInstances, and its autoscale setting up to maxInstances); a per-site numberOfWorkers would pin a count that fights autoscale
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      linuxFxVersion: 'PYTHON|${pythonVersion}'
      appCommandLine: 'python -m bot'
      healthCheckPath: '/healthz'
      alwaysOn: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
      httpLoggingEnabled: true
      detailedErrorLoggingEnabled: true
      requestTracingEnabled: true
      appSettings: concat(baseSettings, hashKeySetting, openAiSettings)
    }
  }
}

// Scale out on CPU, in when quiet. One instance at a time each way: a new instance needs a few minutes to start,
// hence the cooldowns; scale-in waits longer and looks at a longer window, so a short lull does not remove capacity
// the next burst needs. Autoscale itself declines a scale-in whose remaining instances would cross the scale-out
// threshold (its flapping guard), which is why scaleInCpuPercent must stay well below scaleOutCpuPercent.
resource autoscale 'Microsoft.Insights/autoscalesettings@2022-10-01' = if (autoscaleSupported) {
  name: 'autoscale-${planName}'
  location: location
  tags: tags
  properties: {
    enabled: true
    targetResourceUri: plan.id
    profiles: [
      {
        name: 'cpu'
        capacity: {
          minimum: string(minInstances)
          maximum: string(maxInstances)
          default: string(minInstances)
        }
        rules: [
          {
            metricTrigger: {
              metricName: 'CpuPercentage'
              metricNamespace: 'microsoft.web/serverfarms'
              metricResourceUri: plan.id
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT5M'
              timeAggregation: 'Average'
              operator: 'GreaterThan'
              threshold: scaleOutCpuPercent
            }
            scaleAction: {
              direction: 'Increase'
              type: 'ChangeCount'
              value: '1'
              cooldown: 'PT5M'
            }
          }
          {
            metricTrigger: {
              metricName: 'CpuPercentage'
              metricNamespace: 'microsoft.web/serverfarms'
              metricResourceUri: plan.id
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT10M'
              timeAggregation: 'Average'
              operator: 'LessThan'
              threshold: scaleInCpuPercent
            }
            scaleAction: {
              direction: 'Decrease'
              type: 'ChangeCount'
              value: '1'
              cooldown: 'PT10M'
            }
          }
        ]
      }
    ]
  }
}

// Deployments authenticate with Entra ID (azd, az webapp deploy); publishing passwords are switched off.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'AppServiceHTTPLogs'
        enabled: true
      }
      {
        category: 'AppServiceConsoleLogs'
        enabled: true
      }
      {
        category: 'AppServicePlatformLogs'
        enabled: true
      }
      {
        category: 'AppServiceAuditLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource planDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: plan
  properties: {
    workspaceId: workspaceId
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output siteName string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
