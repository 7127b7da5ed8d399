"""What the Azure portal shows is what the users did.

A scripted load runs through the real bot, with its Azure Monitor export going to the ingestion stand-in and its
replies to the channel stand-in. From the envelopes ingestion received, `AzureViews` computes what each view the
template and docs rely on would show, by Microsoft's documented semantics:

- standard metrics (Server requests, Failed requests, Server response time; the metric alerts on `requests/duration`
  and `requests/failed`): the SDK's pre-aggregated `requests/duration` (milliseconds), plus what ingestion extracts
  from every request or dependency item not marked `_MS.ProcessedByMetricExtractors`
  (https://learn.microsoft.com/azure/azure-monitor/app/pre-aggregated-metrics-log-metrics);
- log-based counts weighted by `itemCount` = 100 / `sampleRate`
  (https://learn.microsoft.com/azure/azure-monitor/app/sampling-classic-api);
- Bot analytics: distinct `user_Id` and `session_Id` of customEvents, and the Bot Framework event names
  (https://learn.microsoft.com/azure/bot-service/bot-builder-telemetry-analytics-queries).

At 50 % sampling each user has two conversations with the same script; the callers' trace ids keep the even turns of
one and the odd turns of the other, so every estimate is exact and can be compared with what was sent.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass

import pytest

from tests.support.azure_views import AzureViews, duration_ms
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import Envelope, IngestionStandIn

SCRIPT = ("help", "what can you do?", "banana spaceship", "feedback", "4", "a fine bot", "/fail")
FAILING = {"/fail"}  # turns that raise: the user gets an apology, Application Insights a failed request
USERS = 3
CONVERSATIONS_PER_USER = 2


@dataclass
class Load:
    """What the load generator did, counted on its side."""

    requests: int = 0
    failed: int = 0
    users: int = 0
    conversations: int = 0
    replies_posted: int = 0  # every activity the channel received, trace activities included
    messages_sent: int = 0  # the non-trace ones


def _traceparent(kept: bool, serial: int) -> str:
    """A caller's trace whose id `traceidratio` at 0.5 keeps (low 64 bits below 2**63) or drops."""
    low = serial if kept else (1 << 63) + serial
    return f"00-{serial + 1:016x}{low:016x}-{serial + 1:016x}-01"


async def _run_load(bot: RunningBot, channel: ChannelStandIn, *, halve: bool) -> Load:
    load = Load(users=USERS, conversations=USERS * CONVERSATIONS_PER_USER)
    serial = itertools.count()
    for user in range(USERS):
        for conversation in range(CONVERSATIONS_PER_USER):
            async with EmulatorClient(bot.messages_url, channel.service_url, user_id=f"user-{user}") as emulator:
                for position, text in enumerate(SCRIPT):
                    headers = {}
                    if halve:
                        headers["traceparent"] = _traceparent((position + conversation) % 2 == 0, next(serial))
                    assert (await emulator.send(text, headers)).status == 201
                    load.requests += 1
                    load.failed += text in FAILING
                replies = channel.replies(emulator.conversation_id)
                load.replies_posted += len(replies)
                load.messages_sent += sum(1 for activity in replies if activity.get("type") != "trace")
    return load


async def _received(bot: RunningBot, ingestion: IngestionStandIn, load: Load) -> AzureViews:
    bot.flush()

    def complete(envelopes: list[Envelope]) -> AzureViews | None:
        views = AzureViews.of(envelopes)
        return views if views.server_requests >= load.requests and views.events else None

    return await ingestion.wait_for_async(complete, message="the load's telemetry")


