// Conversation and user state of every bot instance (BOT_STATE_STORE=blob, docs/scaling.md): a storage account the
// bot reaches with its managed identity only. No account keys (shared key access off), TLS 1.2, HTTPS only, no
// anonymous access; the container is private and the bot's identity gets Storage Blob Data Contributor on it.

param location string
param tags object
param accountName string
param containerName string
param botPrincipalId string
param workspaceId string

// Built-in role: Storage Blob Data Contributor (read, write and delete blobs; no keys, no account management).
var blobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name comes from main.bicep, 'st' + uniqueString(...): 15 lowercase letters and digits, within the rules; checkov cannot follow a parameter into a module
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // checkov:skip=CKV_AZURE_206: conversation state is short-lived (dialogs last minutes); zone-redundant storage keeps it through a zone failure, geo-replication would only copy it to a region the bot does not run in
    name: 'Standard_ZRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_59: the bot on App Service reaches the account over its public endpoint; a private endpoint needs a virtual network the template does not create (the account accepts Entra ID tokens only)
    // checkov:skip=CKV_AZURE_35: a default-deny network rule would need the web app's outbound addresses or a virtual network; access is by Entra ID role only
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    accessTier: 'Hot'
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // A state blob deleted by mistake (or by a bug) can be restored for a week.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}

resource botBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(container.id, botPrincipalId, blobDataContributorRoleId)
  scope: container
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributorRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
    description: 'otel-chatbot: read and write conversation state in this container'
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

output blobEndpoint string = account.properties.primaryEndpoints.blob
output containerName string = container.name
output accountName string = account.name
