"""A real Emulator-protocol conversation with the real app, and what reaches Prometheus and Application Insights."""

from __future__ import annotations

import json
from typing import Any

from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn


def _texts(replies: list[dict[str, Any]]) -> list[str]:
    return [reply.get("text") or "" for reply in replies if reply.get("type") == "message"]


def _turn_trace(replies: list[dict[str, Any]]) -> dict[str, Any]:
    traces = [r for r in replies if r.get("type") == "trace" and r.get("name") == catalog.TRACE_ACTIVITY_NAME]
    assert traces, f"no turn trace activity among {replies}"
    return traces[-1]["value"]


async def _ask(emulator: EmulatorClient, channel: ChannelStandIn, text: str) -> list[dict[str, Any]]:
    """Send a message, wait for the reply POSTs of this turn (ending with the turn's trace activity)."""
    before = len(channel.replies(emulator.conversation_id))
    response = await emulator.send(text)
    assert response.status == 201, response
    replies = await channel.wait_for_replies_async(emulator.conversation_id, before + 2, timeout=10)
    new = replies[before:]
    await channel.wait_for_replies_async(emulator.conversation_id, before + len(new), timeout=10)
    return channel.replies(emulator.conversation_id)[before:]


async def test_a_whole_conversation_is_answered_and_counted(
    bot: RunningBot, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        update = await emulator.conversation_update()
        assert update.status == 201
        welcome = await channel.wait_for_replies_async(emulator.conversation_id, 2, timeout=10)
        assert any("help" in text.lower() for text in _texts(welcome)), welcome

        answer = await _ask(emulator, channel, "how do I find a turn in application insights?")
        assert "operation_Id" in " ".join(_texts(answer))

        fallback = await _ask(emulator, channel, "banana spaceship tuesday")
        assert "help" in " ".join(_texts(fallback)).lower()

        await _ask(emulator, channel, "feedback")
        reprompt = await _ask(emulator, channel, "seven")
        assert any("1" in text and "5" in text for text in _texts(reprompt)), reprompt
        await _ask(emulator, channel, "4")
        thanks = await _ask(emulator, channel, "skip")
        assert "thank" in " ".join(_texts(thanks)).lower()

        await _ask(emulator, channel, "survey")
        cancelled = await _ask(emulator, channel, "cancel")
        assert "cancel" in " ".join(_texts(cancelled)).lower()

    turns = 9  # conversationUpdate + 8 messages
    bot.flush()
    assert await bot.total(catalog.TURNS) == turns
    assert await bot.total("bot_turn_duration_seconds_count") == turns
    assert await bot.total("bot_messages_received_total") == turns - 1
    assert await bot.total(catalog.TURNS, bot_intent="welcome") == 1
    assert await bot.total(catalog.TURNS, bot_intent="knowledge") == 1
    assert await bot.total(catalog.TURNS, bot_intent="fallback") == 1
    assert await bot.total("bot_knowledge_answers_total") == 1
    assert await bot.total("bot_knowledge_fallbacks_total") == 1
    assert await bot.total("bot_dialogs_started_total") == 2
    assert await bot.total("bot_dialogs_completed_total") == 1
    assert await bot.total("bot_dialogs_cancelled_total") == 1
    assert await bot.total("http_server_request_duration_seconds_count", http_route="/api/messages") == turns
    assert await bot.total("bot_channel_reply_duration_seconds_count") >= turns
    assert await bot.total("bot_conversations_active") == 1

    await ingestion.wait_for_async(lambda envs: len(_of(envs, "RequestData")) >= turns)
    assert len(ingestion.of_type("RequestData")) == turns
    kinds = {envelope["data"]["baseType"] for envelope in ingestion.envelopes}
    assert {"RequestData", "RemoteDependencyData", "MessageData", "EventData", "MetricData"} <= kinds
    events = {e["data"]["baseData"]["name"] for e in ingestion.of_type("EventData")}
    assert {"BotMessageReceived", "BotMessageSend", "WaterfallStart", "WaterfallStep", "WaterfallComplete"} <= events
    assert {"WaterfallCancel", "KnowledgeAnswer", "KnowledgeFallback"} <= events


def _of(envelopes: list[dict[str, Any]], base_type: str) -> list[dict[str, Any]]:
    return [e for e in envelopes if e.get("data", {}).get("baseType") == base_type]


async def test_every_envelope_of_a_turn_carries_the_operation_id_the_emulator_shows(
    bot: RunningBot, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        await emulator.conversation_update()
        await channel.wait_for_replies_async(emulator.conversation_id, 2, timeout=10)
        replies = await _ask(emulator, channel, "what alerts exist?")
    operation_id = _turn_trace(replies)["operationId"]
    assert len(operation_id) == 32
    assert _turn_trace(replies)["sampled"] is True
    bot.flush()
    await ingestion.wait_for_async(
        lambda envs: any(_operation(e) == operation_id for e in _of(envs, "RequestData")), message="the turn's Request"
    )
    turn = [e for e in ingestion.envelopes if _operation(e) == operation_id]
    kinds = {e["data"]["baseType"] for e in turn}
    assert {"RequestData", "RemoteDependencyData", "EventData", "MessageData"} <= kinds, kinds
    request = next(e for e in turn if e["data"]["baseType"] == "RequestData")
    dimensions = request["data"]["baseData"]["properties"]
    assert dimensions[catalog.CHANNEL] == "emulator"
    assert dimensions[catalog.INTENT] == "knowledge"
    assert dimensions[catalog.OUTCOME] == "success"
    assert request["data"]["baseData"]["name"] == catalog.SPAN_MESSAGES_REQUEST
    assert request["tags"]["ai.cloud.roleInstance"] == bot.telemetry.config.service_instance_id
    # The reply to the channel is a dependency of that request, and the turn's events hang off it too.
    dependency = next(e for e in turn if e["data"]["baseType"] == "RemoteDependencyData")
    assert "/v3/conversations/{conversationId}/activities" in dependency["data"]["baseData"]["data"]
    assert dependency["tags"]["ai.operation.parentId"] == request["data"]["baseData"]["id"]
    received = [e for e in turn if e["data"]["baseType"] == "EventData"]
    assert {e["data"]["baseData"]["name"] for e in received} >= {"BotMessageReceived", "BotMessageSend"}


def _operation(envelope: dict[str, Any]) -> str | None:
    return envelope.get("tags", {}).get("ai.operation.id")


async def test_an_incoming_traceparent_continues_the_callers_trace(
    bot: RunningBot, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies("help", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert response.status == 200
    assert _turn_trace(response.body["activities"])["traceId"] == trace_id
    bot.flush()
    await ingestion.wait_for_async(lambda envs: any(_operation(e) == trace_id for e in _of(envs, "RequestData")))
    request = next(e for e in ingestion.of_type("RequestData") if _operation(e) == trace_id)
    assert request["tags"]["ai.operation.parentId"] == parent_id


async def test_expect_replies_answers_200_with_the_replies_in_the_body(
    bot: RunningBot, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies("what can you do?")
    assert response.status == 200, response
    texts = _texts(response.body["activities"])
    assert texts[0]
    assert channel.replies(emulator.conversation_id) == []  # nothing went to the serviceUrl


async def test_a_failing_turn_apologises_shows_the_error_and_is_recorded(
    bot: RunningBot, channel: ChannelStandIn, ingestion: IngestionStandIn
) -> None:
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        response = await emulator.send("/fail")
        assert response.status == 201
        replies = await channel.wait_for_replies_async(emulator.conversation_id, 3, timeout=10)
        assert any("went wrong" in text for text in _texts(replies))
        error_traces = [r for r in replies if r.get("type") == "trace" and r.get("label") == "TurnError"]
        assert "SimulatedFailure" in error_traces[0]["value"]
        assert _turn_trace(replies)["outcome"] == "error"

        after = await emulator.expect_replies("help")  # the bot keeps working
        assert after.status == 200
    bot.flush()
    assert await bot.total(catalog.ERRORS, error_type="bot.bot.SimulatedFailure") == 1
    assert await bot.total(catalog.TURNS, bot_turn_outcome="error") == 1
    await ingestion.wait_for_async(lambda envs: bool(_of(envs, "ExceptionData")))
    exception = ingestion.of_type("ExceptionData")[0]["data"]["baseData"]["exceptions"][0]
    assert exception["typeName"].endswith("SimulatedFailure")
    await ingestion.wait_for_async(lambda envs: len(_of(envs, "RequestData")) >= 2)
    outcomes = [e["data"]["baseData"]["properties"].get(catalog.OUTCOME) for e in ingestion.of_type("RequestData")]
    assert sorted(outcomes) == ["error", "success"]


PII = [
    "jane.doe@contoso.example",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "203.0.113.77",
    "123-45-6789",
]


async def test_personal_data_in_messages_never_reaches_telemetry(
    bot: RunningBot, channel: ChannelStandIn, ingestion: IngestionStandIn, capfd: Any
) -> None:
    async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        for value in PII:
            response = await emulator.expect_replies(f"my details are {value}, what can you do?")
            assert response.status == 200
    bot.flush()
    await ingestion.wait_for_async(lambda envs: len(_of(envs, "RequestData")) >= len(PII))
    exported = json.dumps(ingestion.envelopes) + await bot.scrape()
    exported += "".join(json.dumps(dict(s.attributes or {})) + str(s.events) for s in bot.spans.get_finished_spans())
    console = capfd.readouterr()
    assert "UserMessage: my details are [EMAIL]" in console.err  # the seed's log lines, redacted
    exported += console.out + console.err
    # Text export is on in this test, so the redacted text is there ...
    assert "[EMAIL]" in exported
    assert "[CARD]" in exported
    # ... but none of the identifiers.
    for value in PII:
        assert value not in exported, value


async def test_the_emulator_is_told_when_a_turns_trace_was_not_kept(azure_sdk_offline: None) -> None:
    async with (
        running_bot({"OTEL_TRACES_SAMPLER": "always_off"}) as bot,
        EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator,
    ):
        reply = await emulator.expect_replies("help")
    assert _turn_trace(reply.body["activities"])["sampled"] is False
