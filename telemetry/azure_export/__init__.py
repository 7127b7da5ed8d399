"""Azure Monitor exporters that build Application Insights envelopes as plain dicts.

Modules: envelope (the dict envelope and the comparison with the SDK's), fields (tags, custom dimensions, URLs
from attributes), trace (spans and span events), logs (log records).

The SDK's exporters convert every span and log record into the generated `model_base` models of their client: most
of an export's CPU, spent in an export thread that holds the GIL the bot's event loop needs (measured in
docs/performance.md, "A traced turn"). These subclasses replace only that conversion: each envelope is a dict holding
the JSON the SDK would send, which the SDK's client serialises with the C-accelerated `json.dumps`. Everything else
is the SDK's own code, unchanged: constructor keywords, `_transmit` (the HTTP pipeline, Entra credential, redirects,
status handling, resending the rejected part of a 206), offline storage (per-signal directories,
`storage_min_retry_interval`, draining files a stopped process left behind), rate limiting, statsbeat.

Where Application Insights' views need more than the SDK sends, these exporters add it (docs/telemetry.md,
"Where the envelopes differ from the SDK's"): every item of a traced turn carries the turn's `ai.operation.name`,
user and session (telemetry/correlation.py puts them on the spans and records); custom events and the turn's log
lines carry its `sampleRate`; request items are marked as counted by the bot's own pre-aggregated `requests/duration`
(`_MS.ProcessedByMetricExtractors`, see telemetry/azure_metrics.py) so that ingestion does not count them again; and
a request without a matched route is named by its method alone, never by its raw path.

Spans and records with shapes the bot does not produce (messaging, database, RPC, Azure SDK and GenAI spans,
PRODUCER and CONSUMER spans, links, availability records) go through the SDK's conversion, so the envelopes are the
SDK's in every case; `tests/test_azure_export.py` compares both on what ingestion receives.
"""

from telemetry.azure_export.envelope import ENRICHED_KEYS, EXTRACTED_METRICS_MARKER, Envelope, comparable_with_sdk
from telemetry.azure_export.logs import FastAzureMonitorLogExporter
from telemetry.azure_export.trace import FastAzureMonitorTraceExporter

__all__ = [
    "ENRICHED_KEYS",
    "EXTRACTED_METRICS_MARKER",
    "Envelope",
    "FastAzureMonitorLogExporter",
    "FastAzureMonitorTraceExporter",
    "comparable_with_sdk",
]
