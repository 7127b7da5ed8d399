"""A rating becomes an evaluation of the answer it rates; a slow model's answer arrives after the turn, proactively."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.model_standin import ModelStandIn
from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn

QUESTION = "Which colour is the sky on Mars at noon?"


@pytest.fixture
def model() -> Iterator[ModelStandIn]:
    with ModelStandIn() as standin:
        yield standin


def model_env(model: ModelStandIn, **extra: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": model.openai_base_url, "OPENAI_API_KEY": "k", "OPENAI_MODEL": "gpt-4o-mini", **extra}


@pytest.fixture
async def genai_bot(
    model: ModelStandIn, ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    env = model_env(model, BOT_MODEL_PROACTIVE_AFTER_SECONDS="0.3")
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
