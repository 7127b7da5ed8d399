"""How long the bot's event loop is held by one callback under load: a benchmark figure, not a test (whether anything
blocks the loop at all is tested deterministically by tests/test_blocking.py).

    python -m loadtest.benchmark.loop [--users 16] [--turns 15] [--out var/benchmark/loop.json]

The bot runs in this process as `python -m bot` runs it (start-up settings applied), with its full telemetry: every
turn traced and exported to an ingestion endpoint that, like the channel, is another process
(`loadtest.benchmark.receiver`), and Prometheus scraped. Users hold conversations on both transports while asyncio's
debug mode reports every callback that held the loop for `--threshold` or more; the longest of them is the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import linecache
import logging
import os
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from loadtest.rig import activities
from loadtest.rig.ingestion import AZURE_SDK_OFFLINE_ENV, connection_string, export_settings
from loadtest.rig.ports import free_port
from loadtest.rig.processes import Child

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = ("what can you do?", "help", "which alerts exist?", "banana spaceship", "feedback", "4", "skip", "cancel")
_TOOK = re.compile(r" took (\d+(?:\.\d+)?) seconds")


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seconds: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = _TOOK.search(record.getMessage())
        if found:
            self.seconds.append(float(found.group(1)))


async def _wait_for_port(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError("the receiver did not start")


async def measure(port: int, users: int, turns: int, threshold: float) -> dict[str, Any]:
    from bot.app import create_app
    from bot.runtime import tune_after_start
    from bot.settings import Settings
    from telemetry.config import TelemetryConfig
    from telemetry.prometheus import metrics_app
    from telemetry.setup import configure
    from telemetry.wiring import instrument

    outside = f"http://127.0.0.1:{port}"
    storage = tempfile.mkdtemp(prefix="loop-benchmark-")
    env = {
        "PORT": "0",
        "BOT_TELEMETRY_HASH_KEY": "benchmark",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        **export_settings(connection_string(outside), storage),
    }
    settings = Settings.from_env(env)
    telemetry = configure(TelemetryConfig.from_env(env), console=False)
    runners = [
        web.AppRunner(create_app(settings, instrument(telemetry)), handle_signals=False),
        web.AppRunner(metrics_app(telemetry.prometheus_registry), handle_signals=False),
    ]
    loop = asyncio.get_running_loop()
    slow = _SlowCallbacks()
    logging.getLogger("asyncio").addHandler(slow)
    statuses: list[int] = []
    try:
        await _wait_for_port(port)
        ports = []
        for runner in runners:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            ports.append(runner.addresses[0][1])
        messages_url = f"http://127.0.0.1:{ports[0]}/api/messages"
        metrics_url = f"http://127.0.0.1:{ports[1]}/metrics"
        tune_after_start()
        linecache.clearcache()  # debug mode stats every file linecache holds: the measurement's cost, not the bot's
        loop.set_debug(True)
        loop.slow_callback_duration = threshold
        async with aiohttp.ClientSession() as session:

            async def user(index: int) -> None:
                rng = random.Random(index)
                for turn in range(turns):
                    activity = activities.activity(
                        "message",
                        channel_id="webchat",
                        service_url=outside,
                        conversation_id=f"loop-{index}",
                        user={"id": f"user-{index}"},
                        text=rng.choice(MESSAGES),
                        id=f"{index}-{turn}",
                    )
                    if (index + turn) % 2:
                        activity["deliveryMode"] = activities.EXPECT_REPLIES
                    async with session.post(messages_url, json=activity) as response:
                        await response.read()
                        statuses.append(response.status)

            async def scrapes() -> None:
                for _ in range(5):
                    async with session.get(metrics_url) as response:
                        await response.read()
                    await asyncio.sleep(0.2)

            async with asyncio.timeout(300):
                await asyncio.gather(*(user(index) for index in range(users)), scrapes())
    finally:
        loop.set_debug(False)
        logging.getLogger("asyncio").removeHandler(slow)
        for runner in reversed(runners):
            await runner.cleanup()
        await asyncio.to_thread(telemetry.shutdown)
        gc.unfreeze()
    return {
        "turns": len(statuses),
        "failed_turns": sum(1 for status in statuses if status not in (200, 201)),
        "threshold_ms": threshold * 1000,
        "callbacks_over_threshold": len(slow.seconds),
        "longest_callback_ms": round(max(slow.seconds, default=0.0) * 1000, 1),
        "callbacks_of_100_ms_or_more": sum(1 for seconds in slow.seconds if seconds >= 0.1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--turns", type=int, default=15, help="turns per user")
    parser.add_argument("--threshold", type=float, default=0.02, help="seconds; callbacks this long are reported")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.update(AZURE_SDK_OFFLINE_ENV)
    os.environ["OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"] = "otel"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="loop-benchmark-") as logs:
        receiver = Child(
            "receiver",
            [sys.executable, "-m", "loadtest.benchmark.receiver", str(port)],
            Path(logs) / "receiver.log",
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        )
        try:
            result = asyncio.run(measure(port, args.users, args.turns, args.threshold))
        finally:
            receiver.stop(30)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
