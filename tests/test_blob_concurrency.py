"""Two bot instances on one blob container: concurrent turns of one conversation lose no update, and an activity
delivered twice is answered once (bot/storage/turns.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botbuilder.core import Storage

from bot.adapter import ERROR_MESSAGE
from bot.app import create_app
from bot.dialogs.feedback_dialog import COMMENT_PROMPT, RATING_PROMPT
from bot.settings import Settings
from bot.storage.blob import BlobStateStorage
from bot.storage.turns import PROCESSED_PROPERTY, ConversationTurnGuard
from tests.support.azurite import Azurite, running_azurite
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient

GATE_TIMEOUT_SECONDS = 10.0


class ReadGate(Storage):
    """The real blob store, with a gate that holds the first conversation read of each instance until the other
    instance has read too: both turns then run on the same state, the interleaving a channel produces when two
    activities of one conversation reach two instances at once. Only the schedule is forced; every call is real."""

    def __init__(self, inner: BlobStateStorage, barrier: asyncio.Barrier) -> None:
        self.inner = inner
        self._barrier = barrier
        self.armed = False

    async def read(self, keys: list[str]) -> dict[str, Any]:
        items = await self.inner.read(keys)
        if self.armed and any("/conversations/" in key for key in keys):
            self.armed = False
            await asyncio.wait_for(self._barrier.wait(), GATE_TIMEOUT_SECONDS)
        return items

    async def write(self, changes: dict[str, Any]) -> None:
        await self.inner.write(changes)

    async def delete(self, keys: list[str]) -> None:
        await self.inner.delete(keys)


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    yield from running_azurite(tmp_path / "azurite")


@contextlib.asynccontextmanager
async def instance(storage: Storage) -> AsyncIterator[str]:
    """One bot instance (the real app, no telemetry) on an ephemeral port; yields its messages URL."""
    runner = web.AppRunner(create_app(Settings.from_env({"PORT": "0"}), storage=storage), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/messages"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def two_instances(azurite: Azurite) -> AsyncIterator[tuple[list[ReadGate], list[str]]]:
    settings = Settings.from_env(
        {
            "BOT_STATE_STORE": "blob",
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "BOT_STATE_BLOB_CONTAINER": f"race-{uuid.uuid4().hex[:8]}",
        }
    )
    barrier = asyncio.Barrier(2)
    gates = [ReadGate(BlobStateStorage.from_settings(settings), barrier) for _ in range(2)]
    try:
        async with instance(gates[0]) as first, instance(gates[1]) as second:
            yield gates, [first, second]
    finally:
        for gate in gates:
            await gate.inner.aclose()


def _texts(channel: ChannelStandIn, conversation_id: str) -> list[str]:
    return [reply.get("text") or "" for reply in channel.messages(conversation_id)]


async def _race_two_ratings(azurite: Azurite, channel: ChannelStandIn) -> tuple[list[str], list[int]]:
    """`feedback`, then `4` and `5` at the same moment on two instances; the replies to the two racing turns."""
    async with two_instances(azurite) as (gates, urls):
        conversation = f"race-{uuid.uuid4().hex}"
        users = [EmulatorClient(url, channel.service_url, conversation_id=conversation, user_id="u1") for url in urls]
        try:
            assert (await users[0].send("feedback")).status == 201
            await channel.wait_for_replies_async(conversation, 1, timeout=10, messages_only=True)
            assert RATING_PROMPT in _texts(channel, conversation)[0]
            for gate in gates:
                gate.armed = True
            answers = await asyncio.gather(users[0].send("4"), users[1].send("5"))
            statuses = [answer.status for answer in answers]
            await channel.wait_for_replies_async(conversation, 3, timeout=10, messages_only=True)
        finally:
            for user in users:
                await user.close()
    return _texts(channel, conversation)[1:], statuses


async def test_two_answers_racing_on_two_instances_run_one_after_the_other(
    azurite: Azurite, channel: ChannelStandIn
) -> None:
    racing, statuses = await _race_two_ratings(azurite, channel)
    assert statuses == [201, 201]
    # As if the user had sent them one after another, in either order: the first is the rating, the second the
    # comment. Neither turn failed, none was answered twice, and the dialog finished.
    serial_orders = [
        [COMMENT_PROMPT, "Thank you for your feedback! You rated me 4/5 and your comment was noted."],
        [COMMENT_PROMPT, "Thank you for your feedback! You rated me 5/5 and your comment was noted."],
    ]
    assert [text.split("\n")[0] for text in racing] in serial_orders, racing


async def test_without_the_guard_the_same_race_breaks_the_dialog(
    azurite: Azurite, channel: ChannelStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the race above really races: with the guard reduced to a pass-through, one of the two turns fails
    on the stale e-tag and the user gets an apology (and the dialog is lost)."""

    async def pass_through(self: ConversationTurnGuard, context: Any, logic: Any) -> None:
        await logic()

    monkeypatch.setattr(ConversationTurnGuard, "on_turn", pass_through)
    racing, _ = await _race_two_ratings(azurite, channel)
    assert ERROR_MESSAGE in racing, racing


async def test_concurrent_turns_of_one_conversation_lose_no_update(azurite: Azurite, channel: ChannelStandIn) -> None:
    async with two_instances(azurite) as (gates, urls):
        conversation = f"burst-{uuid.uuid4().hex}"
        users = [EmulatorClient(url, channel.service_url, conversation_id=conversation) for url in urls]
        try:
            activities = [users[0].activity("message", "what are you?") for _ in range(12)]
            answers = await asyncio.gather(
                *(users[index % 2].post(activity) for index, activity in enumerate(activities))
            )
            assert [answer.status for answer in answers] == [201] * len(activities)
            await channel.wait_for_replies_async(conversation, len(activities), timeout=20, messages_only=True)
            replies = channel.messages(conversation)
            assert ERROR_MESSAGE not in [reply.get("text") for reply in replies], "a turn gave up (StateConflictError)"
            assert sorted(reply.get("replyToId") or "" for reply in replies) == sorted(a["id"] for a in activities)
            # Every turn's write is in the conversation's state: none overwrote another.
            stored = await gates[0].inner.read([f"emulator/conversations/{conversation}"])
            processed = stored[f"emulator/conversations/{conversation}"][PROCESSED_PROPERTY]
            assert sorted(processed) == sorted(a["id"] for a in activities)
        finally:
            for user in users:
                await user.close()


async def test_an_activity_delivered_twice_is_answered_once(azurite: Azurite, channel: ChannelStandIn) -> None:
    async with two_instances(azurite) as (gates, urls):
        conversation = f"again-{uuid.uuid4().hex}"
        users = [EmulatorClient(url, channel.service_url, conversation_id=conversation) for url in urls]
        try:
            # The channel's retry racing the original on another instance ...
            racing = users[0].activity("message", "feedback")
            for gate in gates:
                gate.armed = True
            answers = await asyncio.gather(users[0].post(racing), users[1].post(racing))
            assert [answer.status for answer in answers] == [201, 201], "both deliveries are acknowledged"
            # ... and a late retry after the answer.
            assert (await users[1].post(racing)).status == 201
            rating = users[1].activity("message", "3")
            assert (await users[1].post(rating)).status == 201
            await channel.wait_for_replies_async(conversation, 2, timeout=10, messages_only=True)
            texts = _texts(channel, conversation)
            assert len(texts) == 2, texts
            assert RATING_PROMPT in texts[0]
            assert COMMENT_PROMPT in texts[1], "the dialog went on from the one answered delivery"
        finally:
            for user in users:
                await user.close()