@pytest.mark.parametrize("sampled", [False, True], ids=["all-traced", "half-traced"])
async def test_every_azure_view_shows_what_the_load_did(
    ingestion: IngestionStandIn, channel: ChannelStandIn, azure_sdk_offline: None, sampled: bool
) -> None:
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"} if sampled else {}
    async with running_bot(env, connection_string=ingestion.connection_string) as bot:
        load = await _run_load(bot, channel, halve=sampled)
        views = await _received(bot, ingestion, load)
        prometheus_requests = await bot.total("http_server_request_duration_seconds_count")
        prometheus_seconds = await bot.total("http_server_request_duration_seconds_sum")
    if sampled:  # the load really was sampled: half the request items, each standing for two
        requests = ingestion.of_type("RequestData")
        assert len(requests) == load.requests // 2
        assert {item.get("sampleRate") for item in requests} == {50.0}

    # Standard metrics: Server requests, Failed requests, Server response time (ms), each counted once.
    assert views.server_requests == load.requests == prometheus_requests
    assert views.failed_requests == load.failed
    assert views.server_response_time_ms == pytest.approx(prometheus_seconds * 1000 / prometheus_requests)
    mean_item_ms = sum(duration_ms(r["data"]["baseData"]["duration"]) for r in requests_of(ingestion)) / len(
        requests_of(ingestion)
    )
    # The same unit as the items: seconds read as milliseconds would be 1000x off. Wide, as the items of a sampled load
    # are half of the requests and one stall of a busy machine moves a mean of 42.
    assert mean_item_ms / 30 < views.server_response_time_ms < mean_item_ms * 30
    # Dependency calls (ingestion extracts them from the reply items) and exceptions, weighted.
    assert views.dependency_calls == load.replies_posted
    assert views.exceptions == load.failed
    # Bot analytics.
    assert views.events["BotMessageReceived"] == load.requests
    assert views.events["BotMessageSend"] == load.messages_sent
    assert views.events["WaterfallStart"] == views.events["WaterfallComplete"] == load.conversations
    assert len(views.users) == load.users
    assert len(views.sessions) == load.conversations
    operation_names = {tags.get("ai.operation.name") for tags in views.event_tags}
    assert operation_names == {"POST /api/messages"}


def requests_of(ingestion: IngestionStandIn) -> list[Envelope]:
    return ingestion.of_type("RequestData")


async def test_every_item_of_a_turn_carries_its_operation_user_session_and_weight(
    ingestion: IngestionStandIn, channel: ChannelStandIn, azure_sdk_offline: None
) -> None:
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    async with running_bot(env, connection_string=ingestion.connection_string) as bot:
        async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
            for serial, text in enumerate(("feedback", "/fail")):
                assert (await emulator.send(text, {"traceparent": _traceparent(True, serial)})).status == 201
        bot.flush()
        (request, failed) = await ingestion.wait_for_async(
            lambda _: requests if len(requests := requests_of(ingestion)) == 2 else None
        )
    for turn in (request, failed):
        operation = turn["tags"]["ai.operation.id"]
        items = [e for e in ingestion.envelopes if e["tags"].get("ai.operation.id") == operation]
        kinds = collections.Counter(item["data"]["baseType"] for item in items)
        assert min(kinds["RemoteDependencyData"], kinds["EventData"], kinds["MessageData"]) >= 1, kinds
        for item in items:
            tags, kind = item["tags"], item["data"]["baseType"]
            assert tags["ai.operation.name"] == "POST /api/messages", (kind, tags)
            assert tags["ai.user.id"] == turn["tags"]["ai.user.id"], kind
            assert tags["ai.session.id"] == turn["tags"]["ai.session.id"], kind
            properties = item["data"]["baseData"].get("properties") or {}
            assert not {"ai.operation.name", "_MS.sampleRate"} & set(properties), kind
            # Kept with the turn, so weighted as it is: all but the log lines written for every turn.
            every_turn = kind == "MessageData" and properties.get("logger_name", "telemetry.turn") != "telemetry.turn"
            assert item.get("sampleRate") == (None if every_turn else 50.0), (kind, item["data"]["baseData"])
    failed_kinds = {
        e["data"]["baseType"]
        for e in ingestion.envelopes
        if e["tags"].get("ai.operation.id") == failed["tags"]["ai.operation.id"]
    }
    assert "ExceptionData" in failed_kinds
    # A log line written for every turn whatever the sampler keeps itemCount 1: its turn may not be in the sample.
    error_lines = [
        e
        for e in ingestion.of_type("MessageData")
        if (e["data"]["baseData"].get("properties") or {}).get("logger_name") == "bot.adapter"
    ]
    assert error_lines
    assert all("sampleRate" not in line for line in error_lines)


async def test_slow_turns_raise_the_response_time_the_alert_reads_above_its_threshold(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    """The template's alert fires when the average of requests/duration exceeds 2000 (milliseconds)."""
    env = {"BOT_FAULT_DELAY_RATIO": "1", "BOT_FAULT_DELAY_SECONDS": "2.1"}
    async with running_bot(env, connection_string=ingestion.connection_string) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            assert (await emulator.expect_replies("help")).status == 200
        bot.flush()
        views = await ingestion.wait_for_async(
            lambda envelopes: v if (v := AzureViews.of(envelopes)).server_requests >= 1 else None
        )
    assert views.server_requests == 1
    assert views.server_response_time_ms > 2000
