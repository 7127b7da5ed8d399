"""Application Insights standard metrics from the bot's own `http.server.request.duration`.

Microsoft documents two sources for the standard metrics ("Server response time", "Server requests", "Failed
requests"): pre-aggregated by the SDK before sampling, or extracted by ingestion from the request items it receives;
an item marked `_MS.ProcessedByMetricExtractors` was already counted by the SDK and is not extracted again
(docs/telemetry.md cites both). The bot pre-aggregates: its histogram sees every request whatever the trace
sampler keeps, so "Server requests" stays exact under sampling.

The SDK's exporter does the mapping to `requests/duration` but sends the histogram's sum as it is, in seconds, where
Application Insights reads milliseconds, and decides success by the status code alone. This subclass converts the
values to milliseconds and decides success as the request item does: a request whose turn failed (`error.type` on the
measurement; the bot answers 2xx after apologising) is failed, and so is one refused with 4xx; an invoke the bot does
not implement (501, no `error.type`) is not. Every other metric is sent as the SDK sends it.
"""

from __future__ import annotations

from typing import Any

from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)

from telemetry import catalog

_MILLISECONDS_PER_SECOND = 1000.0


class StandardMetricsExporter(AzureMonitorMetricExporter):
    """`AzureMonitorMetricExporter` whose `requests/duration` is in milliseconds and fails with the turn."""

    def _point_to_envelope(self, point: Any, name: str, resource: Any = None, scope: Any = None) -> Any:
        envelope = super()._point_to_envelope(point, name, resource, scope)
        if envelope is None or name != catalog.HTTP_SERVER_DURATION.name:
            return envelope
        data: Any = envelope.data.base_data  # type: ignore[union-attr]
        for metric in data.metrics:
            metric.value = metric.value * _MILLISECONDS_PER_SECOND
            if metric.min is not None:
                metric.min = metric.min * _MILLISECONDS_PER_SECOND
            if metric.max is not None:
                metric.max = metric.max * _MILLISECONDS_PER_SECOND
        # As on the request item: failed when the request or its turn failed (error.type), or was refused with 4xx.
        attributes = point.attributes or {}
        status = int(attributes.get(catalog.HTTP_STATUS) or 0)
        failed = bool(attributes.get(catalog.ERROR_TYPE)) or 400 <= status < 500 or not status
        data.properties["Request.Success"] = str(not failed)
        return envelope


class WithoutMetrics(MetricExporter):
    """Another exporter, minus some metrics: on the SDK's own path the bot leaves the standard metrics to ingestion
    (its request items are then unmarked) rather than send them in seconds."""

    def __init__(self, inner: MetricExporter, names: frozenset[str]) -> None:
        super().__init__(
            preferred_temporality=getattr(inner, "_preferred_temporality", None),
            preferred_aggregation=getattr(inner, "_preferred_aggregation", None),
        )
        self._inner = inner
        self._names = names

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        kept = MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource.resource,
                    schema_url=resource.schema_url,
                    scope_metrics=[
                        ScopeMetrics(
                            scope=scope.scope,
                            schema_url=scope.schema_url,
                            metrics=[metric for metric in scope.metrics if metric.name not in self._names],
                        )
                        for scope in resource.scope_metrics
                    ],
                )
                for resource in metrics_data.resource_metrics
            ]
        )
        return self._inner.export(kept, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
