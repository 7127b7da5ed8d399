"""Nothing the bot does on its event loop blocks it. blockbuster raises on blocking calls (`time.sleep`, file and
socket I/O, SQLite, ...) made from a thread that runs an event loop; here it watches every call the `bot` and
`telemetry` code make, and whatever they call, while the bot serves conversations on both transports (state in its
SQLite storage, replies retried), authenticates Bot Framework tokens (signing keys fetched from an OpenID endpoint),
exports to the Application Insights ingestion endpoint through an outage, and shuts down with turns in flight.
Deterministic: it does not depend on how fast anything runs (the loop's timing is a benchmark figure,
docs/performance.md).

Start-up (reading the knowledge base, configuring the SDKs) is not watched: it runs before the bot serves. Console
logging, a write to the process's standard error, is the one blocking call allowed on the loop. Telemetry and the
state storage are closed after the loop's part of the shutdown, as `python -m bot` closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from blockbuster import BlockingError, blockbuster_ctx
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication

from bot import compat
from bot.app import RUNTIME, create_app
from bot.state import SqliteStateStorage
from telemetry.botframework import TurnTelemetryMiddleware
from telemetry.prometheus import metrics_app
from telemetry.setup import Telemetry, configure
from telemetry.wiring import instrument
from tests.support.botserver import settings_from, telemetry_config_from
from tests.support.channel import Answer, ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async
from tests.test_auth import APP_ID, ISSUER, SERVICE_URL, OpenIdEndpoint

WATCHED = ["bot", "telemetry"]
MESSAGES = ("what can you do?", "help", "feedback", "4", "skip", "banana spaceship", "survey", "cancel", "/fail")
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100"}


@dataclass
class Watch:
    """Blocking calls caught (each with the stack that made it), whether or not the bot's code swallowed the error."""

    found: list[str] = field(default_factory=list)

    def assert_none(self) -> None:
        assert not self.found, "blocking calls on the event loop:\n\n" + "\n\n".join(self.found)


