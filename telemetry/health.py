"""Telemetry about the telemetry: every export to Azure Monitor or OTLP is counted, failures with `error.type`.

The exporters are wrapped, not changed: the wrappers pass every call through and count what went in and whether it
came out. The counters live in the same MeterProvider, so Prometheus shows the export health of Azure Monitor even
while Azure cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from opentelemetry.metrics import Counter
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry import catalog

_Result = TypeVar("_Result")


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


def _counted(
    export: Callable[[], _Result], success: _Result, counter: Counter | None, amount: int, component: str
) -> _Result:
    """Runs one export and counts its items: failed with `export_failed` when the exporter said so, `exception`
    when it raised."""
    failure: str | None = "exception"
    try:
        result = export()
        failure = None if result is success else "export_failed"
        return result
    finally:
        ExportCounters.add(counter, amount, component, failure)


class _Exporter(Protocol):
    def shutdown(self) -> None: ...

    def force_flush(self, timeout_millis: int = 30000) -> bool: ...


_Inner = TypeVar("_Inner", bound=_Exporter)


class _Wrapper(Generic[_Inner]):
    """A span or log exporter's wrapper: shutdown and force_flush handed to the wrapped one."""

    def __init__(self, inner: _Inner, component: str, counters: ExportCounters) -> None:
        self._inner, self._component, self._counters = inner, component, counters

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingSpanExporter(_Wrapper[SpanExporter], SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        success, counter = SpanExportResult.SUCCESS, self._counters.spans
        return _counted(lambda: self._inner.export(spans), success, counter, len(spans), self._component)


class CountingLogExporter(_Wrapper[LogRecordExporter], LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        success, counter = LogRecordExportResult.SUCCESS, self._counters.logs
        return _counted(lambda: self._inner.export(batch), success, counter, len(batch), self._component)


class CountingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, component: str, counters: ExportCounters) -> None:
        # The reader asks the exporter which temporality and aggregation it wants: answer as the inner one would.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner, self._component, self._counters = inner, component, counters

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        return _counted(
            lambda: self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            MetricExportResult.SUCCESS,
            self._counters.metric_points,
            _points(metrics_data),
            self._component,
        )

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
