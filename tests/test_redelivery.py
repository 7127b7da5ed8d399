"""One process, its state in memory: a redelivered activity is answered once, and a turn that changes no state writes
none (the processed ids live in the process, not in the conversation state: bot/storage/turns.py)."""

from __future__ import annotations

import json
from typing import Any

from telemetry import catalog
from tests.support.botserver import running_bot
from tests.support.emulator import BotResponse, EmulatorClient


def messages(response: BotResponse) -> list[dict[str, Any]]:
    """The replies the user sees (the Emulator channel also gets a trace activity of the turn)."""
    return [a for a in (response.body or {}).get("activities", []) if a.get("type") == "message"]


STATE_WRITES = catalog.STATE_OPERATION_DURATION.prometheus_name + "_count"


async def test_a_redelivery_is_answered_once_and_a_question_writes_no_state(azure_sdk_offline: None) -> None:
    async with running_bot() as bot, EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        question = emulator.activity("message", "what can you do?", deliveryMode="expectReplies")
        first = await emulator.post(question)  # a new conversation: its first state is written
        written = await bot.total(STATE_WRITES, bot_state_operation="write")
        again = await emulator.post(question)  # the channel retries: same conversation, same activity id
        other = await emulator.post(emulator.activity("message", "what can you do?", deliveryMode="expectReplies"))
        writes = await bot.total(STATE_WRITES, bot_state_operation="write") - written
    assert first.status == again.status == other.status == 200
    assert messages(first), "the question went unanswered"
    assert not messages(again), "a redelivery was answered twice"
    assert messages(other), "a new activity of the conversation went unanswered"
    assert written > 0, "the state store's writes are not counted: this test would prove nothing"
    assert writes == 0, f"{writes} state writes for turns that changed no state"


async def test_a_failed_turn_is_answered_when_the_channel_delivers_it_again(azure_sdk_offline: None) -> None:
    async with running_bot() as bot, EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        question = emulator.activity("message", "what can you do?", deliveryMode="expectReplies")
        bot.faults.configure(error_ratio=1.0)
        failed = await emulator.post(question)
        bot.faults.configure(error_ratio=0.0)
        again = await emulator.post(question)
    assert "went wrong" in json.dumps(failed.body).lower() or failed.status >= 500, failed
    assert any("monitor" in (activity.get("text") or "").lower() for activity in again.body["activities"]), again.body
