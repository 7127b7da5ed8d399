"""Prometheus exposition of the bot's metrics, from the same MeterProvider that feeds Azure Monitor."""

from __future__ import annotations

import asyncio
import base64
import hmac

from aiohttp import web
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class PrometheusReader(PrometheusMetricReader):
    """Keeps only the latest collection.

    The stock reader queues every collection and turns all queued ones into samples at the next scrape. Anything
    else that collects — `MeterProvider.force_flush()` at shutdown or in tests — leaves an extra collection queued,
    and the next scrape then repeats every series, which Prometheus rejects. Metrics are cumulative here, so the
    latest collection holds everything.
    """

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> None:
        if metrics_data is None:
            return
        self._collector._metrics_datas.clear()
        self._collector.add_metrics_data(metrics_data)


def metrics_app(registry: CollectorRegistry, bearer_token: str = "", basic_auth: str = "") -> web.Application:
    """`GET /metrics` (the seed's scrape target, port 8000 by default).

    With `bearer_token` or `basic_auth` ("user:password") set, a scrape must present one of them (Prometheus:
    `authorization: {credentials: ...}` or `basic_auth:` in the scrape job); for endpoints reachable beyond
    localhost."""
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
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
