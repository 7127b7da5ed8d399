"""Telemetry about the telemetry: every export to Azure Monitor or OTLP is counted, failures with `error.type`.

The exporters are wrapped, not changed: the wrappers pass every call through and count what went in and whether it
came out. The counters live in the same MeterProvider, so Prometheus shows the export health of Azure Monitor even
while Azure cannot be reached.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.metrics import Counter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry import catalog


class ExportCounters:
    """Filled in once the MeterProvider exists (the exporters are created before it)."""

    def __init__(self) -> None:
        self.spans: Counter | None = None
        self.logs: Counter | None = None
        self.metric_points: Counter | None = None

    @staticmethod
    def add(counter: Counter | None, amount: int, component: str, failure: str | None) -> None:
        if counter is None or amount == 0:
            return
        attributes = {catalog.COMPONENT_NAME: component}
        if failure:
            attributes[catalog.ERROR_TYPE] = failure
        counter.add(amount, attributes)


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, component: str, counters: ExportCounters) -> None:
        self._inner, self._component, self._counters = inner, component, counters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        failure: str | None = "exception"
        try:
            result = self._inner.export(spans)
            failure = None if result is SpanExportResult.SUCCESS else "export_failed"
            return result
        finally:
            self._counters.add(self._counters.spans, len(spans), self._component, failure)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, component: str, counters: ExportCounters) -> None:
        self._inner, self._component, self._counters = inner, component, counters

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        failure: str | None = "exception"
        try:
            result = self._inner.export(batch)
            failure = None if result is LogRecordExportResult.SUCCESS else "export_failed"
            return result
        finally:
            self._counters.add(self._counters.logs, len(batch), self._component, failure)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, component: str, counters: ExportCounters) -> None:
        # The reader asks the exporter which temporality and aggregation it wants: answer as the inner one would.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner, self._component, self._counters = inner, component, counters

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        failure: str | None = "exception"
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            failure = None if result is MetricExportResult.SUCCESS else "export_failed"
            return result
        finally:
            self._counters.add(self._counters.metric_points, _points(metrics_data), self._component, failure)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
