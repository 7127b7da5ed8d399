"""A rating becomes an evaluation of the answer it rates; a slow model's answer arrives after the turn, proactively."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from bot.answers.turn import UNAVAILABLE_TEXT
from bot.routes import FALLBACK_TEXT
from loadtest.model_standin import ModelStandIn, Scripted
from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async

QUESTION = "Which colour is the sky on Mars at noon?"


@pytest.fixture
async def genai_bot(
    model: ModelStandIn, ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    env = model.bot_env(BOT_MODEL_PROACTIVE_AFTER_SECONDS="0.3")
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path / "ai") as bot:
        yield bot


def evaluations(bot: RunningBot) -> list[Any]:
    return [
        data.log_record
        for data in bot.logs.get_finished_logs()
        if (data.log_record.attributes or {}).get(catalog.GEN_AI_EVALUATION_NAME) is not None
    ]


async def rate(emulator: EmulatorClient, rating: str) -> None:
    for text in ("feedback", rating, "skip"):
        response = await emulator.expect_replies(text)
        assert response.status == 200, response


async def test_a_rating_is_an_evaluation_event_in_the_trace_of_the_model_answer_it_rates(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        await emulator.expect_replies(QUESTION)
        await rate(emulator, "4")
    genai_bot.flush()
    (chat,) = [s for s in genai_bot.spans.get_finished_spans() if s.name == "chat gpt-4o-mini"]
    (record,) = evaluations(genai_bot)
    assert record.trace_id == chat.context.trace_id
    assert record.span_id == chat.context.span_id
    attributes = dict(record.attributes or {})
    assert attributes[catalog.GEN_AI_EVALUATION_NAME] == "user_rating"
    assert attributes[catalog.GEN_AI_EVALUATION_SCORE_VALUE] == 4.0
    assert attributes[catalog.GEN_AI_EVALUATION_SCORE_LABEL] == "positive"
    assert attributes[catalog.GEN_AI_RESPONSE_ID] == (chat.attributes or {})[catalog.GEN_AI_RESPONSE_ID]
    assert attributes[catalog.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[catalog.ANSWER_SOURCE] == "model"
    assert record.event_name == catalog.EVENT_EVALUATION.name

    # Application Insights: a customEvent in the answer's operation, so one query joins rating, answer and model.
    events = await ingestion.wait_for_async(
        lambda _: [
            e for e in ingestion.of_type("EventData") if e["data"]["baseData"]["name"] == "gen_ai.evaluation.result"
        ]
    )
    (event,) = events
    assert event["tags"]["ai.operation.id"] == format(chat.context.trace_id, "032x")
    assert event["data"]["baseData"]["properties"][catalog.ANSWER_SOURCE] == "model"
    rating = catalog.ANSWER_RATINGS.prometheus_name
    assert await genai_bot.total(f"{rating}_sum", bot_answer_source="model") == 4
    assert await genai_bot.total(f"{rating}_count", gen_ai_request_model="gpt-4o-mini-2024-07-18") == 1


async def test_a_rating_of_a_knowledge_answer_points_at_that_turn(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        await emulator.expect_replies("what are you?")
        await rate(emulator, "2")
    genai_bot.flush()
    turns = [s for s in genai_bot.spans.get_finished_spans() if s.name == catalog.SPAN_MESSAGES_REQUEST]
    (record,) = evaluations(genai_bot)
    assert record.span_id == turns[0].context.span_id
    attributes = dict(record.attributes or {})
    assert (attributes[catalog.ANSWER_SOURCE], attributes[catalog.GEN_AI_EVALUATION_SCORE_LABEL]) == (
        "knowledge",
        "negative",
    )
    assert catalog.GEN_AI_RESPONSE_ID not in attributes
    assert model.requests == []


# ---- answers that outlast the channel's timeout ---------------------------------------------------------------------


def deferred_spans(bot: RunningBot) -> list[Any]:
    return [s for s in bot.spans.get_finished_spans() if s.name == catalog.GENAI_SPAN_DEFERRED]


async def counted(bot: RunningBot, outcome: str, expected: float) -> None:
    name = catalog.DEFERRED_ANSWERS.prometheus_name

    async def reached() -> bool:
        return await bot.total(name, bot_answer_delivery=outcome) == expected

    await wait_until_async(reached, message=f"{expected:g} deferred answers {outcome}")


def other_than_trace(channel: ChannelStandIn, conversation_id: str) -> list[str]:
    return [a["type"] for a in channel.replies(conversation_id) if a["type"] != "trace"]


async def test_a_late_answer_is_acknowledged_with_typing_and_delivered_proactively(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    model.hold()
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        response = await emulator.send(QUESTION)  # the channel's path: replies go to its serviceUrl
        # The HTTP request is answered while the model has not said a word.
        assert response.status == 201
        assert model.waiting == 1
        assert other_than_trace(channel, emulator.conversation_id) == ["typing"]
        model.release()
        (answer,) = await channel.wait_for_replies_async(emulator.conversation_id, 1, messages_only=True)
        assert answer["text"] == model.default_answer
        # The next question carries the late exchange as history.
        await emulator.expect_replies("And at sunset?")
    assert model.requests[-1].body["messages"][-3:-1] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": model.default_answer},
    ]
    await counted(genai_bot, "delivered", 1)
    genai_bot.flush()
    spans = genai_bot.spans.get_finished_spans()
    turn = next(s for s in spans if s.name == catalog.SPAN_MESSAGES_REQUEST)
    (span,) = deferred_spans(genai_bot)
    assert [link.context.span_id for link in span.links] == [turn.context.span_id]
    assert (span.attributes or {})[catalog.ANSWER_DELIVERY] == "delivered"
    assert (span.attributes or {})[catalog.ANSWER_SOURCE] == "model"
    chat = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert chat.parent is not None
    assert chat.parent.span_id == turn.context.span_id  # the model call belongs to the turn that asked
    assert turn.end_time is not None
    assert chat.end_time is not None
    assert turn.end_time < chat.end_time


async def test_expect_replies_has_no_later_so_the_turn_waits_for_the_model(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    model.script(Scripted(text="Worth the wait.", delay=0.6))  # past the 0.3 s threshold
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies(QUESTION)
    assert [a["type"] for a in response.body["activities"] if a["type"] != "trace"] == ["message"]
    assert response.body["activities"][0]["text"] == "Worth the wait."
    assert deferred_spans(genai_bot) == []


async def test_a_model_failing_after_the_threshold_gets_the_fallback_proactively(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    model.script(Scripted(status=500, delay=0.6))
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        assert (await emulator.send(QUESTION)).status == 201
        (answer,) = await channel.wait_for_replies_async(emulator.conversation_id, 1, messages_only=True)
    assert answer["text"] == UNAVAILABLE_TEXT
    await counted(genai_bot, "delivered", 1)
    assert await genai_bot.total(catalog.ANSWERS.prometheus_name, bot_answer_source="fallback") == 1


async def test_pending_answers_are_bounded_and_cancelled_at_shutdown(
    model: ModelStandIn, channel: ChannelStandIn, azure_sdk_offline: None
) -> None:
    env = model.bot_env(BOT_MODEL_PROACTIVE_AFTER_SECONDS="0.2", BOT_MODEL_MAX_PENDING_ANSWERS="1")
    model.hold()
    async with (
        running_bot(env) as bot,
        EmulatorClient(bot.messages_url, channel.service_url) as first,
        EmulatorClient(bot.messages_url, channel.service_url) as second,
    ):
        assert (await first.send(QUESTION)).status == 201
        # The one slot is taken: the second user gets the fallback at once instead of a wait without bound.
        assert (await second.send(QUESTION)).status == 201
        assert [m["text"] for m in channel.messages(second.conversation_id)] == [FALLBACK_TEXT]
        await counted(bot, "refused", 1)
        assert other_than_trace(channel, first.conversation_id) == ["typing"]
    # Leaving running_bot shuts the bot down with the first answer still pending.
    (cancelled,) = [s for s in deferred_spans(bot) if (s.attributes or {}).get(catalog.ANSWER_DELIVERY) == "cancelled"]
    assert cancelled.links
    assert channel.messages(first.conversation_id) == []


async def test_a_late_answer_the_channel_refuses_is_counted_as_failed(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    model.hold()
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        assert (await emulator.send(QUESTION)).status == 201
        channel.fail(emulator.conversation_id, 403)  # e.g. the user removed the bot meanwhile
        model.release()
        await counted(genai_bot, "failed", 1)
    assert channel.messages(emulator.conversation_id) == []
    genai_bot.flush()
    (span,) = deferred_spans(genai_bot)
    assert (span.attributes or {})[catalog.ANSWER_DELIVERY] == "failed"
    assert span.status.status_code is StatusCode.ERROR
