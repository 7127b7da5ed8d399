"""Nothing blocks the event loop: asyncio's debug mode reports no callback of 100 ms or more while the bot, with its
full telemetry (every turn traced and exported to an Application Insights ingestion endpoint, Prometheus scraped),
answers a bounded load on both transports.

The bot runs here as `python -m bot` runs it; the channel and the ingestion endpoint are another process (as they are
in production: other threads of this process would hold the GIL and stall the loop themselves). Once it serves, the
bot's start-up settings are applied (`bot.runtime.tune_after_start`, which `python -m bot` and each of its workers
call once their sites listen unless `BOT_TUNE_RUNTIME=false`; docs/performance.md). Without them this test fails, for
two reasons it found: a full garbage collection walks the ~110,000 objects of start-up and stalls the callback it
interrupts for 100-170 ms, every few seconds under load; and while the exporters' threads convert a batch, every
system call of the loop gives the GIL away for up to the 5 ms default switch interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import linecache
import logging
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot import runtime
from bot.__main__ import serve
from bot.app import create_app
from bot.runtime import tune_after_start
from bot.settings import ConfigError, Settings
from telemetry.prometheus import metrics_app
from telemetry.setup import Telemetry, configure
from telemetry.wiring import instrument
from tests.support.botserver import settings_from
from tests.support.emulator import EmulatorClient
from tests.support.fixtures import AZURE_SDK_OFFLINE_ENV
from tests.support.polling import wait_until, wait_until_async

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SLOW_CALLBACK_SECONDS = 0.1
USERS = 16
TURNS_PER_USER = 15  # 240 turns in all
LOAD_DEADLINE_SECONDS = 120
MESSAGES = ("what can you do?", "help", "which alerts exist?", "banana spaceship", "feedback", "4", "skip", "cancel")
INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def outside() -> Iterator[str]:
    """The channel and the ingestion endpoint, in a process of their own; yields their base URL."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.benchmark.receiver", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(port), timeout=30, interval=0.05, message="the channel and ingestion stand-in")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@dataclass
class Bot:
    messages_url: str
    metrics_url: str
    telemetry: Telemetry


@pytest.fixture
async def bot(outside: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Bot]:
    for name, value in AZURE_SDK_OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)
    connection_string = f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={outside}/;LiveEndpoint={outside}/"
    settings = settings_from(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string,
            "BOT_TELEMETRY_STORAGE_DIRECTORY": str(tmp_path / "ai"),
        }
    )
    telemetry = configure(settings.telemetry)
    runners = [
        web.AppRunner(create_app(settings, instrument(telemetry)), handle_signals=False),
        web.AppRunner(metrics_app(telemetry.prometheus_registry), handle_signals=False),
    ]
    try:
        ports = []
        for runner in runners:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            ports.append(runner.addresses[0][1])
        yield Bot(f"http://127.0.0.1:{ports[0]}/api/messages", f"http://127.0.0.1:{ports[1]}/metrics", telemetry)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        telemetry.shutdown()


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.reports.append(message)


async def test_no_callback_blocks_the_loop_for_100_ms_under_load(bot: Bot, outside: str) -> None:
    loop = asyncio.get_running_loop()
    slow = _SlowCallbacks()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(slow)
    previous = (loop.get_debug(), loop.slow_callback_duration)
    statuses: list[int] = []
    switch_interval = sys.getswitchinterval()
    tune_after_start()
    # Debug mode records a stack for every callback and future and has linecache stat each file in it that was
    # read before (pytest reads many): that cost is the test's own, not the bot's.
    linecache.clearcache()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
    try:
        async with aiohttp.ClientSession() as session:

            async def user(index: int) -> None:
                rng = random.Random(index)
                emulator = EmulatorClient(bot.messages_url, outside, session=session, channel_id="webchat")
                await emulator.conversation_update()
                for turn in range(TURNS_PER_USER):
                    text = rng.choice(MESSAGES)
                    if (index + turn) % 2:
                        statuses.append((await emulator.expect_replies(text)).status)
                    else:
                        statuses.append((await emulator.send(text)).status)

            async def scrapes() -> None:
                for _ in range(5):
                    async with session.get(bot.metrics_url) as response:
                        assert response.status == 200
                        await response.read()
                    await asyncio.sleep(0.2)

            async with asyncio.timeout(LOAD_DEADLINE_SECONDS):
                await asyncio.gather(*(user(index) for index in range(USERS)), scrapes())
    finally:
        loop.set_debug(previous[0])
        loop.slow_callback_duration = previous[1]
        asyncio_logger.removeHandler(slow)
        sys.setswitchinterval(switch_interval)
        gc.unfreeze()
    assert len(statuses) == USERS * TURNS_PER_USER
    assert set(statuses) <= {200, 201}, statuses
    assert not slow.reports, "\n".join(slow.reports)
    # The turns were exported: the exporters' threads were at work while the loop was watched.
    assert await asyncio.to_thread(bot.telemetry.force_flush, 10_000)
    async with aiohttp.ClientSession() as session, session.get(f"{outside}/count") as response:
        counts = json.loads(await response.read())
    assert counts["envelopes"] >= USERS * TURNS_PER_USER


# ---- python -m bot applies them ------------------------------------------------------------------------------------


def test_the_start_up_settings_are_on_unless_bot_tune_runtime_turns_them_off() -> None:
    assert Settings.from_env({}).tune_runtime is True
    for value in ("false", "0", "off", "no"):
        assert Settings.from_env({"BOT_TUNE_RUNTIME": value}).tune_runtime is False
    assert Settings.from_env({"BOT_TUNE_RUNTIME": "true"}).tune_runtime is True
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"BOT_TUNE_RUNTIME": "maybe"})
    assert raised.value.variable == "BOT_TUNE_RUNTIME"


@pytest.mark.parametrize(("value", "applied"), [("", 1), ("false", 0)], ids=["default", "BOT_TUNE_RUNTIME=false"])
async def test_python_m_bot_applies_them_once_it_serves(
    value: str, applied: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runtime, "tune_after_start", lambda: calls.append(capsys.readouterr().out))
    settings = settings_from({"BOT_TUNE_RUNTIME": value})
    telemetry = configure(settings.telemetry)
    serving = asyncio.ensure_future(serve(settings, telemetry))
    printed: list[str] = []
    try:

        def banner_printed() -> bool:
            printed.append(capsys.readouterr().out)
            return any("Press Ctrl+C to stop." in text for text in printed + calls) or serving.done()

        await wait_until_async(banner_printed, timeout=30, message="the banner")
        assert not serving.done(), serving
        # No await between the banner and the settings: once the banner is out, they were applied or never will be.
        assert len(calls) == applied
        if applied:
            assert "Press Ctrl+C to stop." in calls[0]  # after the sites started listening
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        telemetry.shutdown()
