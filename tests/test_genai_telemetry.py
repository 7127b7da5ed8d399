"""GenAI telemetry of model-answered turns, checked where people read it: the spans before export, the real
Prometheus exposition of /metrics and what the Application Insights ingestion stand-in receives."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from loadtest.model_standin import ModelStandIn, Scripted
from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn

QUESTION = "Which colour is the sky on Mars at noon?"
SCOPE_LABELS = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


@pytest.fixture
async def genai_bot(
    model: ModelStandIn, ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    async with running_bot(
        model.bot_env(), connection_string=ingestion.connection_string, storage=tmp_path / "ai"
    ) as bot:
        yield bot


def chat_spans(bot: RunningBot) -> list[Any]:
    return [span for span in bot.spans.get_finished_spans() if span.name == "chat gpt-4o-mini"]


def label_name(attribute: str) -> str:
    return attribute.replace(".", "_")


def dimensions(envelope: dict[str, Any]) -> dict[str, Any]:
    return envelope["data"]["baseData"].get("properties") or {}


async def test_a_model_answer_is_a_chat_client_span_inside_the_turn(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies(QUESTION)
    assert response.status == 200
    genai_bot.flush()
    (span,) = chat_spans(genai_bot)
    turn = next(s for s in genai_bot.spans.get_finished_spans() if s.name == catalog.SPAN_MESSAGES_REQUEST)
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == turn.context.span_id
    attributes = dict(span.attributes or {})
    turn_attributes = dict(turn.attributes or {})
    served_in, served_out = model.served_tokens()
    assert attributes[catalog.GEN_AI_OPERATION_NAME] == "chat"
    assert attributes[catalog.GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[catalog.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[catalog.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert str(attributes[catalog.GEN_AI_RESPONSE_ID]).startswith("chatcmpl-")
    assert attributes[catalog.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert (attributes[catalog.GEN_AI_USAGE_INPUT_TOKENS], attributes[catalog.GEN_AI_USAGE_OUTPUT_TOKENS]) == (
        served_in,
        served_out,
    )
    assert attributes[catalog.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[catalog.SERVER_PORT] == model.port
    # The conversation's keyed hash, the same value the turn carries; never the channel's id.
    assert attributes[catalog.GEN_AI_CONVERSATION_ID] == turn_attributes[catalog.CONVERSATION_HASH]
    assert attributes[catalog.GEN_AI_CONVERSATION_ID] != emulator.conversation_id
    assert catalog.GEN_AI_INPUT_MESSAGES not in attributes
    assert catalog.GEN_AI_OUTPUT_MESSAGES not in attributes
    assert turn_attributes[catalog.ANSWER_SOURCE] == "model"
    assert turn_attributes[catalog.INTENT] == "model"

    # Application Insights: a dependency in the turn's operation, with the GenAI attributes as dimensions.
    dependencies = await ingestion.wait_for_async(
        lambda _: [e for e in ingestion.of_type("RemoteDependencyData") if e["data"]["baseData"]["name"] == span.name]
    )
    (dependency,) = dependencies
    assert dependency["tags"]["ai.operation.id"] == format(turn.context.trace_id, "032x")
    assert dimensions(dependency)[catalog.GEN_AI_USAGE_OUTPUT_TOKENS] == str(served_out)
    assert dimensions(dependency)[catalog.GEN_AI_CONVERSATION_ID] == attributes[catalog.GEN_AI_CONVERSATION_ID]


async def test_genai_metrics_are_exposed_under_their_catalog_names_with_bounded_labels(
    genai_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    model.script("One.", Scripted(status=429, retry_after=20), "Three words here.")
    async with EmulatorClient(genai_bot.messages_url, channel.service_url) as emulator:
        for number in range(3):
            await emulator.expect_replies(f"{QUESTION} ({number})")
        await emulator.expect_replies("what are you?")  # the knowledge base's
    served_in, served_out = model.served_tokens()
    bot = genai_bot
    for metric in catalog.GENAI_METRICS:
        if metric in (catalog.ANSWER_RATINGS, catalog.DEFERRED_ANSWERS):
            continue  # tests/test_genai_flow.py
        suffixes = ("_bucket", "_sum", "_count") if metric.instrument is catalog.Instrument.HISTOGRAM else ("",)
        for suffix in suffixes:
            samples = await bot.samples(metric.prometheus_name + suffix)
            assert samples, f"{metric.prometheus_name}{suffix} is not exposed"
            allowed = (
                {label_name(a) for a in metric.attributes} | SCOPE_LABELS | ({"le"} if suffix == "_bucket" else set())
            )
            for labels, _ in samples:
                assert set(labels) <= allowed, (metric.name, labels)
    tokens = catalog.GENAI_TOKEN_USAGE.prometheus_name + "_sum"
    assert await bot.total(tokens, gen_ai_token_type="input") == served_in
    assert await bot.total(tokens, gen_ai_token_type="output") == served_out
    duration = catalog.GENAI_OPERATION_DURATION.prometheus_name + "_count"
    assert await bot.total(duration) == 3
    assert await bot.total(duration, error_type="429") == 1
    assert await bot.total(duration, gen_ai_response_model="gpt-4o-mini-2024-07-18") == 2
    ttft = catalog.GENAI_TIME_TO_FIRST_CHUNK.prometheus_name + "_count"
    assert await bot.total(ttft) == 2
    answers = catalog.ANSWERS.prometheus_name
    assert await bot.total(answers, bot_answer_source="model") == 2
    assert await bot.total(answers, bot_answer_source="fallback") == 1
    assert await bot.total(answers, bot_answer_source="knowledge") == 1

    # The 429 on its span: error status and error.type, which is what the 429 ratio counts.
    bot.flush()
    failed = [s for s in chat_spans(bot) if s.status.status_code is StatusCode.ERROR]
    assert [s.attributes[catalog.ERROR_TYPE] for s in failed] == ["429"]

    # Application Insights gets the same token totals as metrics (sum of the histogram).

    def token_sums(envelopes: list[dict[str, Any]]) -> dict[str, float] | None:
        sums: dict[str, float] = {}
        for envelope in envelopes:
            for point in (
                envelope["data"]["baseData"].get("metrics", []) if "metrics" in envelope["data"]["baseData"] else []
            ):
                if point["name"] == catalog.GENAI_TOKEN_USAGE.name:
                    kind = dimensions(envelope)[catalog.GEN_AI_TOKEN_TYPE]
                    sums[kind] = sums.get(kind, 0.0) + point["value"]
        return sums if sums == {"input": served_in, "output": served_out} else None

    await ingestion.wait_for_async(lambda envelopes: token_sums(envelopes), message="token metrics")

    # What the Azure model alerts read (infra/azure/alerts/model-*.kql): the calls of each
    # gen_ai.client.operation.duration point (its count, the workspace's ItemCount) by error.type, the 429 among them.

    def call_counts(envelopes: list[dict[str, Any]]) -> dict[str, int] | None:
        counts: dict[str, int] = {}
        for envelope in envelopes:
            for point in envelope["data"]["baseData"].get("metrics", []):
                if point["name"] == catalog.GENAI_OPERATION_DURATION.name:
                    kind = dimensions(envelope).get(catalog.ERROR_TYPE, "")
                    counts[kind] = counts.get(kind, 0) + point["count"]
        return counts if counts == {"": 2, "429": 1} else None

    await ingestion.wait_for_async(lambda envelopes: call_counts(envelopes), message="model calls by error.type")


async def test_content_is_recorded_only_when_opted_in_and_then_redacted(
    model: ModelStandIn, channel: ChannelStandIn, ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> None:
    env = model.bot_env(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    model.script("Write to ops@example.com about it.")
    async with (
        running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path / "ai") as bot,
        EmulatorClient(bot.messages_url, channel.service_url) as emulator,
    ):
        await emulator.expect_replies("Can jane.doe@example.org get a reply on Mars?")
        bot.flush()
        (span,) = chat_spans(bot)
    prompt = json.loads(str(span.attributes[catalog.GEN_AI_INPUT_MESSAGES]))
    answer = json.loads(str(span.attributes[catalog.GEN_AI_OUTPUT_MESSAGES]))
    assert [m["role"] for m in prompt] == ["user"]  # the system prompt is the fixed knowledge base
    assert prompt[0]["parts"][0]["content"] == "Can [EMAIL] get a reply on Mars?"
    assert answer[0]["parts"][0]["content"] == "Write to [EMAIL] about it."
    assert answer[0]["finish_reason"] == "stop"
    exported = json.dumps(ingestion.envelopes)
    assert "jane.doe@example.org" not in exported
    assert "ops@example.com" not in exported


def test_recorded_content_keeps_the_newest_messages_within_the_redaction_limit() -> None:
    from telemetry.genai import MAX_CONTENT_JSON, messages_json

    messages = [{"role": "system", "content": "s" * 9000}] + [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"message {n} " + "x" * 1500} for n in range(8)
    ]
    recorded = messages_json(messages)
    assert len(recorded) <= MAX_CONTENT_JSON
    kept = json.loads(recorded)
    assert kept
    assert kept[-1]["parts"][0]["content"].startswith("message 7 ")
    assert all(m["role"] != "system" for m in kept)
