"""One call that configures traces, metrics and logs; the returned handle flushes and shuts everything down.

Providers are created explicitly and handed to each instrumentation, so nothing depends on global state unless
`install_globals()` is called (the running bot does; tests create several handles in one process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.metrics import set_meter_provider
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import AnyValue, Attributes
from prometheus_client import CollectorRegistry

from telemetry import catalog
from telemetry.config import FIXED_PERCENTAGE_SAMPLER, RATE_LIMITED_SAMPLER, TelemetryConfig
from telemetry.correlation import SAMPLED_WITH_TURN, CorrelationLogProcessor, CorrelationSpanProcessor
from telemetry.drop_counting import count_drops_exactly
from telemetry.health import CountingLogExporter, CountingMetricExporter, CountingSpanExporter, ExportCounters
from telemetry.instruments import Instruments
from telemetry.logs import ConsoleHandler, configure_logging
from telemetry.offline_retry import OfflineRetry
from telemetry.privacy import Hasher, RedactingLogProcessor, RedactingSpanExporter
from telemetry.prometheus import PrometheusReader

log = logging.getLogger("telemetry")

# The Azure Monitor SDK phones home unless told not to: statsbeat, SDK stats, the control plane and the Azure VM
# metadata detector. Off unless the operator set these variables explicitly. Read by the SDKs themselves.
QUIET_AZURE_ENVIRONMENT = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    # Current HTTP semantic conventions (url.full, http.request.method, ...) on the reply spans.
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
}
SAMPLE_RATE_ATTRIBUTE = catalog.SAMPLE_RATE
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


class SampleRateRecordingSampler(Sampler):
    """Another sampler's decisions, with the sampling percentage recorded where Application Insights reads it
    (`_MS.sampleRate`), so that its counts of requests and dependencies are scaled back to all turns."""

    def __init__(self, inner: Sampler, percentage: float) -> None:
        self._inner = inner
        self._percentage = percentage

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if not result.decision.is_sampled() or self._percentage >= 100.0:
            return result
        recorded = dict(result.attributes or {})
        recorded[SAMPLE_RATE_ATTRIBUTE] = self._percentage
        return SamplingResult(result.decision, recorded, result.trace_state)

    def get_description(self) -> str:
        return f"SampleRateRecording{{{self._inner.get_description()}}}"


class WholeTurnSampler(Sampler):
    """Spans inside a turn (its replies) share the turn's decision and sample rate; a turn itself (no parent, or a
    caller's traceparent) is decided by `turns`.

    Without it, the rate-limited sampler decides a child again when its parent was kept at 100 % (no sample rate on
    it), so once the rate drops a kept turn could lose its reply spans; and `ParentBased` keeps the children of a
    kept turn without its sample rate, so Application Insights would count their dependencies unscaled."""

    def __init__(self, turns: Sampler) -> None:
        self._turns = turns

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context)
        context = parent.get_span_context()
        if not context.is_valid or context.is_remote:
            return self._turns.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        inherited = dict(attributes or {})
        rate = (getattr(parent, "attributes", None) or {}).get(SAMPLE_RATE_ATTRIBUTE)
        if rate is not None:
            inherited[SAMPLE_RATE_ATTRIBUTE] = rate
        decision = Decision.RECORD_AND_SAMPLE if parent.is_recording() else Decision.DROP
        return SamplingResult(decision, inherited, context.trace_state)

    def get_description(self) -> str:
        return f"WholeTurn{{{self._turns.get_description()}}}"


def build_sampler(config: TelemetryConfig) -> Sampler:
    from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler, RateLimitedSampler

    turns: Sampler
    base = config.sampler.removeprefix("parentbased_")
    if config.sampler == RATE_LIMITED_SAMPLER:
        # As many traces per second as the argument, whatever the load; it records the share it keeps on each span.
        # It ignores a caller's sampled flag, so no caller can lift the cap.
        turns = RateLimitedSampler(config.sampler_ratio)
    elif config.sampler == FIXED_PERCENTAGE_SAMPLER:
        turns = ApplicationInsightsSampler(config.sampler_ratio)
    elif base == "always_on":
        turns = ALWAYS_ON
    elif base == "always_off":
        turns = ALWAYS_OFF
    else:
        turns = SampleRateRecordingSampler(TraceIdRatioBased(config.sampler_ratio), config.sampler_ratio * 100)
    if config.sampler.startswith("parentbased_"):
        turns = ParentBased(turns)  # a caller's traceparent decides
    return WholeTurnSampler(turns)


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
    Azure Monitor and Prometheus; all of them see spans and logs only after redaction."""
    for name, value in QUIET_AZURE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    resource = build_resource(config)
    span_exporters = list(span_exporters)
    log_exporters = list(log_exporters)
    readers: list[MetricReader] = list(metric_readers)

    registry = CollectorRegistry()
    readers.append(PrometheusReader(registry=registry, exemplars=config.prometheus_exemplars))

    tracer_provider = TracerProvider(resource=resource, sampler=build_sampler(config))
    counters = ExportCounters()
    azure = bool(config.connection_string)
    azure_exporters: dict[int, str] = {}  # id of the exporter object -> signal
    retry: OfflineRetry | None = None
    if azure:
        from telemetry.azure_guard import choose_exporters
        from telemetry.azure_metrics import WithoutMetrics

        exporters = choose_exporters()
        options: dict[str, object] = {
            "connection_string": config.connection_string,
            # Batches that fail (5xx, 429, connection refused) go to disk at once instead of being retried in the
            # export thread with back-off; stored batches are resent every interval (OfflineRetry) and after the next
            # successful export, each file at most once per interval (the SDK's default is 60 s).
            "retry_total": 0,
            "storage_min_retry_interval": int(config.storage_retry_seconds),
        }
        if config.entra_client_id is not None:
            # Ingestion with Microsoft Entra ID tokens of the managed identity (local auth may then be disabled).
            from azure.identity import ManagedIdentityCredential

            options["credential"] = ManagedIdentityCredential(client_id=config.entra_client_id or None)
        # Given the provider, the trace exporter reads the resource from it rather than from the global provider.
        name = catalog.EXPORTER_AZURE_MONITOR
        storage = storage_directories(config)
        trace_exporter = exporters.trace(
            tracer_provider=tracer_provider, storage_directory=storage["traces"], **options
        )
        span_exporters.append(CountingSpanExporter(trace_exporter, name, counters))
        azure_logs = exporters.log(storage_directory=storage["logs"], **options)
        log_exporters.append(CountingLogExporter(azure_logs, name, counters))
        azure_exporters.update({id(span_exporters[-1]): "traces", id(log_exporters[-1]): "logs"})
        azure_metrics = exporters.metric(storage_directory=storage["metrics"], **options)
        stored = [trace_exporter, azure_logs, azure_metrics]
        if not exporters.fast:  # ingestion extracts the standard metrics from the (unmarked) request items instead
            azure_metrics = WithoutMetrics(azure_metrics, frozenset({catalog.HTTP_SERVER_DURATION.name}))
        metric_exporter = CountingMetricExporter(azure_metrics, name, counters)
        readers.append(PeriodicExportingMetricReader(metric_exporter))
        if exporters.fast:  # it relies on the exporters' private storage and transmission, checked with the rest
            retry = OfflineRetry(stored, config.storage_retry_seconds)
    if config.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        name = catalog.EXPORTER_OTLP
        span_exporters.append(CountingSpanExporter(OTLPSpanExporter(), name, counters))
        log_exporters.append(CountingLogExporter(OTLPLogExporter(), name, counters))
        readers.append(PeriodicExportingMetricReader(CountingMetricExporter(OTLPMetricExporter(), name, counters)))

    # Exemplars cost every measurement (and the recorders' shortcut, instruments.Recorder): only Prometheus shows
    # them, so they are sampled only when it is asked to (BOT_PROMETHEUS_EXEMPLARS).
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=readers,
        views=histogram_views(),
        exemplar_filter=TraceBasedExemplarFilter() if config.prometheus_exemplars else AlwaysOffExemplarFilter(),
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(RedactingLogProcessor())
    logger_provider.add_log_record_processor(CorrelationLogProcessor())
    tracer_provider.add_span_processor(CorrelationSpanProcessor())
    azure_processors: dict[str, str] = {}
    with processor_metrics():
        for exporter in span_exporters:
            # Spans are redacted in the batch processor's thread (each value is bounded, but a turn has several).
            processor: SpanProcessor = BatchSpanProcessor(
                RedactingSpanExporter(exporter), meter_provider=meter_provider
            )
            component = count_drops_exactly(processor)
            if component and id(exporter) in azure_exporters:
                azure_processors[azure_exporters[id(exporter)]] = component
            tracer_provider.add_span_processor(processor)
        for log_exporter in log_exporters:
            log_processor: LogRecordProcessor = BatchLogRecordProcessor(log_exporter, meter_provider=meter_provider)
            component = count_drops_exactly(log_processor)
            if component and id(log_exporter) in azure_exporters:
                azure_processors[azure_exporters[id(log_exporter)]] = component
            logger_provider.add_log_record_processor(log_processor)

    instruments = Instruments(meter_provider.get_meter(catalog.INSTRUMENTATION_SCOPE, config.service_version))
    counters.spans, counters.logs = instruments.exported_spans, instruments.exported_logs
    counters.metric_points = instruments.exported_metric_points
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
        offline_retry=retry.start() if retry else None,
    )
    handle._log_handlers = configure_logging(config, logger_provider, console=console)
    if not azure:
        log.info("Azure Monitor export is off: APPLICATIONINSIGHTS_CONNECTION_STRING is not set")
    if hasher.key_is_ephemeral:
        log.info("BOT_TELEMETRY_HASH_KEY is not set: conversation and user hashes change when the process restarts")
    return handle
