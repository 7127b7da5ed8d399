"""`python -m bot`: settings → telemetry → app → serve until SIGINT/SIGTERM, then flush everything.

The one place where the bot and its telemetry are composed: the bot's packages never import telemetry (the app takes
its hooks, bot/hooks.py), telemetry implements them (telemetry/wiring.py), and this module joins the two.

`python -m bot --workers N` (or `BOT_WORKERS=N`) serves from N processes sharing one port, under a supervisor
(bot/workers.py); without it, or with N = 1, the bot is one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from dotenv import find_dotenv, load_dotenv

from bot import runtime
from bot.settings import MAX_WORKERS, MEMORY_NOT_SHARED, ConfigError, Settings, whole_number
from bot.storage import STORE_BLOB, STORE_MEMORY, STORE_SQLITE, build_storage
from bot.workers import StartError, WorkerRole, check_supervisable, supervise

if TYPE_CHECKING:
    from botbuilder.core import Storage

    from telemetry.config import TelemetryConfig
    from telemetry.setup import Telemetry

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _display_host(host: str) -> str:
    return "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "::1", "") else host


def banner(settings: Settings, telemetry: TelemetryConfig, azure_monitor_enabled: bool, workers: int = 1) -> str:
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
    if settings.metrics_port and workers > 1:
        metrics += " (every worker, label worker)"
    azure = "on" if azure_monitor_enabled else "off (set APPLICATIONINSIGHTS_CONNECTION_STRING to turn it on)"
    running = "is running" if workers == 1 else f"is running on {workers} worker processes"
    return "\n".join(
        [
            f"{telemetry.service_name} {telemetry.service_version} {running}",
            f"  Bot Framework Emulator: {bot_url} ({auth})",
            f"  Prometheus metrics:     {metrics}",
            f"  Azure Monitor export:   {azure}",
            f"  Conversation state:     {_state_description(settings, workers)}",
            "  Press Ctrl+C to stop.",
        ]
    )


def _state_description(settings: Settings, workers: int) -> str:
    """Where dialogs live, so that nobody scales out on in-memory state by mistake (docs/scaling.md)."""
    if settings.state_store == STORE_BLOB:
        where = urlsplit(settings.blob_account_url).hostname if settings.blob_account_url else "the connection string"
        return f"Azure Blob Storage, container {settings.blob_container} ({where})"
    if settings.state_store == STORE_MEMORY and workers == 1:
        return "in memory (this process only; BOT_STATE_STORE=blob to share it between instances)"
    return f"SQLite {settings.state_db or '(a temporary file)'} (this host only)"


async def serve(
    settings: Settings, telemetry: Telemetry, *, storage: Storage | None = None, worker: WorkerRole | None = None
) -> None:
    # On SIGTERM the listener closes at once and turns in flight get up to the shutdown timeout to finish;
    # telemetry is flushed after that (run).
    from bot.app import create_app
    from telemetry import catalog
    from telemetry.prometheus import metrics_app
    from telemetry.wiring import instrument

    bot_runner = web.AppRunner(
        create_app(settings, instrument(telemetry), storage=storage),
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        # A connection that has not sent a whole request head within this time (or idles between requests) is
        # closed: aiohttp arms this timer when the connection opens.
        keepalive_timeout=settings.idle_timeout_seconds,
    )
    runners = [bot_runner]
    metrics_runner: web.AppRunner | None = None
    if worker is not None or settings.metrics_port:
        metrics = metrics_app(
            telemetry.prometheus_registry,
            settings.metrics_bearer_token,
            settings.metrics_basic_auth,
            openmetrics=telemetry.config.prometheus_exemplars,
        )
        if worker is not None:
            worker.add_liveness_route(metrics)
        metrics_runner = web.AppRunner(metrics, handle_signals=False, access_log=None)
        runners.append(metrics_runner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        for runner in runners:
            await runner.setup()
        # Workers share the port; the kernel spreads the connections over them.
        await web.TCPSite(bot_runner, settings.host, settings.port, reuse_port=worker is not None).start()
        if metrics_runner is not None:
            site = (
                web.SockSite(metrics_runner, worker.metrics_socket)
                if worker is not None
                else web.TCPSite(metrics_runner, settings.metrics_host, settings.metrics_port)
            )
            await site.start()
        if worker is None:
            print(banner(settings, telemetry.config, telemetry.azure_monitor_enabled), flush=True)
        if settings.tune_runtime:
            runtime.tune_after_start()
        telemetry.emit_event(catalog.EVENT_INITIALIZED.name, {"service.version": telemetry.config.service_version})
        await stop.wait()
        if worker is None:
            print(
                f"otel-chatbot: stopping (turns in flight get up to {settings.shutdown_timeout_seconds:g} s, "
                "then telemetry is flushed)",
                flush=True,
            )
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)


def run(settings: Settings, telemetry_config: TelemetryConfig, worker: WorkerRole | None = None) -> int:
    """One process serving the bot: `python -m bot`, or one worker of `python -m bot --workers N`."""
    # Imported here: a supervisor of worker processes needs none of the telemetry SDKs.
    from telemetry.setup import configure

    if settings.state_store == STORE_SQLITE and not settings.state_db:
        print("otel-chatbot cannot start: BOT_STATE_DB: BOT_STATE_STORE=sqlite needs the SQLite file", file=sys.stderr)
        return 2
    try:
        # A blob store is built by the app, on its event loop (bot/app.py).
        storage = build_storage(settings) if settings.state_store != STORE_BLOB else None
    except (OSError, sqlite3.Error, ValueError) as error:
        variable = "BOT_STATE_DB" if settings.state_store == STORE_SQLITE else "BOT_STATE_STORE"
        print(f"otel-chatbot cannot start: {variable}: {error}", file=sys.stderr)
        return 1
    telemetry = configure(telemetry_config)
    telemetry.install_globals()
    try:
        asyncio.run(serve(settings, telemetry, storage=storage, worker=worker))
    except OSError as error:
        print(f"otel-chatbot cannot start: {error}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            telemetry.shutdown()
        close = getattr(storage, "close", None)
        if close is not None:
            close()
    if worker is None:  # a supervisor of workers says it itself
        print("otel-chatbot: stopped", flush=True)
    return 0


def _worker_count(raw: str) -> int:
    try:
        return whole_number(raw, 1, MAX_WORKERS)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Run otel-chatbot. Settings come from environment variables and a .env file (README.md).",
    )
    parser.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help=f"serve from N processes sharing PORT, 1-{MAX_WORKERS} (default: BOT_WORKERS, else 1)",
    )
    # Given by the supervisor to each worker process it starts (bot/workers.py).
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--metrics-fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker is not None and (arguments.metrics_fd is None or arguments.supervisor is None):
        parser.error("--worker needs --metrics-fd and --supervisor")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    from telemetry.config import TelemetryConfig  # validated with the bot's settings, before anything starts

    arguments = parse_arguments(argv)
    if arguments.worker is not None:
        try:
            role = WorkerRole.adopt(arguments.worker, arguments.metrics_fd, arguments.supervisor)
            settings = Settings.from_env()  # as the supervisor prepared it
            telemetry_config = TelemetryConfig.from_env()
        except (StartError, ConfigError, OSError) as error:
            print(f"otel-chatbot worker {arguments.worker} cannot start: {error}", file=sys.stderr)
            return 1
        return run(settings, telemetry_config, role)
    load_dotenv(find_dotenv(usecwd=True), override=False)  # the .env where the user starts the bot
    try:
        settings = Settings.from_env()
        telemetry_config = TelemetryConfig.from_env()
        workers = arguments.workers or settings.workers
        if workers > 1 and os.environ.get("BOT_STATE_STORE", "").strip().lower() == STORE_MEMORY:
            raise ConfigError("BOT_STATE_STORE", MEMORY_NOT_SHARED)
        if workers > 1:
            check_supervisable(settings)
    except ConfigError as error:
        print(f"otel-chatbot cannot start: {error}", file=sys.stderr)
        return 2
    if workers > 1:
        from telemetry.worker_metrics import metrics_proxy  # Prometheus only: no OpenTelemetry SDK in the supervisor

        azure = bool(telemetry_config.connection_string)
        return supervise(settings, workers, banner(settings, telemetry_config, azure, workers), metrics_proxy)
    return run(settings, telemetry_config)


if __name__ == "__main__":
    sys.exit(main())
