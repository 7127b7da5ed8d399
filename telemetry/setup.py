"""One call that configures traces, metrics and logs; the returned handle flushes and shuts everything down.

Providers are created explicitly and handed to each instrumentation; the OpenTelemetry API's global providers stay
untouched unless `install_globals()` is called (the running bot does; tests create several handles in one process).
`configure()` does change process-wide state all the same:
- environment variables the Azure Monitor SDK reads (QUIET_AZURE_ENVIRONMENT), set only where the operator has not
  set them, and left set after shutdown;
- `OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED`, only while the batch processors are built (processor_metrics), then
  restored;
- the `logging` module (telemetry/logs.py): a console handler on the root logger, whose level is lowered to
  BOT_LOG_LEVEL, the export handler on the `bot` and `telemetry` loggers, and the levels of the SDKs' own loggers;
  `Telemetry.shutdown()` removes the handlers again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import set_meter_provider
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.types import AnyValue
from prometheus_client import CollectorRegistry

from telemetry import catalog
from telemetry.config import TelemetryConfig
from telemetry.correlation import SAMPLED_WITH_TURN, CorrelationLogProcessor, CorrelationSpanProcessor
from telemetry.drop_counting import count_drops_exactly
from telemetry.health import CountingLogExporter, CountingMetricExporter, CountingSpanExporter, ExportCounters
from telemetry.instruments import Instruments
from telemetry.logs import ConsoleHandler, configure_logging
from telemetry.offline_retry import OfflineRetry
from telemetry.privacy import Hasher, RedactingLogProcessor, RedactingSpanExporter
from telemetry.prometheus import PrometheusReader
from telemetry.sampling import build_sampler

log = logging.getLogger("telemetry")

# The Azure Monitor SDK phones home unless told not to: statsbeat, SDK stats, the control plane and the Azure VM
# metadata detector. Off unless the operator set these variables explicitly. Read by the SDKs themselves.
QUIET_AZURE_ENVIRONMENT = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
}
EVENT_ATTRIBUTE = "microsoft.custom_event.name"  # the Azure Monitor exporter turns such log records into customEvents


def build_resource(config: TelemetryConfig) -> Resource:
    attributes: dict[str, str] = dict(config.resource_attributes)
    attributes.update(
        {
            "service.name": config.service_name,
            "service.version": config.service_version,
            "service.instance.id": config.service_instance_id,
            "deployment.environment": config.environment,
            "deployment.environment.name": config.environment,
        }
    )
    return Resource.create(attributes)


def histogram_views() -> list[View]:
    return [
        View(instrument_name=metric.name, aggregation=ExplicitBucketHistogramAggregation(list(metric.buckets)))
        for metric in catalog.METRICS
        if metric.instrument is catalog.Instrument.HISTOGRAM
    ]


@contextlib.contextmanager
def processor_metrics() -> Iterator[None]:
    """Batch processors built inside count what they process, drop (queue full) and hold: the SDK's
    otel.sdk.processor.* metrics. The SDK reads one switch for all its self-metrics when an object is built; scoping
    it to the processors keeps the per-span tracer metrics (otel.sdk.span.*) and their cost off."""
    variable = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
    previous = os.environ.get(variable)
    os.environ[variable] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[variable]
        else:
            os.environ[variable] = previous


def _folder_name(config: TelemetryConfig) -> str:
    """The service name as one folder name: path separators, "..", and characters folders should not have replaced
    (a service name "../x" stored telemetry outside the temporary folder)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", config.service_name).strip(".")
    return name or "service"


def storage_directories(config: TelemetryConfig) -> dict[str, str]:
    """One folder per signal: exporters sharing a folder trip over each other's files (lost or doubled batches).

    Without BOT_TELEMETRY_STORAGE_DIRECTORY: a folder per user and service under the system's temporary folder."""
    base = config.storage_directory or os.path.join(
        tempfile.gettempdir(), f"otel-chatbot-{os.getuid() if hasattr(os, 'getuid') else 0}", _folder_name(config)
    )
    return {signal: os.path.join(base, signal) for signal in ("traces", "logs", "metrics")}


