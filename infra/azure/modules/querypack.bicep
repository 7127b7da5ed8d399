// The KQL query pack (infra/azure/queries/*.kql) as a Log Analytics query pack: the queries then appear under
// "Queries" in the Logs blade of Application Insights. Each file is loaded as it is, so the deployed text is the
// text the test suite checks; the test also makes sure every .kql file of the folder is listed here.

param location string
param tags object
param queryPackName string

var queries = [
  {
    id: 'failed-requests-by-result-code'
    displayName: 'Failed requests by result code'
    body: loadTextContent('../queries/failed-requests-by-result-code.kql')
  }
  {
    id: 'latency-trend'
    displayName: 'Response time trend and percentiles'
    body: loadTextContent('../queries/latency-trend.kql')
  }
  {
    id: 'failures-by-operation'
    displayName: 'Failures by operation'
    body: loadTextContent('../queries/failures-by-operation.kql')
  }
  {
    id: 'exceptions-by-type'
    displayName: 'Exceptions by type'
    body: loadTextContent('../queries/exceptions-by-type.kql')
  }
  {
    id: 'bot-analytics'
    displayName: 'Bot analytics: users, conversations and activity per channel per day'
    body: loadTextContent('../queries/bot-analytics.kql')
  }
  {
    id: 'bot-analytics-users-sessions'
    displayName: 'Bot analytics: users, sessions and messages per day (user_Id, session_Id, itemCount)'
    body: loadTextContent('../queries/bot-analytics-users-sessions.kql')
  }
  {
    id: 'dialog-completion'
    displayName: 'Dialogs started, completed and cancelled'
    body: loadTextContent('../queries/dialog-completion.kql')
  }
  {
    id: 'slowest-turns'
    displayName: 'Slowest turns with their operation ids'
    body: loadTextContent('../queries/slowest-turns.kql')
  }
  {
    id: 'failing-channel-replies'
    displayName: 'Failing replies to channels'
    body: loadTextContent('../queries/failing-channel-replies.kql')
  }
  {
    id: 'pii-audit'
    displayName: 'PII audit: text that should never reach Application Insights'
    body: loadTextContent('../queries/pii-audit.kql')
  }
  {
    id: 'availability-by-location'
    displayName: 'Uptime of /healthz from each Azure location (availability test)'
    body: loadTextContent('../queries/availability-by-location.kql')
  }
  {
    id: 'genai-model-calls'
    displayName: 'Language model calls: failures, 429s, p95 and tokens per hour by model'
    body: loadTextContent('../queries/genai-model-calls.kql')
  }
  {
    id: 'genai-ratings'
    displayName: 'Ratings of answers by source, model and intent'
    body: loadTextContent('../queries/genai-ratings.kql')
  }
  {
    id: 'genai-tokens'
    displayName: 'Tokens used per hour by model (input and output)'
    body: loadTextContent('../queries/genai-tokens.kql')
  }
]

resource queryPack 'Microsoft.OperationalInsights/queryPacks@2019-09-01' = {
  name: queryPackName
  location: location
  tags: tags
  properties: {}
}

resource packQueries 'Microsoft.OperationalInsights/queryPacks/queries@2019-09-01' = [
  for query in queries: {
    parent: queryPack
    name: guid(queryPack.id, query.id)
    properties: {
      displayName: query.displayName
      description: 'otel-chatbot: ${query.displayName} (infra/azure/queries/${query.id}.kql)'
      body: query.body
      related: {
        categories: [
          'applications'
        ]
        resourceTypes: [
          'microsoft.insights/components'
        ]
      }
      tags: {
        labels: [
          'otel-chatbot'
        ]
      }
    }
  }
]

output queryPackId string = queryPack.id
