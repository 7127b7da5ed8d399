"""The worker supervisor's `/metrics` (`python -m bot --workers N`, bot/workers.py): every worker's exposition, each
series labelled with its worker, behind the bot's own metrics credentials.

No series is summed or merged: counters stay monotonic per worker (a restarted worker starts its own series from zero,
which `rate()` treats as a reset), `sum by (...)` over `worker` gives the bot's totals. A worker that cannot be
scraped is left out of that scrape and counted in `bot_workers_unreachable`; workers the supervisor killed as hung are
counted in `bot_workers_hung_total`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from telemetry import catalog
from telemetry.prometheus import metrics_app

WORKER_LABEL = catalog.WORKER
UNREACHABLE_METRIC = catalog.WORKERS_UNREACHABLE.prometheus_name
HUNG_METRIC = catalog.WORKERS_HUNG.prometheus_name
SCRAPE_TIMEOUT_SECONDS = 5.0


def relabel(families: Iterable[Metric], worker: str) -> list[Metric]:
    """The families of one worker's exposition with `worker="<n>"` on every sample."""
    labelled = []
    for family in families:
        copy_ = Metric(family.name, family.documentation, family.type, family.unit)
        copy_.samples = [
            Sample(s.name, {**s.labels, WORKER_LABEL: worker}, s.value, s.timestamp, s.exemplar) for s in family.samples
        ]
        labelled.append(copy_)
    return labelled


def merge(expositions: Sequence[tuple[str, str]]) -> list[Metric]:
    """One list of families from (worker, exposition text) pairs: same-named families are joined, never summed."""
    merged: dict[str, Metric] = {}
    for worker, text in expositions:
        for family in relabel(text_string_to_metric_families(text), worker):
            existing = merged.get(family.name)
            if existing is None:
                merged[family.name] = family
            else:
                existing.samples.extend(family.samples)
    return list(merged.values())


def _unreachable_family(count: int) -> Metric:
    family = Metric(UNREACHABLE_METRIC, catalog.WORKERS_UNREACHABLE.description, "gauge")
    family.add_sample(UNREACHABLE_METRIC, {}, float(count))
    return family


def _hung_family(count: int) -> Metric:
    family = Metric(HUNG_METRIC.removesuffix("_total"), catalog.WORKERS_HUNG.description, "counter")
    family.add_sample(HUNG_METRIC, {}, float(count))
    return family


# The families gathered for the scrape being answered; the registry below reads them while rendering it.
_SCRAPED: ContextVar[Sequence[Metric]] = ContextVar("scraped_families", default=())


class _ScrapedFamilies:
    def collect(self) -> list[Metric]:
        return list(_SCRAPED.get())


def metrics_proxy(
    worker_ports: Mapping[str, int],
    worker_token: str,
    bearer_token: str = "",
    basic_auth: str = "",
    *,
    hung_workers: Callable[[], int] = lambda: 0,
) -> web.Application:
    """`GET /metrics`: every worker's metrics, labelled by worker, behind the bot's own metrics credentials, and the
    supervisor's own series (`hung_workers` tells how many workers it has killed as hung).

    The application is telemetry.prometheus.metrics_app, so the credentials are checked exactly as for
    `python -m bot`. Its handler renders a registry synchronously, so a middleware scrapes the workers first; it
    calls the handler once before (with nothing to render) so that a scrape without valid credentials is refused
    without reaching the workers.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ScrapedFamilies())
    app = metrics_app(registry, bearer_token, basic_auth)
    session_key = web.AppKey("worker_session", aiohttp.ClientSession)
    headers = {"Authorization": f"Bearer {worker_token}"}

    async def scrape(session: aiohttp.ClientSession, worker: str, port: int) -> tuple[str, str] | None:
        try:
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
                if response.status != 200:
                    return None
                return worker, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    @web.middleware
    async def scrape_workers(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        checked = await handler(request)
        if checked.status != 200:
            return checked
        session = request.app[session_key]
        results = await asyncio.gather(*(scrape(session, w, p) for w, p in sorted(worker_ports.items())))
        expositions = [result for result in results if result is not None]
        families = merge(expositions)
        families.append(_unreachable_family(len(results) - len(expositions)))
        families.append(_hung_family(hung_workers()))
        token = _SCRAPED.set(families)
        try:
            return await handler(request)
        finally:
            _SCRAPED.reset(token)

    async def client(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[session_key] = session
            yield

    app.middlewares.append(scrape_workers)
    app.cleanup_ctx.append(client)
    return app
