// The Azure Workbook: the Grafana dashboard's panels (requests/s, error ratio, latency, turns, answers vs fallbacks,
// conversations and users per day, exceptions by type) over Application Insights. Its content is
// workbook/otel-chatbot.workbook.json, whose queries the test suite checks.

param location string
param tags object
param appInsightsId string
param displayName string

var workbookTemplate = loadTextContent('../workbook/otel-chatbot.workbook.json')
var content = replace(workbookTemplate, '__APPLICATION_INSIGHTS_ID__', appInsightsId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsightsId, 'otel-chatbot-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: toLower(appInsightsId)
    serializedData: content
  }
}

output workbookId string = workbook.id
