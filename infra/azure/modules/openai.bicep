// Optional (deployOpenAi): an Azure OpenAI account with one chat deployment for the bot's answer engine
// (docs/genai.md). No keys: local (key) authentication is disabled and the bot's user-assigned identity gets
// Cognitive Services OpenAI User on this account only, which lets it call deployments and nothing else.

param location string
param tags object
param accountName string
param deploymentName string
param modelName string
param modelVersion string
@description('Thousands of tokens per minute the deployment may use (its rate limit; 429s beyond).')
param capacity int
param botPrincipalId string

// Built-in role: Cognitive Services OpenAI User (call the inference APIs; no keys, no management).
var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_134: the bot on App Service reaches the account over its public endpoint; a private endpoint needs a virtual network the template does not create
    // A custom subdomain is what Entra ID authentication needs (https://<name>.openai.azure.com).
    customSubDomainName: accountName
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
  }
}

resource botOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, botPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
    description: 'otel-chatbot: call the chat deployment with Entra ID'
  }
}

output endpoint string = account.properties.endpoint
output deploymentName string = deployment.name
