"""The shape of the signals, read from the SDK's in-memory exporters beside the real ones."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import types
from typing import Any

import pytest
from azure.monitor.opentelemetry.exporter.export.trace import _rate_limited_sampling
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from telemetry import catalog
from telemetry.privacy import Hasher
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn


def _server_spans(bot: RunningBot) -> list[ReadableSpan]:
    return [s for s in bot.spans.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_a_turn_is_one_server_span_with_its_reply_as_a_client_child(
    bot: RunningBot, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        await emulator.send("what metrics are there?")
        await channel.wait_for_replies_async(emulator.conversation_id, 2)
    bot.flush()
    (server,) = _server_spans(bot)
    attributes = dict(server.attributes or {})
    assert server.name == catalog.SPAN_MESSAGES_REQUEST
    assert attributes[catalog.HTTP_ROUTE] == "/api/messages"
    assert attributes[catalog.HTTP_STATUS] == 201
    assert attributes[catalog.CHANNEL] == "emulator"
    assert attributes[catalog.ACTIVITY_TYPE] == "message"
    assert attributes[catalog.LOCALE] == "en-US"
    assert attributes[catalog.INTENT] == "knowledge"
    assert attributes[catalog.OUTCOME] == "success"
    assert attributes[catalog.REPLIES] == 1
    assert attributes[catalog.KNOWLEDGE_TOPIC]
    # Ids leave the process only as keyed hashes.
    expected_hash = Hasher(b"test-key")(emulator.conversation_id)
    assert attributes[catalog.CONVERSATION_HASH] == expected_hash
    assert attributes[catalog.ENDUSER_PSEUDO_ID] == Hasher(b"test-key")(emulator.user_id)
    assert emulator.conversation_id not in str(attributes)
    clients = [s for s in bot.spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(clients) == 2  # the answer and the Emulator trace activity
    for client in clients:
        assert client.parent is not None
        assert client.parent.span_id == server.context.span_id
        assert client.context.trace_id == server.context.trace_id
        assert emulator.conversation_id.split("|")[0] not in str(client.attributes)


async def test_dialog_steps_are_events_on_the_turn_span(bot: RunningBot) -> None:
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        for text in ("feedback", "5", "skip"):
            assert (await emulator.expect_replies(text)).status == 200
    bot.flush()
    steps = [
        dict(event.attributes or {})[catalog.DIALOG_STEP]
        for span in _server_spans(bot)
        for event in span.events
        if event.name == catalog.SPAN_EVENT_DIALOG_STEP
    ]
    assert len(steps) == 3
    assert len(set(steps)) == 3
    dialogs = {dict(s.attributes or {}).get(catalog.DIALOG_ID) for s in _server_spans(bot)}
    assert dialogs == {"FeedbackWaterfall"}


async def test_an_exception_is_recorded_on_the_turn_span_with_error_status(bot: RunningBot) -> None:
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        assert (await emulator.expect_replies("/fail")).status == 200
    bot.flush()
    (server,) = _server_spans(bot)
    assert server.status.status_code is StatusCode.ERROR
    assert dict(server.attributes or {})[catalog.ERROR_TYPE] == "bot.bot.SimulatedFailure"
    assert [event.name for event in server.events] == ["exception"]
    # The apology belongs to the failed turn: one of its replies, in its duration, sent within its span.
    assert dict(server.attributes or {})[catalog.REPLIES] == 1
    assert await bot.total("bot_turn_duration_seconds_count", bot_turn_outcome="error") == 1


async def test_log_records_are_correlated_exported_once_and_sdk_logs_never(bot: RunningBot, capfd: Any) -> None:
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        assert (await emulator.expect_replies("help")).status == 200
    logging.getLogger("azure.core.pipeline").warning("an SDK record that must stay local")
    logging.getLogger("bot.example").info("a record from the bot")
    bot.flush()
    (server,) = _server_spans(bot)
    records = [data.log_record for data in bot.logs.get_finished_logs()]
    bodies = [str(record.body) for record in records]
    assert "an SDK record that must stay local" not in bodies
    assert bodies.count("a record from the bot") == 1
    summary = [r for r in records if str(r.body).startswith("turn message on emulator")]
    assert len(summary) == 1
    assert summary[0].trace_id == server.context.trace_id
    assert summary[0].span_id == server.context.span_id
    events = [r for r in records if (r.attributes or {}).get("microsoft.custom_event.name")]
    assert {r.body for r in events} >= {catalog.EVENT_MESSAGE_RECEIVED.name, catalog.EVENT_MESSAGE_SEND.name}
    assert all(r.trace_id == server.context.trace_id for r in events)
    console = capfd.readouterr().err
    trace_id = format(server.context.trace_id, "032x")
    assert f"[trace={trace_id} span={format(server.context.span_id, '016x')}] turn message on emulator" in console


async def test_metrics_stay_exact_when_traces_are_not_sampled(azure_sdk_offline: None) -> None:
    async with running_bot({"OTEL_TRACES_SAMPLER": "always_off"}) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            for _ in range(5):
                assert (await emulator.expect_replies("help")).status == 200
        bot.flush()
        assert bot.spans.get_finished_spans() == ()
        assert await bot.total(catalog.TURNS) == 5
        assert await bot.total("http_server_request_duration_seconds_count") == 5


async def test_sampled_requests_tell_application_insights_how_many_turns_each_stands_for(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    env = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    async with running_bot(env, connection_string=ingestion.connection_string) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            for _ in range(40):
                assert (await emulator.expect_replies("help")).status == 200
        bot.flush()
        assert await bot.total(catalog.TURNS) == 40
    sampled = len(bot.spans.get_finished_spans())
    assert 0 < sampled < 40
    requests = await ingestion.wait_for_async(lambda _: len(ingestion.of_type("RequestData")) == sampled)
    assert requests
    # Application Insights counts each Request as 100 / sampleRate turns.
    assert {envelope["sampleRate"] for envelope in ingestion.of_type("RequestData")} == {50.0}


async def test_the_rate_limited_sampler_caps_traces_while_every_turn_is_counted(
    azure_sdk_offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sampler's clock advances 10 ms a turn (100 turns/s, ten times the cap) however fast this machine runs.
    turns, per_second, step_ns = 300, 10, 10_000_000
    clock = {"now": 0}
    monkeypatch.setattr(_rate_limited_sampling, "time", types.SimpleNamespace(time_ns=lambda: clock["now"]))
    env = {"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": str(per_second)}
    async with running_bot(env) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            for _ in range(turns):
                clock["now"] += step_ns
                assert (await emulator.expect_replies("help")).status == 200
        bot.flush()
        assert await bot.total(catalog.TURNS) == turns
    spans = bot.spans.get_finished_spans()
    elapsed = turns * step_ns / 1e9
    # About `per_second` traces a second; the limit adapts within ~0.1 s, hence the slack.
    assert 0 < len(spans) <= 2 * per_second * elapsed + 5, (len(spans), elapsed)
    assert len(spans) < turns
    rates = [(span.attributes or {}).get("_MS.sampleRate") for span in spans]
    assert all(isinstance(rate, float) and rate < 100.0 for rate in rates[1:]), rates


async def test_a_turn_kept_by_the_rate_limited_sampler_keeps_its_replies(
    azure_sdk_offline: None, channel: ChannelStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = 120
    clock = {"now": 0}  # the sampler sees 100 turns a second, five times the cap, however fast this machine runs
    monkeypatch.setattr(_rate_limited_sampling, "time", types.SimpleNamespace(time_ns=lambda: clock["now"]))
    env = {"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": "20"}
    async with running_bot(env) as bot:
        async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
            for sent in range(1, turns + 1):
                clock["now"] += 10_000_000
                assert (await emulator.send("what metrics are there?")).status == 201
                await channel.wait_for_replies_async(emulator.conversation_id, 2 * sent)
        bot.flush()
    spans = bot.spans.get_finished_spans()
    servers = {span.context.span_id: span for span in spans if span.kind is SpanKind.SERVER}
    clients = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert 0 < len(servers) < turns
    # The answer and the Emulator trace activity of every kept turn, each with its turn's sample rate.
    assert len(clients) == 2 * len(servers)
    for client in clients:
        assert client.parent is not None
        parent = servers[client.parent.span_id]
        assert (client.attributes or {}).get("_MS.sampleRate") == (parent.attributes or {}).get("_MS.sampleRate")


async def test_azure_custom_metrics_carry_the_same_numbers_as_prometheus(
    bot: RunningBot, ingestion: IngestionStandIn
) -> None:
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        for text in ("help", "what can you do?", "banana spaceship"):
            assert (await emulator.expect_replies(text)).status == 200
    bot.flush()

    def azure_sum(name: str) -> float:
        return sum(
            metric["value"]
            for envelope in ingestion.of_type("MetricData")
            for metric in envelope["data"]["baseData"]["metrics"]
            if metric["name"] == name
        )

    await ingestion.wait_for_async(lambda _: azure_sum(catalog.TURNS.name) >= 3)
    assert azure_sum(catalog.TURNS.name) == await bot.total(catalog.TURNS) == 3
    assert azure_sum(catalog.KNOWLEDGE_FALLBACKS.name) == await bot.total("bot_knowledge_fallbacks_total") == 1
    assert ingestion.other_requests == []  # no live metrics, no other calls home


def test_importing_the_packages_configures_nothing() -> None:
    code = (
        "import logging, opentelemetry.trace as t, opentelemetry.metrics as m\n"
        "import telemetry.setup, telemetry.wiring, telemetry.botframework, bot.app\n"
        "assert type(t.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
        "assert type(m.get_meter_provider()).__name__ == '_ProxyMeterProvider'\n"
        "assert logging.getLogger().handlers == [] and logging.getLogger('bot').handlers == []\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert importlib.import_module("telemetry.catalog").METRICS


def test_offline_storage_stays_in_its_folder_whatever_the_service_name() -> None:
    import os
    import tempfile

    from telemetry.config import TelemetryConfig
    from telemetry.setup import storage_directories

    root = os.path.realpath(tempfile.gettempdir())
    for name in ("../../etc", "..", "a/../../b", "/abs", "x\\..\\y", "."):
        for folder in storage_directories(TelemetryConfig(service_name=name)).values():
            resolved = os.path.realpath(folder)
            assert resolved.startswith(root + os.sep), (name, folder)
            assert os.path.basename(os.path.dirname(os.path.dirname(resolved))).startswith("otel-chatbot-")
