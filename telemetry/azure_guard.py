"""Which Azure Monitor exporters the bot can use with the installed SDK.

The fast envelope builders (telemetry/azure_export/) and the standard-metric conversion (azure_metrics.py) use
private helpers of azure-monitor-opentelemetry-exporter, a beta whose internals change between releases;
pyproject.toml pins the release they were written against. Should another release be installed anyway, the bot
checks at start-up that the helpers are there and still build the envelopes the SDK builds, and otherwise uses the
SDK's exporters as they are, with one WARNING: slower, without the enrichments that docs/telemetry.md lists, but
correct.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("telemetry")

# Every private name the fast paths read, as (module, attribute).
_TRACE = "azure.monitor.opentelemetry.exporter.export.trace._exporter"
_TRACE_UTILS = "azure.monitor.opentelemetry.exporter.export.trace._utils"
_LOGS = "azure.monitor.opentelemetry.exporter.export.logs._exporter"
_METRICS = "azure.monitor.opentelemetry.exporter.export.metrics._exporter"
_UTILS = "azure.monitor.opentelemetry.exporter._utils"
REQUIRED_HELPERS: tuple[tuple[str, str], ...] = (
    (_UTILS, "azure_monitor_context"),
    (_UTILS, "_populate_part_a_fields"),
    (_UTILS, "_filter_custom_properties"),
    (_UTILS, "_filter_custom_measurements"),
    (_UTILS, "_is_status_code_success"),
    (_UTILS, "_is_any_synthetic_source"),
    (_UTILS, "ns_to_duration"),
    (_TRACE_UTILS, "_get_location_ip"),
    (_TRACE_UTILS, "_get_user_agent"),
    (_TRACE_UTILS, "_get_url_for_http_request"),
    (_TRACE_UTILS, "_get_url_for_http_dependency"),
    (_TRACE_UTILS, "_get_target_and_path_for_http_dependency"),
    (_TRACE_UTILS, "_get_target_for_dependency_from_peer"),
    (_TRACE, "_is_standard_attribute"),
    (_TRACE, "_check_instrumentation_span"),
    (_TRACE, "AzureMonitorTraceExporter._span_to_envelope"),
    (_TRACE, "AzureMonitorTraceExporter._span_events_to_envelopes"),
    (_TRACE, "AzureMonitorTraceExporter._get_otel_resource_envelope"),
    (_LOGS, "_IGNORED_ATTRS"),
    (_LOGS, "_get_severity_level"),
    (_LOGS, "_map_body_to_message"),
    (_LOGS, "_set_statsbeat_custom_events_feature"),
    (_LOGS, "AzureMonitorLogExporter._log_to_envelope"),
    (_METRICS, "AzureMonitorMetricExporter._point_to_envelope"),
    # telemetry/offline_retry.py: resending stored batches on the bot's own schedule
    ("azure.monitor.opentelemetry.exporter.export._base", "BaseExporter._transmit"),
    ("azure.monitor.opentelemetry.exporter.export._base", "ExportResult"),
    ("azure.monitor.opentelemetry.exporter._storage", "LocalFileStorage.gets"),
    ("azure.monitor.opentelemetry.exporter._storage", "LocalFileBlob.lease"),
    ("azure.monitor.opentelemetry.exporter._generated.exporter.models", "TelemetryItem"),
)


def missing_helpers() -> list[str]:
    """The private names the fast paths need that the installed SDK lacks."""
    import importlib

    missing = []
    for module_name, dotted in REQUIRED_HELPERS:
        try:
            found: Any = importlib.import_module(module_name)
            for part in dotted.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            missing.append(f"{module_name}.{dotted}")
    return missing


@dataclass(frozen=True)
class AzureExporters:
    trace: Callable[..., Any]
    log: Callable[..., Any]
    metric: Callable[..., Any]
    fast: bool  # False: the SDK's own exporters; ingestion extracts the standard metrics from the request items,
    # and stored batches are resent only after a later successful export (the SDK's own rule)


def choose_exporters() -> AzureExporters:
    """The fast exporters when the SDK has what they rely on and they agree with its conversion, else the SDK's."""
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )

    stock = AzureExporters(AzureMonitorTraceExporter, AzureMonitorLogExporter, AzureMonitorMetricExporter, fast=False)
    missing = missing_helpers()
    if missing:
        log.warning(
            "azure-monitor-opentelemetry-exporter lacks %s, which the bot's fast Azure Monitor export relies on: "
            "using the SDK's exporters (slower; see docs/telemetry.md). Install the version pinned in pyproject.toml.",
            ", ".join(missing),
        )
        return stock
    try:
        from telemetry.azure_export import FastAzureMonitorLogExporter, FastAzureMonitorTraceExporter
        from telemetry.azure_metrics import StandardMetricsExporter

        difference = _probe()
    except Exception as error:  # an SDK whose helpers changed shape fails here rather than in the export thread
        difference = f"{type(error).__name__}: {error}"
    if difference:
        log.warning(
            "the installed azure-monitor-opentelemetry-exporter builds envelopes differently (%s): using the SDK's "
            "exporters (slower; see docs/telemetry.md). Install the version pinned in pyproject.toml.",
            difference,
        )
        return stock
    return AzureExporters(FastAzureMonitorTraceExporter, FastAzureMonitorLogExporter, StandardMetricsExporter, True)


def _probe() -> str | None:
    """Converts one request span both ways (no network, no storage) and names the first field that differs."""
    from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from telemetry import catalog
    from telemetry.azure_export import FastAzureMonitorTraceExporter, comparable_with_sdk

    finished = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(finished))
    attributes: dict[str, str | int] = {
        catalog.HTTP_METHOD: "POST",
        catalog.URL_SCHEME: "http",
        "url.path": "/api/messages",
        "server.address": "127.0.0.1",
        "server.port": 3978,
        catalog.HTTP_ROUTE: "/api/messages",
        catalog.HTTP_STATUS: 201,
        catalog.CHANNEL: "emulator",
    }
    with provider.get_tracer("probe").start_as_current_span("POST /api/messages", kind=SpanKind.SERVER) as span:
        span.set_attributes(attributes)
    provider.shutdown()
    (request,) = finished.get_finished_spans()
    converted = []
    for exporter_class in (AzureMonitorTraceExporter, FastAzureMonitorTraceExporter):
        exporter: Any = exporter_class(connection_string=_PROBE_CONNECTION, disable_offline_storage=True)
        try:
            envelope = exporter._span_to_envelope(request)
        finally:
            exporter.shutdown()
        as_dict = getattr(envelope, "as_dict", None)
        converted.append(comparable_with_sdk(as_dict(exclude_readonly=True) if as_dict else envelope))
    sdk, fast = converted
    for key in sorted(set(sdk) | set(fast)):
        if sdk.get(key) != fast.get(key):
            return f"{key}: {fast.get(key)!r} instead of {sdk.get(key)!r}"
    return None


# Nothing is sent: the probe only converts. The address is loopback all the same.
_PROBE_CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
