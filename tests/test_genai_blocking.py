"""The model path does not block the event loop either: the openai client, the GenAI telemetry, late answers sent
proactively and their cancellation at shutdown, watched by blockbuster as tests/test_blocking.py watches the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest.model_standin import ModelStandIn, Scripted
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async
from tests.test_blocking import make_bot, watching

__all__ = ["make_bot"]  # the fixture, shared with tests/test_blocking.py


async def test_model_answers_late_answers_and_shutdown_do_not_block_the_loop(
    make_bot: Any,
    model: ModelStandIn,
    channel: ChannelStandIn,
    ingestion: IngestionStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env = {**ingestion.export_settings(tmp_path / "ai"), **model.bot_env(BOT_MODEL_PROACTIVE_AFTER_SECONDS="0.2")}
    bot = await make_bot(env)
    with watching(monkeypatch) as watch:
        async with aiohttp.ClientSession() as session:
            emulator = EmulatorClient(bot.messages_url, channel.service_url, session=session, channel_id="webchat")
            for text in ("Which colour is the sky on Mars?", "And on Venus?", "feedback", "5", "skip"):
                assert (await emulator.expect_replies(text)).status == 200
            model.script(Scripted(status=429, retry_after=3))
            assert (await emulator.expect_replies("Is Pluto a planet?")).status == 200
            model.script(Scripted(text="Late, but here.", delay=0.5))
            assert (await emulator.send("Why is Mars red?")).status == 201
            await channel.wait_for_replies_async(emulator.conversation_id, 1, messages_only=True)
            # Shut down with a late answer pending: it is cancelled.
            model.hold()
            pending = EmulatorClient(bot.messages_url, channel.service_url, session=session, channel_id="webchat")
            assert (await pending.send("How far is Jupiter?")).status == 201
            await wait_until_async(lambda: model.waiting == 1, message="the model call in flight")
            await bot.stop()
            model.release()
    watch.assert_none()
