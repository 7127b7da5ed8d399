"""Prometheus exposition of the bot's metrics, from the same MeterProvider that feeds Azure Monitor."""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.samples import Exemplar, Sample

from telemetry import catalog


class PrometheusReader(PrometheusMetricReader):
    """Keeps only the latest collection, and with `exemplars` links each histogram bucket to a trace.

    The stock reader queues every collection and turns all queued ones into samples at the next scrape. Anything
    else that collects — `MeterProvider.force_flush()` at shutdown or in tests — leaves an extra collection queued,
    and the next scrape then repeats every series, which Prometheus rejects. Metrics are cumulative here, so the
    latest collection holds everything.

    The stock reader drops the exemplars the SDK keeps (one per bucket, from measurements made inside a sampled
    span). With `exemplars`, bucket samples carry `trace_id` and `span_id` of theirs, which the OpenMetrics format
    (negotiated by the scraper's Accept header, see `metrics_app`) exposes: a slow bucket in Grafana opens its trace.
    """

    def __init__(self, *, registry: CollectorRegistry, exemplars: bool = False) -> None:
        super().__init__(registry=registry)
        self._latest: MetricsData | None = None
        self._registered: Any = self._collector
        if exemplars:
            registry.unregister(self._collector)
            self._registered = _WithExemplars(self._collector, self)
            registry.register(self._registered)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._registry.unregister(self._registered)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> None:
        if metrics_data is None:
            return
        self._latest = metrics_data
        self._collector._metrics_datas.clear()
        self._collector.add_metrics_data(metrics_data)


_HISTOGRAMS = {metric.prometheus_name: metric.name for metric in catalog.METRICS if metric.buckets}


class _WithExemplars:
    """The stock collector's families, with the SDK's exemplars put on the bucket samples they fall in."""

    def __init__(self, inner: Any, reader: PrometheusReader) -> None:
        self._inner, self._reader = inner, reader

    def collect(self) -> Iterator[Metric]:
        families = list(self._inner.collect())  # collects, so the reader's latest data match these samples
        exemplars = _exemplars_by_bucket(self._reader._latest)
        for family in families:
            name = _HISTOGRAMS.get(family.name)
            if name is not None and name in exemplars:
                family.samples = [_with_exemplar(sample, exemplars[name]) for sample in family.samples]
            yield family


def _label(key: str) -> str:
    return "".join(character if character.isalnum() else "_" for character in key)


def _exemplars_by_bucket(data: MetricsData | None) -> dict[str, list[tuple[dict[str, str], float, Exemplar]]]:
    """metric name -> [(the point's labels, the bucket's upper bound, exemplar)]."""
    found: dict[str, list[tuple[dict[str, str], float, Exemplar]]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in _HISTOGRAMS.values():
                    for point in metric.data.data_points:
                        if isinstance(point, HistogramDataPoint) and point.exemplars:
                            found.setdefault(metric.name, []).extend(_point_exemplars(point))
    return found


def _point_exemplars(point: HistogramDataPoint) -> Iterator[tuple[dict[str, str], float, Exemplar]]:
    labels = {_label(key): str(value) for key, value in (point.attributes or {}).items()}
    bounds = [*point.explicit_bounds, float("inf")]
    for exemplar in point.exemplars:
        if exemplar.trace_id is not None and exemplar.span_id is not None:
            ids = {"trace_id": format(exemplar.trace_id, "032x"), "span_id": format(exemplar.span_id, "016x")}
            bound = next(b for b in bounds if exemplar.value <= b)
            yield labels, bound, Exemplar(ids, exemplar.value, exemplar.time_unix_nano / 1e9)


def _with_exemplar(sample: Sample, exemplars: Iterable[tuple[dict[str, str], float, Exemplar]]) -> Sample:
    if not sample.name.endswith("_bucket"):
        return sample
    le = float(sample.labels.get("le", "nan"))
    for labels, bound, exemplar in exemplars:
        if bound == le and all(sample.labels.get(key) == value for key, value in labels.items()):
            return sample._replace(exemplar=exemplar)
    return sample


def metrics_app(
    registry: CollectorRegistry, bearer_token: str = "", basic_auth: str = "", *, openmetrics: bool = False
) -> web.Application:
    """`GET /metrics` (the seed's scrape target, port 8000 by default).

    With `bearer_token` or `basic_auth` ("user:password") set, a scrape must present one of them (Prometheus:
    `authorization: {credentials: ...}` or `basic_auth:` in the scrape job); for endpoints reachable beyond
    localhost. With `openmetrics`, a scraper that accepts the OpenMetrics format (Prometheus does) gets it, with
    the exemplars; otherwise the classic text format, which has none."""
    accepted = set()
    if bearer_token:
        accepted.add(f"Bearer {bearer_token}")
    if basic_auth:
        accepted.add("Basic " + base64.b64encode(basic_auth.encode()).decode())

    async def metrics(request: web.Request) -> web.Response:
        if accepted:
            presented = request.headers.get("Authorization", "")
            if not any(hmac.compare_digest(presented.encode(), allowed.encode()) for allowed in accepted):
                challenge = 'Basic realm="metrics"' if basic_auth else "Bearer"
                return web.Response(status=401, text="credentials required\n", headers={"WWW-Authenticate": challenge})
        # Collecting runs the SDK's callbacks, which read /proc for the process metrics: off the event loop.
        if openmetrics and "application/openmetrics-text" in request.headers.get("Accept", ""):  # exemplars need it
            body = await asyncio.to_thread(generate_openmetrics, registry)
            return web.Response(body=body, headers={"Content-Type": OPENMETRICS_CONTENT_TYPE})
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
