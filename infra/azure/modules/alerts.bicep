// The seed's alerts, each sending its notification through one action group (optional e-mail, optional webhook):
//   average response time > 2 s, failed requests, CPU > 80 % on the plan, and scheduled KQL queries for error spikes
//   and for surges of requests that fail authentication; and a standard availability test of /healthz from several
//   Azure locations with its alert.
// Every rule resolves itself when the condition clears (autoMitigate).

param location string
param tags object
param resourceToken string
param alertEmailAddress string

@secure()
param alertWebhookUrl string

param appInsightsId string
param workspaceId string
param planId string
param responseTimeThresholdMs int
param cpuThresholdPercent int
param failedRequestsThreshold int
param errorSpikePercent int
param authFailuresThreshold int
param healthUrl string
param availabilityFailedLocations int

@description('Deploy the language-model alerts: the bot has a model configured (docs/genai.md).')
param modelAlerts bool
param modelErrorPercent int
param modelThrottledPercent int
param tokenBudgetPerHour int
@description('Where the runbooks are published (the Prometheus rules default to the same base): each model alert links <base>/<alert name>.md.')
param runbookBaseUrl string

// No address given (azd up --no-prompt without BOT_ALERT_EMAIL): no e-mail receiver; the alerts still fire and show
// under Monitor -> Alerts, and reach the webhook if one is set.
var emailReceivers = empty(alertEmailAddress) ? [] : [
  {
    name: 'operators-email'
    emailAddress: alertEmailAddress
    useCommonAlertSchema: true
  }
]

var webhookReceivers = empty(alertWebhookUrl) ? [] : [
  {
    name: 'webhook'
    serviceUri: alertWebhookUrl
    useCommonAlertSchema: true
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'otelchatbot'
    enabled: true
    emailReceivers: emailReceivers
    webhookReceivers: webhookReceivers
  }
}

resource responseTimeAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-response-time-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Average server response time of the bot above ${responseTimeThresholdMs} ms over 5 minutes (Application Insights requests/duration).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'AverageResponseTime'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/duration'
          operator: 'GreaterThan'
          threshold: responseTimeThresholdMs
          timeAggregation: 'Average'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

resource failedRequestsAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-failed-requests-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than ${failedRequestsThreshold} failed requests in 5 minutes (Application Insights requests/failed).'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'FailedRequests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: failedRequestsThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

