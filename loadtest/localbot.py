"""Starts the real bot (`python -m bot`) as a subprocess on free 127.0.0.1 ports, exporting to the ingestion stand-in.

A separate process is how the bot runs in production, gives it a core of its own instead of a share of the load
generator's, and keeps Locust's gevent monkey-patching away from its asyncio loop. SIGTERM makes it flush every
exporter before it exits, so what reached the stand-in by then is everything it will ever send.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from loadtest.rig.ingestion import AZURE_SDK_OFFLINE_ENV, export_settings
from loadtest.rig.polling import wait_until
from loadtest.rig.ports import free_port
from loadtest.rig.processes import Child, http_ok

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 60.0
# No proxy may sit between the load test and 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Settings the reconciliation depends on; they win over the caller's environment and any .env file.
_PINNED = {
    "BOT_HOST": "127.0.0.1",
    "BOT_METRICS_HOST": "127.0.0.1",
    "MicrosoftAppId": "",
    "MicrosoftAppPassword": "",
    "MicrosoftAppType": "",
    "MicrosoftAppTenantId": "",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",  # every turn traced: one Request envelope per turn
    "OTEL_TRACES_SAMPLER_ARG": "",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    **AZURE_SDK_OFFLINE_ENV,
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class LocalBot:
    child: Child
    port: int
    metrics_port: int

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    @property
    def messages_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/messages"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def scrape(self) -> str:
        with _DIRECT.open(self.metrics_url, timeout=10) as response:
            return str(response.read().decode("utf-8"))

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM (the bot flushes its telemetry), then SIGKILL if it has not exited within `timeout`."""
        return self.child.stop(timeout)

    def log_tail(self, lines: int = 20) -> str:
        return self.child.log_tail(lines)


def bot_environment(
    base: Mapping[str, str], port: int, metrics_port: int, connection_string: str, storage: Path
) -> dict[str, str]:
    env = dict(base)
    env.update(_PINNED)
    env.update({"PORT": str(port), "BOT_METRICS_PORT": str(metrics_port)})
    env.update(export_settings(connection_string, storage))
    return env


def start_bot(results_dir: Path, connection_string: str, project_root: Path, attempts: int = 3) -> LocalBot:
    """Start the bot and wait until it answers /healthz; raises RuntimeError with its log if it does not.

    A free port can be taken by another process between choosing it and the bot binding it; then it tries again."""
    for attempt in range(1, attempts + 1):
        bot = _launch(results_dir, connection_string, project_root)
        try:
            wait_until(partial(_ready, bot), timeout=START_TIMEOUT_SECONDS, interval=0.1, message="the bot's /healthz")
            return bot
        except AssertionError as error:
            bot.stop(timeout=5)
            log = bot.log_tail()
            if attempt == attempts or "address already in use" not in log.lower():
                raise RuntimeError(f"the bot did not start: {error}\n{log}") from None
    raise AssertionError("unreachable")


def _launch(results_dir: Path, connection_string: str, project_root: Path) -> LocalBot:
    port, metrics_port = free_port(), free_port()
    env = bot_environment(os.environ, port, metrics_port, connection_string, results_dir / "bot-telemetry-storage")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project_root), os.environ.get("PYTHONPATH")]))
    child = Child("bot", [sys.executable, "-m", "bot"], results_dir / "bot.log", env=env, cwd=results_dir)
    return LocalBot(child, port, metrics_port)


def _ready(bot: LocalBot) -> bool:
    code = bot.child.exited()
    if code is not None:
        raise AssertionError(f"it exited with code {code}")
    return http_ok(f"http://127.0.0.1:{bot.port}/healthz", timeout=2)
