// Where the bot keeps conversation and user state (BOT_STATE_STORE=blob, docs/scaling.md): a storage account that
// only Entra ID can use (no account keys, no SAS signed with them, no anonymous reads), one private container, and the
// bot's managed identity as Storage Blob Data Contributor. Every instance of the plan reads and writes the same
// container, so a conversation's turns may land on any instance and a restart or a deployment keeps every dialog.

param location string
param tags object
param accountName string
param containerName string
param skuName string
param botPrincipalId string
param workspaceId string

@minValue(1)
@description('Days after its last write that a state blob (a conversation or a user nobody has heard from) is deleted.')
param retentionDays int

// Built-in role definition id (the same in every tenant): read, write and delete blobs and containers, no keys.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: checkov reads the parameter's name, not its value: main.bicep passes 'st' plus the 13-character uniqueString token, lowercase letters and digits only (tests/test_azure_infra.py checks it)
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // checkov:skip=CKV_AZURE_206: dialog state is short-lived working data; geo-replication copies it asynchronously to a region the bot does not run in, so Standard_LRS is the default and stateStorageSkuName offers ZRS, GRS and GZRS
    name: skuName
  }
  properties: {
    // checkov:skip=CKV_AZURE_59: App Service without virtual network integration reaches the account over its public endpoint; only Entra ID tokens are accepted there (no shared key, no anonymous access)
    // checkov:skip=CKV_AZURE_35: a firewall's IP rules do not apply to requests from the same Azure region (the web app's), so defaultAction Deny would lock the bot out unless it joins a virtual network
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    isLocalUserEnabled: false
    isSftpEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    // A deleted container (and every dialog in it) can be restored for 7 days. Blob soft delete stays off: with it,
    // every overwrite keeps a soft-deleted snapshot, and the bot overwrites a state blob on every turn.
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

// State of conversations that ended long ago would otherwise stay (and be billed) for ever.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-idle-state'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${containerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

// Scoped to the account, which holds this container only: the bot creates the container again if someone deletes
// it (bot/storage/blob.py), which needs the right on the account, not on the container that is gone.
resource botBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, botPrincipalId, storageBlobDataContributorRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
    description: 'otel-chatbot: conversation and user state'
  }
}

// Transactions, latency and availability of the blob service in the workspace (AzureMetrics), next to the bot's own
// dependency spans for the same calls. No resource logs: the bot writes state on every turn, and a log row per call
// would cost more than the spans that already describe each call.
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

output accountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output containerName string = container.name