resource cpuAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-cpu-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'Average CPU of the App Service plan above ${cpuThresholdPercent} % over 10 minutes.'
    severity: 2
    enabled: true
    scopes: [
      planId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT10M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'HighCpu'
          metricNamespace: 'Microsoft.Web/serverfarms'
          metricName: 'CpuPercentage'
          operator: 'GreaterThan'
          threshold: cpuThresholdPercent
          timeAggregation: 'Average'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// The query is kept in alerts/error-spike.kql: the same text is deployed here and checked by the test suite.
resource errorSpikeAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-error-spike-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'otel-chatbot error spike'
    description: 'More than ${errorSpikePercent} % of the requests of a channel failed in the last 15 minutes (failed requests and turns that ended in an unhandled exception).'
    severity: 1
    enabled: true
    scopes: [
      workspaceId
    ]
    targetResourceTypes: [
      'Microsoft.OperationalInsights/workspaces'
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/error-spike.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'FailedPercent'
          operator: 'GreaterThan'
          threshold: errorSpikePercent
          dimensions: [
            {
              name: 'Channel'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// The same condition as the Prometheus alert ChatbotAuthFailureSurge: more than 0.2 failures/s (60 in 5 minutes).
resource authFailuresAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-auth-failures-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'otel-chatbot authentication failures'
    description: 'More than ${authFailuresThreshold} requests to one bot instance failed authentication (401) in the last 5 minutes: probing, forged or replayed tokens, or an app id that no longer matches the bot registration.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    targetResourceTypes: [
      'Microsoft.OperationalInsights/workspaces'
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/auth-failures.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'AuthFailures'
          operator: 'GreaterThan'
          threshold: authFailuresThreshold
          dimensions: [
            {
              name: 'AppRoleInstance'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Uptime as a user far away sees it: Application Insights requests /healthz every 5 minutes from five Azure
// locations (a standard test; results in availabilityResults). A failure is retried once at once, so one lost
// packet is no failure. The hidden-link tag shows the test on the Application Insights resource.
var availabilityLocations = [
  'us-va-ash-azr' // East US
  'us-ca-sjc-azr' // West US
  'emea-nl-ams-azr' // West Europe
  'emea-gb-db3-azr' // North Europe
  'apac-sg-sin-azr' // Southeast Asia
]

resource healthTest 'Microsoft.Insights/webtests@2022-06-15' = {
  name: 'webtest-healthz-${resourceToken}'
  location: location
  tags: union(tags, {
    'hidden-link:${appInsightsId}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: 'webtest-healthz-${resourceToken}'
    Name: 'otel-chatbot /healthz'
    Description: 'GET /healthz answers 200 over HTTPS with a certificate valid for at least 7 more days.'
    Enabled: true
    Kind: 'standard'
    Frequency: 300
    Timeout: 30
    RetryEnabled: true
    Locations: [for id in availabilityLocations: {
      Id: id
    }]
    Request: {
      RequestUrl: healthUrl
      HttpVerb: 'GET'
      ParseDependentRequests: false
      FollowRedirects: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

// Fires when the test fails from at least availabilityFailedLocations locations at once (Microsoft's availability
// alert criterion), so one location's network trouble is not the bot being down.
resource availabilityAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-availability-${resourceToken}'
  location: 'global'
  tags: union(tags, {
    'hidden-link:${appInsightsId}': 'Resource'
    'hidden-link:${healthTest.id}': 'Resource'
  })
  properties: {
    description: 'GET /healthz failed from ${availabilityFailedLocations} or more of ${length(availabilityLocations)} Azure locations (Application Insights availability test).'
    severity: 1
    enabled: true
    scopes: [
      healthTest.id
      appInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTest.id
      componentId: appInsightsId
      failedLocationCount: availabilityFailedLocations
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// The language model's alerts: the same conditions as the Prometheus alerts of infra/prometheus/rules/genai.yml,
// read from the GenAI metrics (AppMetrics: one measurement per model call, not sampled). Prometheus keeps a 5-minute
// ratio above the threshold for `for`; a log alert has no `for`, so its window is the ratio's 5 minutes plus the
// `for` (10 and 15 minutes), evaluated every 5 minutes (docs/genai.md says how that differs). Each carries the
// Prometheus alert's name and its runbook in the notification (custom properties of the common alert schema).
resource modelErrorsAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (modelAlerts) {
  name: 'alert-model-errors-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'otel-chatbot model errors'
    description: 'More than ${modelErrorPercent} % of the calls one bot instance made to a model failed in the last 10 minutes (at least 0.01 calls/s); those users got the fallback answer. Runbook: ${runbookBaseUrl}/ChatbotModelErrors.md'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    targetResourceTypes: [
      'Microsoft.OperationalInsights/workspaces'
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/model-errors.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'ErrorPercent'
          operator: 'GreaterThan'
          threshold: modelErrorPercent
          dimensions: [
            {
              name: 'AppRoleInstance'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'Model'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
      customProperties: {
        alertname: 'ChatbotModelErrors'
        runbook_url: '${runbookBaseUrl}/ChatbotModelErrors.md'
      }
    }
  }
}

resource modelThrottledAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (modelAlerts) {
  name: 'alert-model-throttled-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'otel-chatbot model throttled'
    description: 'The model answered 429 (quota or rate limit) to more than ${modelThrottledPercent} % of the calls of one bot instance in the last 15 minutes (at least 0.01 calls/s). Runbook: ${runbookBaseUrl}/ChatbotModelThrottled.md'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    targetResourceTypes: [
      'Microsoft.OperationalInsights/workspaces'
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/model-throttled.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'ThrottledPercent'
          operator: 'GreaterThan'
          threshold: modelThrottledPercent
          dimensions: [
            {
              name: 'AppRoleInstance'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'Model'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
      customProperties: {
        alertname: 'ChatbotModelThrottled'
        runbook_url: '${runbookBaseUrl}/ChatbotModelThrottled.md'
      }
    }
  }
}

resource tokenBudgetAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (modelAlerts) {
  name: 'alert-token-budget-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'otel-chatbot token budget'
    description: 'Every instance of the bot together used more than ${tokenBudgetPerHour} model tokens in the last hour. Runbook: ${runbookBaseUrl}/ChatbotTokenBudget.md'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    targetResourceTypes: [
      'Microsoft.OperationalInsights/workspaces'
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: loadTextContent('../alerts/token-budget.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'Tokens'
          operator: 'GreaterThan'
          threshold: tokenBudgetPerHour
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
      customProperties: {
        alertname: 'ChatbotTokenBudget'
        runbook_url: '${runbookBaseUrl}/ChatbotTokenBudget.md'
      }
    }
  }
}

output healthTestName string = healthTest.name
output actionGroupId string = actionGroup.id
