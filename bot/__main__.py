"""`python -m bot`: settings → telemetry → app → serve until SIGINT/SIGTERM, then flush everything."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiohttp import web
from dotenv import find_dotenv, load_dotenv

from bot.app import create_app
from bot.settings import ConfigError, Settings
from telemetry import catalog
from telemetry.prometheus import metrics_app
from telemetry.setup import Telemetry, configure
from telemetry.wiring import instrument


def _display_host(host: str) -> str:
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1", "") else host


def banner(settings: Settings, telemetry: Telemetry) -> str:
    bot_url = f"http://{_display_host(settings.host)}:{settings.port}/api/messages"
    auth = (
        f"authentication on (MicrosoftAppId {settings.app_id})"
        if settings.auth_enabled
        else "no app id: authentication off"
    )
    metrics = (
        f"http://{_display_host(settings.metrics_host)}:{settings.metrics_port}/metrics"
        if settings.metrics_port
        else "off (BOT_METRICS_PORT=0)"
    )
    azure = "on" if telemetry.azure_monitor_enabled else "off (set APPLICATIONINSIGHTS_CONNECTION_STRING to turn it on)"
    return "\n".join(
        [
            f"{telemetry.config.service_name} {telemetry.config.service_version} is running",
            f"  Bot Framework Emulator: {bot_url} ({auth})",
            f"  Prometheus metrics:     {metrics}",
            f"  Azure Monitor export:   {azure}",
            "  Press Ctrl+C to stop.",
        ]
    )


async def serve(settings: Settings, telemetry: Telemetry) -> None:
    # On SIGTERM the listener closes at once and turns in flight get up to the shutdown timeout to finish;
    # telemetry is flushed after that (main).
    bot_app = create_app(settings, instrument(telemetry))
    runners = [web.AppRunner(bot_app, handle_signals=False, shutdown_timeout=settings.shutdown_timeout_seconds)]
    sites = [(runners[0], settings.host, settings.port)]
    if settings.metrics_port:
        runners.append(
            web.AppRunner(
                metrics_app(telemetry.prometheus_registry, settings.metrics_bearer_token, settings.metrics_basic_auth),
                handle_signals=False,
                access_log=None,
            )
        )
        sites.append((runners[1], settings.metrics_host, settings.metrics_port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        for runner, host, port in sites:
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
        print(banner(settings, telemetry), flush=True)
        telemetry.emit_event(catalog.EVENT_INITIALIZED.name, {"service.version": telemetry.config.service_version})
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def main() -> int:
    load_dotenv(find_dotenv(usecwd=True), override=False)  # the .env where the user starts the bot
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"otel-chatbot cannot start: {error}", file=sys.stderr)
        return 2
    telemetry = configure(settings.telemetry)
    telemetry.install_globals()
    try:
        asyncio.run(serve(settings, telemetry))
    except OSError as error:
        print(f"otel-chatbot cannot start: {error}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            telemetry.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
