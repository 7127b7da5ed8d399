"""A conversation answered by the model through the stand-in, seen by a real Prometheus running the shipped GenAI
rules and dashboard queries, and by the Application Insights ingestion stand-in: every GenAI panel and recording rule
has data, and the tokens agree three ways (what the model served = Prometheus = Application Insights)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import tests.support.prometheus as prometheus_support
from loadtest.model_standin import ModelStandIn, Scripted
from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async
from tests.support.prometheus import PROMETHEUS_DIR, fill_grafana_variables, has_data, panel_queries, stack

DASHBOARD = Path(__file__).resolve().parents[1] / "infra" / "grafana" / "dashboards" / "genai.json"
GENAI_RULES = PROMETHEUS_DIR / "rules" / "genai.yml"
QUESTIONS = ("Which colour is the sky on Mars?", "And on Venus?", "How far is Jupiter?")


@pytest.fixture
async def genai_bot(
    model: ModelStandIn,
    ingestion: IngestionStandIn,
    azure_sdk_offline: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[RunningBot]:
    # Metrics to Application Insights every second, so the reconciliation does not wait for the 60 s default.
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1000")
    env = model.bot_env(BOT_MODEL_PROACTIVE_AFTER_SECONDS="0.3")
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path / "ai") as bot:
        yield bot


def application_insights_tokens(envelopes: list[dict[str, Any]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for envelope in envelopes:
        data = envelope.get("data", {}).get("baseData", {})
        for point in data.get("metrics", []):
            if point["name"] == catalog.GENAI_TOKEN_USAGE.name:
                kind = data["properties"][catalog.GEN_AI_TOKEN_TYPE]
                sums[kind] = sums.get(kind, 0.0) + point["value"]
    return sums


async def conversation(bot: RunningBot, channel: ChannelStandIn, model: ModelStandIn) -> None:
    """Model answers, a 429, a late answer delivered proactively, and a rating of a model answer."""
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        for question in QUESTIONS:
            await emulator.expect_replies(question)
        model.script(Scripted(status=429, retry_after=30))
        await emulator.expect_replies("Is Pluto a planet?")
        model.script(Scripted(text="Slowly, but here.", delay=0.8))
        assert (await emulator.send("Why is Mars red?")).status == 201
        await channel.wait_for_replies_async(emulator.conversation_id, 1, messages_only=True)
        await emulator.expect_replies("How old is the sun?")
        for text in ("feedback", "5", "skip"):
            await emulator.expect_replies(text)


async def test_the_model_path_in_prometheus_and_application_insights(
    genai_bot: RunningBot,
    model: ModelStandIn,
    channel: ChannelStandIn,
    ingestion: IngestionStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The shipped GenAI rules beside the others, in the stack's fast form (minutes become seconds).
    monkeypatch.setattr(prometheus_support, "RULE_FILES", (*prometheus_support.RULE_FILES, GENAI_RULES))
    records = [line.split()[-1] for line in GENAI_RULES.read_text().splitlines() if "- record:" in line]
    target = genai_bot.metrics_url.removeprefix("http://").removesuffix("/metrics")
    with stack(tmp_path, target) as (prometheus, _):
        await conversation(genai_bot, channel, model)
        # One more round so that rates over the fast windows see two scrapes with traffic between them.
        await wait_until_async(partial(has_data, prometheus, "gen_ai_client_token_usage_sum"), timeout=20)
        await conversation(genai_bot, channel, model)
        for record in records:
            if record == "chatbot:genai_tokens:increase1h":
                continue  # an increase over the fast 1 m window: checked below through the tokens themselves
            await wait_until_async(partial(has_data, prometheus, record), timeout=30, message=record)
        for title, promql in panel_queries(DASHBOARD):
            query = fill_grafana_variables(promql, "5m")
            await wait_until_async(partial(has_data, prometheus, query), timeout=30, message=f"{title}: {query}")

        # Tokens three ways: what the stand-in served, what Prometheus scraped, what Application Insights got.
        served_in, served_out = model.served_tokens()
        assert served_in > 0
        assert served_out > 0
        expected = {"input": float(served_in), "output": float(served_out)}

        async def scraped() -> bool:
            result = await asyncio.to_thread(
                prometheus.query, "sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)"
            )
            return {r["metric"]["gen_ai_token_type"]: float(r["value"][1]) for r in result} == expected

        await wait_until_async(scraped, timeout=30, message="Prometheus token sums")
    genai_bot.flush()
    await ingestion.wait_for_async(
        lambda envelopes: application_insights_tokens(envelopes) == expected, message="Application Insights tokens"
    )
    # And the rest of the conversation's telemetry arrived: chat dependencies, the evaluation, the late delivery.
    names = {e["data"]["baseData"].get("name") for e in ingestion.envelopes if "baseData" in e.get("data", {})}
    assert {"chat gpt-4o-mini", "gen_ai.evaluation.result", catalog.GENAI_SPAN_DEFERRED} <= names
