"""Load tests for otel-chatbot: Locust users that chat like people, SLO verdicts, and a reconciliation proving that
every turn reaches Prometheus and Application Insights exactly once."""