@contextlib.contextmanager
def watching(monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    watch = Watch()
    original = BlockingError.__init__

    def record(error: BlockingError, func: str) -> None:
        stack = traceback.extract_stack()[:-1]
        ours = [frame for frame in stack if "/bot/" in frame.filename or "/telemetry/" in frame.filename]
        where = "".join(traceback.format_list(ours[-3:] + stack[-4:]))
        watch.found.append(f"{func}, called from:\n{where}")
        original(error, func)

    monkeypatch.setattr(BlockingError, "__init__", record)
    with blockbuster_ctx(WATCHED) as blockbuster:
        for name, function in blockbuster.functions.items():
            if name.startswith("io.") or name == "os.write":
                function.can_block_in("logging/__init__.py", {"emit", "flush"})
        yield watch


@dataclass
class Bot:
    app: web.Application
    runner: web.AppRunner
    metrics: web.AppRunner
    telemetry: Telemetry
    storage: SqliteStateStorage

    @property
    def messages_url(self) -> str:
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/api/messages"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics.addresses[0][1]}/metrics"

    async def stop(self) -> None:
        """The loop's part of the shutdown: stop listening, let turns in flight finish, close the app."""
        await self.runner.cleanup()
        await self.metrics.cleanup()


@pytest.fixture
async def make_bot(azure_sdk_offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Any]:
    for name, value in FAST_EXPORT.items():
        monkeypatch.setenv(name, value)
    made: list[Bot] = []

    async def make(env: dict[str, str]) -> Bot:
        settings = settings_from({"BOT_STATE_DB": str(tmp_path / f"state-{len(made)}.db"), **env})
        telemetry = configure(telemetry_config_from(env), console=False)
        storage = SqliteStateStorage(settings.state_db)
        runner = web.AppRunner(
            create_app(settings, instrument(telemetry), storage=storage),
            handle_signals=False,
            shutdown_timeout=settings.shutdown_timeout_seconds,
        )
        metrics = web.AppRunner(metrics_app(telemetry.prometheus_registry), handle_signals=False)
        for each in (runner, metrics):
            await each.setup()
            await web.TCPSite(each, "127.0.0.1", 0).start()
        made.append(Bot(runner.app, runner, metrics, telemetry, storage))
        return made[-1]

    yield make
    for bot in made:
        await bot.stop()
        await asyncio.to_thread(bot.telemetry.shutdown)
        await asyncio.to_thread(bot.storage.close)


async def _conversation(bot: Bot, channel: ChannelStandIn, session: aiohttp.ClientSession, index: int) -> None:
    emulator = EmulatorClient(
        bot.messages_url, channel.service_url, session=session, channel_id=("webchat", "emulator")[index % 2]
    )
    assert (await emulator.conversation_update()).status == 201
    for turn, text in enumerate(MESSAGES):
        if (index + turn) % 2:
            assert (await emulator.expect_replies(text)).status == 200
        else:
            assert (await emulator.send(text)).status == 201


async def test_conversations_storage_export_and_shutdown_do_not_block_the_loop(
    make_bot: Any,
    channel: ChannelStandIn,
    ingestion: IngestionStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bot = await make_bot(
        {
            **ingestion.export_settings(tmp_path / "ai"),
            "BOT_TELEMETRY_RETRY_INTERVAL_SECONDS": "1",
            "BOT_REPLY_TIMEOUT_SECONDS": "5",
        }
    )
    with watching(monkeypatch) as watch:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(_conversation(bot, channel, session, index) for index in range(4)))
            # A reply the channel refuses once is retried; the ingestion endpoint fails for a while.
            retried = EmulatorClient(bot.messages_url, channel.service_url, session=session, channel_id="webchat")
            channel.script(retried.conversation_id, Answer(503))
            ingestion.fail_with(503)
            assert (await retried.send("help")).status == 201
            await asyncio.gather(*(_conversation(bot, channel, session, index) for index in range(2)))
            assert await asyncio.to_thread(bot.telemetry.force_flush)
            ingestion.recover()
            await wait_until_async(lambda: len(ingestion.of_type("RequestData")) >= 6 * len(MESSAGES), timeout=30)
            async with session.get(bot.metrics_url) as scrape:
                assert scrape.status == 200
            # Shut down with two turns waiting on the channel: they finish, then the app closes.
            stuck = EmulatorClient(bot.messages_url, channel.service_url, session=session, channel_id="webchat")
            channel.hang(stuck.conversation_id)
            in_flight = [asyncio.ensure_future(stuck.send("help")) for _ in range(2)]
            await wait_until_async(lambda: channel.held(stuck.conversation_id) == 2, message="2 turns in flight")
            stopping = asyncio.ensure_future(bot.stop())
            channel.recover(stuck.conversation_id)
            assert [response.status for response in await asyncio.gather(*in_flight)] == [201, 201]
            await stopping
    watch.assert_none()


async def test_authentication_does_not_block_the_loop(make_bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = await make_bot({"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "not-used-here"})
    with OpenIdEndpoint() as openid:
        configuration = SimpleNamespace(
            **vars(bot.app[RUNTIME].settings.botbuilder_configuration()),
            TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=f"{openid.base_url}/v1/.well-known/openidconfiguration",
            TO_BOT_FROM_CHANNEL_TOKEN_ISSUER=ISSUER,
        )
        bot.app[RUNTIME].adapter.bot_framework_authentication = ConfigurationBotFrameworkAuthentication(configuration)
        with watching(monkeypatch) as watch:
            for authorization, status in (
                (f"Bearer {openid.token()}", 200),
                (f"Bearer {openid.token()}", 200),
                ("Bearer not.a.token", 401),
                (None, 401),
            ):
                async with EmulatorClient(
                    bot.messages_url, SERVICE_URL, channel_id="msteams", authorization=authorization
                ) as user:
                    assert (await user.expect_replies("help")).status == status
            assert openid.fetches == 1
            await bot.stop()
    watch.assert_none()


# ---- the watch catches what it must ---------------------------------------------------------------------------------


def _sleep_in_every_turn(monkeypatch: pytest.MonkeyPatch, channel: ChannelStandIn) -> None:
    on_turn = TurnTelemetryMiddleware.on_turn

    async def sleepy(self: TurnTelemetryMiddleware, context: Any, logic: Any) -> None:
        time.sleep(0.001)  # noqa: ASYNC251 - the blocking call the watch must catch
        await on_turn(self, context, logic)

    monkeypatch.setattr(TurnTelemetryMiddleware, "on_turn", sleepy)


def _storage_on_the_loop(monkeypatch: pytest.MonkeyPatch, channel: ChannelStandIn) -> None:
    async def inline(self: SqliteStateStorage, function: Any, *args: Any) -> Any:
        return function(*args)

    monkeypatch.setattr(SqliteStateStorage, "_run", inline)


def _socket_on_the_loop(monkeypatch: pytest.MonkeyPatch, channel: ChannelStandIn) -> None:
    async def connect_first(self: compat.AsyncChannelReplies, context: Any) -> str | None:
        with socket.create_connection(("127.0.0.1", channel.port), timeout=5):
            return None

    monkeypatch.setattr(compat.AsyncChannelReplies, "_access_token", connect_first)


@pytest.mark.parametrize(
    "inject",
    [_sleep_in_every_turn, _storage_on_the_loop, _socket_on_the_loop],
    ids=["time.sleep-in-a-turn", "sqlite-on-the-loop", "socket-on-the-loop"],
)
async def test_a_blocking_call_on_the_loop_is_caught(
    make_bot: Any, channel: ChannelStandIn, monkeypatch: pytest.MonkeyPatch, inject: Any
) -> None:
    inject(monkeypatch, channel)
    bot = await make_bot({})
    with watching(monkeypatch) as watch:
        async with EmulatorClient(bot.messages_url, channel.service_url, channel_id="webchat") as user:
            await user.send("feedback")
    assert watch.found