@dataclass
class Telemetry:
    config: TelemetryConfig
    resource: Resource
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    prometheus_registry: CollectorRegistry
    instruments: Instruments
    hasher: Hasher
    azure_monitor_enabled: bool
    # otel.component.name of the batch processors in front of the Azure Monitor exporters, by signal.
    azure_processors: dict[str, str] = field(default_factory=dict)
    # Resends what the Azure Monitor exporters stored during an outage, on its own schedule.
    offline_retry: OfflineRetry | None = None
    _log_handlers: list[tuple[logging.Logger, logging.Handler]] = field(default_factory=list)
    _shut_down: bool = False

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer(catalog.INSTRUMENTATION_SCOPE, self.config.service_version)

    def emit_event(self, name: str, properties: Mapping[str, str] | None = None) -> None:
        """A custom event (Application Insights customEvents), correlated with the active span. Events are emitted
        for traced turns only, so they are kept, and weighted, as the turn's trace is."""
        attributes: dict[str, AnyValue] = dict(properties or {})
        attributes[EVENT_ATTRIBUTE] = name
        attributes[SAMPLED_WITH_TURN] = True
        self.logger_provider.get_logger(catalog.INSTRUMENTATION_SCOPE).emit(
            severity_number=SeverityNumber.INFO, severity_text="INFO", body=name, attributes=attributes
        )

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        ok = self.tracer_provider.force_flush(timeout_millis)
        ok = self.logger_provider.force_flush(timeout_millis) and ok
        return self.meter_provider.force_flush(timeout_millis) and ok

    def install_globals(self) -> None:
        """Make these providers the process-wide defaults for code that uses the OpenTelemetry API directly."""
        trace.set_tracer_provider(self.tracer_provider)
        set_meter_provider(self.meter_provider)
        from opentelemetry._logs import set_logger_provider

        set_logger_provider(self.logger_provider)

    def shutdown(self) -> None:
        """Flush and stop every exporter. Safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        if self.offline_retry is not None:
            self.offline_retry.stop()
        # The export handlers go first (nothing is exported after the providers stop); the console handler last, so
        # what the exporters say while they flush reads as the rest of the run, not through Python's bare fallback.
        console = [(logger, handler) for logger, handler in self._log_handlers if isinstance(handler, ConsoleHandler)]
        for logger, handler in self._log_handlers:
            if (logger, handler) not in console:
                logger.removeHandler(handler)
        try:
            self.force_flush()
            self.tracer_provider.shutdown()
            self.logger_provider.shutdown()
            self.meter_provider.shutdown()
        finally:
            for logger, handler in console:
                logger.removeHandler(handler)


def configure(
    config: TelemetryConfig,
    *,
    span_exporters: Iterable[SpanExporter] = (),
    metric_readers: Iterable[MetricReader] = (),
    log_exporters: Iterable[LogRecordExporter] = (),
    console: bool = True,
) -> Telemetry:
    """Build providers and exporters for the bot. Extra exporters and readers (tests, OTLP) are added beside
    Azure Monitor and Prometheus; all of them see spans and logs only after redaction. What this changes outside the
    returned handle: the module docstring."""
    quiet_azure_sdk()
    resource = build_resource(config)
    registry = CollectorRegistry()
    readers = [*metric_readers, PrometheusReader(registry=registry, exemplars=config.prometheus_exemplars)]
    exports = _Exports(list(span_exporters), list(log_exporters), readers)
    tracer_provider = TracerProvider(resource=resource, sampler=build_sampler(config))
    azure = bool(config.connection_string)
    if azure:
        _add_azure_monitor(exports, config, tracer_provider)
    if config.otlp_endpoint:
        _add_otlp(exports)
    meter_provider = _meter_provider(config, resource, exports.readers)
    logger_provider = LoggerProvider(resource=resource)
    # Processors run in the order they are added: redaction and correlation before any exporting batch processor.
    logger_provider.add_log_record_processor(RedactingLogProcessor())
    logger_provider.add_log_record_processor(CorrelationLogProcessor())
    tracer_provider.add_span_processor(CorrelationSpanProcessor())
    azure_processors = _add_batch_processors(exports, tracer_provider, logger_provider, meter_provider)
    instruments = Instruments(meter_provider.get_meter(catalog.INSTRUMENTATION_SCOPE, config.service_version))
    exports.counters.spans, exports.counters.logs = instruments.exported_spans, instruments.exported_logs
    exports.counters.metric_points = instruments.exported_metric_points
    hasher = Hasher(config.hash_key)
    handle = Telemetry(
        config=config,
        resource=resource,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        prometheus_registry=registry,
        instruments=instruments,
        hasher=hasher,
        azure_monitor_enabled=azure,
        azure_processors=azure_processors,
        offline_retry=exports.offline_retry.start() if exports.offline_retry else None,
    )
    handle._log_handlers = configure_logging(config, logger_provider, console=console)
    if not azure:
        log.info("Azure Monitor export is off: APPLICATIONINSIGHTS_CONNECTION_STRING is not set")
    if hasher.key_is_ephemeral:
        log.info("BOT_TELEMETRY_HASH_KEY is not set: conversation and user hashes change when the process restarts")
    return handle


def quiet_azure_sdk() -> None:
    """Tell the Azure Monitor SDK not to phone home (QUIET_AZURE_ENVIRONMENT) where the operator has not decided."""
    for name, value in QUIET_AZURE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


@dataclass
class _Exports:
    """Where telemetry goes: span and log exporters and metric readers, each exporter wrapped to count its exports,
    which of them are Azure Monitor's (by the wrapper's id, with its signal), and the resender of their stored
    batches."""

    spans: list[SpanExporter]
    logs: list[LogRecordExporter]
    readers: list[MetricReader]
    counters: ExportCounters = field(default_factory=ExportCounters)
    azure_signals: dict[int, str] = field(default_factory=dict)
    offline_retry: OfflineRetry | None = None


def _azure_options(config: TelemetryConfig) -> dict[str, object]:
    """Keywords every Azure Monitor exporter gets."""
    options: dict[str, object] = {
        "connection_string": config.connection_string,
        # Batches that fail (5xx, 429, connection refused) go to disk at once instead of being retried in the export
        # thread with back-off; stored batches are resent every interval (OfflineRetry) and after the next successful
        # export, each file at most once per interval (the SDK's default is 60 s).
        "retry_total": 0,
        "storage_min_retry_interval": int(config.storage_retry_seconds),
    }
    if config.entra_client_id is not None:
        # Ingestion with Microsoft Entra ID tokens of the managed identity (local auth may then be disabled).
        from azure.identity import ManagedIdentityCredential

        options["credential"] = ManagedIdentityCredential(client_id=config.entra_client_id or None)
    return options


def _add_azure_monitor(exports: _Exports, config: TelemetryConfig, tracer_provider: TracerProvider) -> None:
    from telemetry.azure_guard import choose_exporters
    from telemetry.azure_metrics import WithoutMetrics

    exporters = choose_exporters()
    options = _azure_options(config)
    name = catalog.EXPORTER_AZURE_MONITOR
    counters = exports.counters
    storage = storage_directories(config)
    # Given the provider, the trace exporter reads the resource from it rather than from the global provider.
    traces = exporters.trace(tracer_provider=tracer_provider, storage_directory=storage["traces"], **options)
    exports.spans.append(CountingSpanExporter(traces, name, counters))
    logs = exporters.log(storage_directory=storage["logs"], **options)
    exports.logs.append(CountingLogExporter(logs, name, counters))
    exports.azure_signals.update({id(exports.spans[-1]): "traces", id(exports.logs[-1]): "logs"})
    metrics = exporters.metric(storage_directory=storage["metrics"], **options)
    stored = [traces, logs, metrics]
    if not exporters.fast:  # ingestion extracts the standard metrics from the (unmarked) request items instead
        metrics = WithoutMetrics(metrics, frozenset({catalog.HTTP_SERVER_DURATION.name}))
    exports.readers.append(PeriodicExportingMetricReader(CountingMetricExporter(metrics, name, counters)))
    if exporters.fast:  # it relies on the exporters' private storage and transmission, checked with the rest
        exports.offline_retry = OfflineRetry(stored, config.storage_retry_seconds)


def _add_otlp(exports: _Exports) -> None:
    """OTLP over HTTP; the exporters read their endpoint and headers from the OTEL_EXPORTER_OTLP_* variables."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name, counters = catalog.EXPORTER_OTLP, exports.counters
    exports.spans.append(CountingSpanExporter(OTLPSpanExporter(), name, counters))
    exports.logs.append(CountingLogExporter(OTLPLogExporter(), name, counters))
    exports.readers.append(PeriodicExportingMetricReader(CountingMetricExporter(OTLPMetricExporter(), name, counters)))


