// The bot's identity: a user-assigned managed identity. The web app runs as it and the Azure Bot registration trusts
// it (MicrosoftAppType=UserAssignedMSI), so no app password exists anywhere.

param location string
param tags object
param identityName string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
