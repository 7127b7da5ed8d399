"""The real bot application on ephemeral 127.0.0.1 ports, with its real telemetry pipeline.

Azure Monitor export goes to the ingestion stand-in; in-memory exporters sit beside it so tests can also look at the
signals before serialisation. Metrics are read over HTTP from the bot's own /metrics endpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bot.app import RUNTIME, create_app
from bot.faults import FaultInjection
from bot.settings import Settings
from loadtest.rig import exposition
from telemetry.catalog import Metric
from telemetry.config import TelemetryConfig
from telemetry.prometheus import metrics_app
from telemetry.setup import Telemetry, configure
from telemetry.wiring import instrument


@dataclass
class RunningBot:
    settings: Settings
    telemetry: Telemetry
    base_url: str
    metrics_url: str
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    app: web.Application

    @property
    def faults(self) -> FaultInjection:
        """The running bot's fault injection, to switch faults on and off as a drill would."""
        return self.app[RUNTIME].faults

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/api/messages"

    def flush(self) -> None:
        assert self.telemetry.force_flush(10_000), "telemetry providers did not flush within 10 s"

    async def scrape(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as response:
            assert response.status == 200
            return await response.text()

    async def samples(self, metric: Metric | str) -> list[tuple[dict[str, str], float]]:
        """Every sample of one series (`catalog.TURNS`, or a name such as `bot_turns_total`), as (labels, value)."""
        return exposition.samples(await self.scrape(), metric)

    async def total(self, metric: Metric | str, **labels: str) -> float:
        """The series summed over the label sets that have all of `labels`."""
        return exposition.total(await self.scrape(), metric, **labels)


# Every turn traced (the default caps traces per second): tests look at each turn's spans.
TEST_ENV = {
    "PORT": "0",
    "BOT_METRICS_PORT": "0",
    "BOT_TELEMETRY_HASH_KEY": "test-key",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
}


def settings_from(env: Mapping[str, str]) -> Settings:
    return Settings.from_env({**TEST_ENV, **env})


def telemetry_config_from(env: Mapping[str, str]) -> TelemetryConfig:
    return TelemetryConfig.from_env({**TEST_ENV, **env})


@contextlib.asynccontextmanager
async def running_bot(
    env: Mapping[str, str] | None = None, *, connection_string: str | None = None, storage: Path | None = None
) -> AsyncIterator[RunningBot]:
    environment = dict(env or {})
    if connection_string:
        environment["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection_string
    if storage is not None:
        environment["BOT_TELEMETRY_STORAGE_DIRECTORY"] = str(storage)
    settings = settings_from(environment)
    spans = InMemorySpanExporter()
    logs = InMemoryLogRecordExporter()
    telemetry = configure(telemetry_config_from(environment), span_exporters=[spans], log_exporters=[logs])
    app = create_app(settings, instrument(telemetry))
    bot_runner = web.AppRunner(app, handle_signals=False, keepalive_timeout=settings.idle_timeout_seconds)
    openmetrics = telemetry.config.prometheus_exemplars
    metrics_runner = web.AppRunner(
        metrics_app(telemetry.prometheus_registry, openmetrics=openmetrics), handle_signals=False
    )
    try:
        await bot_runner.setup()
        await metrics_runner.setup()
        bot_site = web.TCPSite(bot_runner, "127.0.0.1", 0)
        metrics_site = web.TCPSite(metrics_runner, "127.0.0.1", 0)
        await bot_site.start()
        await metrics_site.start()
        yield RunningBot(
            settings=settings,
            telemetry=telemetry,
            base_url=f"http://127.0.0.1:{_port(bot_runner)}",
            metrics_url=f"http://127.0.0.1:{_port(metrics_runner)}/metrics",
            spans=spans,
            logs=logs,
            app=app,
        )
    finally:
        await bot_runner.cleanup()
        await metrics_runner.cleanup()
        telemetry.shutdown()


def _port(runner: web.AppRunner) -> int:
    server = runner.addresses[0]
    return int(server[1])