def _meter_provider(config: TelemetryConfig, resource: Resource, readers: list[MetricReader]) -> MeterProvider:
    # Exemplars cost every measurement (and the recorders' shortcut, instruments.Recorder): only Prometheus shows
    # them, so they are sampled only when it is asked to (BOT_PROMETHEUS_EXEMPLARS).
    return MeterProvider(
        resource=resource,
        metric_readers=readers,
        views=histogram_views(),
        exemplar_filter=TraceBasedExemplarFilter() if config.prometheus_exemplars else AlwaysOffExemplarFilter(),
    )


def _add_batch_processors(
    exports: _Exports, tracer_provider: TracerProvider, logger_provider: LoggerProvider, meter_provider: MeterProvider
) -> dict[str, str]:
    """A batch processor per exporter, counting what it drops; returns the otel.component.name of those in front of
    Azure Monitor, by signal."""
    azure_processors: dict[str, str] = {}
    with processor_metrics():
        for exporter in exports.spans:
            # Spans are redacted in the batch processor's thread (each value is bounded, but a turn has several).
            processor: SpanProcessor = BatchSpanProcessor(
                RedactingSpanExporter(exporter), meter_provider=meter_provider
            )
            component = count_drops_exactly(processor)
            if component and id(exporter) in exports.azure_signals:
                azure_processors[exports.azure_signals[id(exporter)]] = component
            tracer_provider.add_span_processor(processor)
        for log_exporter in exports.logs:
            log_processor: LogRecordProcessor = BatchLogRecordProcessor(log_exporter, meter_provider=meter_provider)
            component = count_drops_exactly(log_processor)
            if component and id(log_exporter) in exports.azure_signals:
                azure_processors[exports.azure_signals[id(log_exporter)]] = component
            logger_provider.add_log_record_processor(log_processor)
    return azure_processors
