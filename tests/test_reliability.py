"""Nothing is lost when Application Insights fails, overload is refused quickly, metrics stay bounded and guarded."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200"}


@pytest.fixture
def fast_export(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_EXPORT.items():
        monkeypatch.setenv(name, value)


async def _turns(bot: RunningBot, count: int, channel_id: str = "directline") -> None:
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9", channel_id=channel_id) as emulator:
        for _ in range(count):
            assert (await emulator.expect_replies("what can you do?")).status == 200


def _requests(ingestion: IngestionStandIn) -> int:
    return len(ingestion.of_type("RequestData"))


async def _until_all_delivered(bot: RunningBot, ingestion: IngestionStandIn, driven: int) -> int:
    """Stored batches are resent after a later export succeeds, so keep a trickle of turns going (as real traffic
    would) until every turn's Request arrived. Returns the number of turns driven in all."""

    async def delivered() -> bool:
        nonlocal driven
        await _turns(bot, 1)
        driven += 1
        bot.flush()
        return _requests(ingestion) >= driven

    await wait_until_async(delivered, timeout=40, interval=0.5, message="every Request delivered")
    return driven


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(500, None), (503, None), (429, None), (429, 1.0), (None, None)],
    ids=["500", "503", "429", "429-retry-after", "down"],
)
async def test_every_request_is_delivered_after_an_ingestion_outage(
    ingestion: IngestionStandIn,
    azure_sdk_offline: None,
    fast_export: None,
    tmp_path: Path,
    status: int | None,
    retry_after: float | None,
) -> None:
    env = {"BOT_TELEMETRY_RETRY_INTERVAL_SECONDS": "1"}
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path) as bot:
        await _turns(bot, 5)
        bot.flush()
        await ingestion.wait_for_async(lambda _: _requests(ingestion) == 5)
        port = ingestion.port
        if status is None:
            ingestion.stop()  # the endpoint is gone: connections are refused
        else:
            ingestion.fail_with(status, retry_after)
        await _turns(bot, 20)  # the bot keeps serving during the outage
        bot.flush()
        assert _requests(ingestion) == 5 if status is not None else True
        if status is None:
            ingestion.start(port=port)
        else:
            ingestion.recover()
        driven = await _until_all_delivered(bot, ingestion, 25)
        assert _requests(ingestion) == driven
        assert await bot.total(catalog.TURNS) == driven


async def test_telemetry_left_on_disk_by_a_stopped_process_is_sent_by_the_next(
    ingestion: IngestionStandIn, azure_sdk_offline: None, fast_export: None, tmp_path: Path
) -> None:
    env = {"BOT_TELEMETRY_RETRY_INTERVAL_SECONDS": "1"}
    ingestion.fail_with(503)
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path) as first:
        await _turns(first, 10)
    assert _requests(ingestion) == 0  # the first process stopped with everything on disk
    ingestion.recover()
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path) as second:
        driven = await _until_all_delivered(second, ingestion, 10)
    assert _requests(ingestion) == driven


def _stored_files(storage: Path) -> int:
    return sum(1 for path in storage.rglob("*") if path.is_file())


async def _successful_exports(bot: RunningBot) -> float:
    """Exports any exporter finished without error (a success makes the SDK resend stored batches itself)."""
    total = 0.0
    for name in (
        "otel_sdk_exporter_span_exported_total",
        "otel_sdk_exporter_log_exported_total",
        "otel_sdk_exporter_metric_data_point_exported_total",
    ):
        total += sum(value for labels, value in await bot.samples(name) if "error_type" not in labels)
    return total


def _metric_sum(ingestion: IngestionStandIn, name: str) -> float:
    return sum(
        metric["value"]
        for envelope in ingestion.of_type("MetricData")
        for metric in envelope["data"]["baseData"]["metrics"]
        if metric["name"] == name
    )


@pytest.mark.parametrize("fault", [503, 500, None], ids=["503", "500", "down"])
async def test_an_idle_bot_delivers_what_it_stored_during_an_outage_once_the_endpoint_is_back(
    ingestion: IngestionStandIn,
    azure_sdk_offline: None,
    fast_export: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fault: int | None,
) -> None:
    # Metrics leave only when flushed here, so no export can succeed after the outage: nothing but the bot's own
    # schedule can resend what was stored.
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
    env = {"BOT_TELEMETRY_RETRY_INTERVAL_SECONDS": "1"}
    turns = 20
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path) as bot:
        port = ingestion.port
        if fault is None:
            ingestion.stop()
        else:
            ingestion.fail_with(fault)
        await _turns(bot, turns)
        bot.flush()  # every signal exported, and refused: all of it is on disk now
        assert ingestion.envelopes == []
        assert _stored_files(tmp_path) >= 3
        logs = [dict(record.log_record.attributes or {}) for record in bot.logs.get_finished_logs()]
        expected = {
            "RequestData": turns,
            "EventData": sum(1 for attributes in logs if "microsoft.custom_event.name" in attributes),
            "MessageData": sum(1 for attributes in logs if "microsoft.custom_event.name" not in attributes),
        }
        assert min(expected.values()) > 0, expected
        exports_before = await _successful_exports(bot)

        if fault is None:
            ingestion.start(port=port)
        else:
            ingestion.recover()
        # No turn, no flush from here on.
        await wait_until_async(
            lambda: _stored_files(tmp_path) == 0, timeout=30, message="the storage directories drained"
        )
        arrived = {kind: len(ingestion.of_type(kind)) for kind in expected}
        assert arrived == expected  # each envelope exactly once
        assert _metric_sum(ingestion, catalog.TURNS.name) == turns
        ids = [envelope["data"]["baseData"]["id"] for envelope in ingestion.of_type("RequestData")]
        assert len(set(ids)) == turns
        assert await _successful_exports(bot) == exports_before  # the exporters themselves resent nothing
        retry = bot.telemetry.offline_retry
        assert retry is not None
        assert retry.running
    assert not retry.running  # stopped when the bot shut down


@pytest.fixture
async def small_bot(azure_sdk_offline: None) -> AsyncIterator[RunningBot]:
    async with running_bot({"BOT_MAX_CONCURRENT_TURNS": "2", "BOT_REPLY_TIMEOUT_SECONDS": "30"}) as bot:
        yield bot


async def test_beyond_its_concurrency_limit_the_bot_answers_503_with_retry_after(
    small_bot: RunningBot, channel: ChannelStandIn
) -> None:
    stuck = EmulatorClient(small_bot.messages_url, channel.service_url, channel_id="directline")
    channel.hang(stuck.conversation_id)
    held = [asyncio.ensure_future(stuck.send("help")) for _ in range(2)]
    await wait_until_async(lambda: channel.held(stuck.conversation_id) == 2, message="2 turns waiting on the channel")
    async with aiohttp.ClientSession() as session:
        activity = stuck.activity("message", "help", deliveryMode="expectReplies")
        async with session.post(small_bot.messages_url, json=activity) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == catalog.REJECT_OVERLOADED
    channel.recover(stuck.conversation_id)
    assert [result.status for result in await asyncio.gather(*held)] == [201, 201]
    await stuck.close()
    await _turns(small_bot, 1)  # capacity is back
    assert await small_bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection="overloaded") == 1


async def test_a_flood_of_new_conversations_and_users_adds_no_series(azure_sdk_offline: None) -> None:
    async with running_bot() as bot:
        await _turns(bot, 3, channel_id="emulator")
        bot.flush()  # the export pipeline's own series exist from the first export on
        before = (await bot.scrape()).count("\n")
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                emulator = EmulatorClient(
                    bot.messages_url, "http://127.0.0.1:9", conversation_id=str(uuid.uuid4()), session=session
                )
                assert (await emulator.expect_replies("what can you do?")).status == 200
        exposition = await bot.scrape()
        assert exposition.count("\n") == before
        assert await bot.total(catalog.TURNS) == 303
        assert await bot.total("bot_conversations_active") == 301


@pytest.mark.parametrize(
    ("env", "good", "bad"),
    [
        ({"BOT_METRICS_BEARER_TOKEN": "s3cret"}, "Bearer s3cret", "Bearer wrong"),
        (
            {"BOT_METRICS_BASIC_AUTH": "prometheus:pa55"},
            "Basic " + base64.b64encode(b"prometheus:pa55").decode(),
            "Basic " + base64.b64encode(b"prometheus:nope").decode(),
        ),
    ],
    ids=["bearer", "basic"],
)
async def test_the_metrics_endpoint_can_require_credentials(
    azure_sdk_offline: None, env: dict[str, str], good: str, bad: str
) -> None:
    from aiohttp import web

    from bot.settings import Settings
    from telemetry.config import TelemetryConfig
    from telemetry.prometheus import metrics_app
    from telemetry.setup import configure

    settings = Settings.from_env({"BOT_TELEMETRY_HASH_KEY": "k", **env})
    telemetry = configure(TelemetryConfig(), console=False)
    runner = web.AppRunner(
        metrics_app(telemetry.prometheus_registry, settings.metrics_bearer_token, settings.metrics_basic_auth)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    try:
        async with aiohttp.ClientSession() as session:
            for header, status in ((None, 401), (bad, 401), (good, 200)):
                headers = {"Authorization": header} if header else {}
                async with session.get(url, headers=headers) as response:
                    assert response.status == status, header
                    if status == 200:
                        assert "target_info" in await response.text()
    finally:
        await runner.cleanup()
        telemetry.shutdown()


SPAN_ENVELOPES = ("RequestData", "RemoteDependencyData")
LOG_ENVELOPES = ("MessageData", "EventData", "ExceptionData")


def _delivered(ingestion: IngestionStandIn) -> tuple[int, int]:
    """(span envelopes, log envelopes) received by ingestion."""
    spans = sum(len(ingestion.of_type(kind)) for kind in SPAN_ENVELOPES)
    return spans, sum(len(ingestion.of_type(kind)) for kind in LOG_ENVELOPES)


async def _dropped(bot: RunningBot) -> tuple[float, float]:
    """(spans, log records) dropped by the batch processors in front of the Azure Monitor exporters. The test's own
    in-memory exporters have processors of their own, whose drops are theirs: each record passes through both."""
    processors = bot.telemetry.azure_processors
    queue_full = {"error_type": catalog.DROPPED_QUEUE_FULL}
    spans = await bot.total(
        "otel_sdk_processor_span_processed_total", otel_component_name=processors["traces"], **queue_full
    )
    logs = await bot.total(
        "otel_sdk_processor_log_processed_total", otel_component_name=processors["logs"], **queue_full
    )
    return spans, logs


async def test_spans_and_logs_dropped_by_a_full_export_queue_are_counted(
    ingestion: IngestionStandIn, azure_sdk_offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for signal in ("BSP", "BLRP"):
        monkeypatch.setenv(f"OTEL_{signal}_MAX_QUEUE_SIZE", "8")
        monkeypatch.setenv(f"OTEL_{signal}_MAX_EXPORT_BATCH_SIZE", "8")
    turns = 40
    async with running_bot(connection_string=ingestion.connection_string, storage=tmp_path) as bot:
        # One turn with a healthy endpoint tells how many spans and log records a turn produces.
        await _turns(bot, 1)
        bot.flush()
        before = _delivered(ingestion)
        await _turns(bot, 1)
        bot.flush()
        baseline = _delivered(ingestion)
        per_turn = tuple(after - first for after, first in zip(baseline, before, strict=True))
        assert per_turn[0] == 1, per_turn  # expectReplies: the turn is one SERVER span
        assert per_turn[1] >= 1, per_turn
        assert await _dropped(bot) == (0, 0)

        ingestion.hold()  # the Azure exporters' next uploads hang: their queues fill up and overflow
        await _turns(bot, turns)
        ingestion.release()

        produced = [count * turns for count in per_turn]

        async def accounted() -> tuple[list[int], tuple[float, float]] | None:
            """Once every span and log record either arrived or was counted as dropped."""
            bot.flush()
            dropped = await _dropped(bot)
            arrived = [now - then for now, then in zip(_delivered(ingestion), baseline, strict=True)]
            missing = [n - a - d for n, a, d in zip(produced, arrived, dropped, strict=True)]
            return (arrived, dropped) if max(missing) <= 0 else None

        arrived, dropped = await wait_until_async(accounted, message="spans and logs delivered or counted as dropped")
        # Overflowed, and every record exactly once either delivered or counted as dropped: never both.
        assert all(0 < d < n for d, n in zip(dropped, produced, strict=True)), (arrived, dropped, produced)
        assert [a + d for a, d in zip(arrived, dropped, strict=True)] == produced, (arrived, dropped, produced)
        assert await bot.total(catalog.TURNS) == turns + 2  # turn metrics stay exact whatever telemetry drops


SLOW_CLIENTS = 300


async def _slow_client(port: int, mode: str) -> bytes:
    """A client that opens a connection and then stalls: headers never finished, or a body never finished. Returns
    what the bot answered before it closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if mode == "headers":
            writer.write(b"POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        else:
            writer.write(
                b"POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 4000\r\n\r\n{"type": "mess'
            )
        await writer.drain()
        return await reader.read()  # until the bot closes the connection
    finally:
        writer.close()


async def test_hundreds_of_slow_clients_neither_lock_out_a_conversation_nor_stay_connected(
    azure_sdk_offline: None,
) -> None:
    """Half the clients never finish their headers, half never finish their body, and there are more of them than
    turn slots. A normal conversation goes on meanwhile; then every slow client is cut off by the bot."""
    env = {"BOT_MAX_CONCURRENT_TURNS": "16", "BOT_IDLE_TIMEOUT_SECONDS": "3", "BOT_BODY_TIMEOUT_SECONDS": "2"}
    async with running_bot(env) as bot:
        port = int(bot.base_url.rsplit(":", 1)[1])
        slow = [
            asyncio.ensure_future(_slow_client(port, "headers" if index % 2 else "body"))
            for index in range(SLOW_CLIENTS)
        ]
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9", channel_id="directline") as emulator:
            for text in ("help", "what can you do?", "feedback", "4", "skip"):
                response = await emulator.expect_replies(text)
                assert response.status == 200, response.body
                assert response.body["activities"]
        answers = await asyncio.wait_for(asyncio.gather(*slow), timeout=60)
        cut_off_in_body = [answer for index, answer in enumerate(answers) if index % 2 == 0]
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in cut_off_in_body), cut_off_in_body[:1]
        assert await bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection="request_timeout") == len(
            cut_off_in_body
        )
        assert await bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection="overloaded") == 0


async def _hostile_round(bot: RunningBot, channel: ChannelStandIn, round_number: int, statuses: list[int]) -> None:
    """`count` requests, each with values no one sent before in every field a client controls: channel id, activity
    type, locale, invoke name, ids, URL path, method, and a channel answering a status of its own choice."""
    async with aiohttp.ClientSession() as session:
        for index, status in enumerate(statuses):
            unique = f"{round_number}-{index}-{uuid.uuid4().hex[:6]}"
            conversation = f"conv-{unique}"
            channel.fail(conversation, status)
            emulator = EmulatorClient(
                bot.messages_url,
                channel.service_url,
                channel_id=f"chan-{unique}",
                conversation_id=conversation,
                session=session,
            )
            for kind, name in (("message", None), (f"type-{unique}", None), ("invoke", f"invoke/{unique}")):
                activity = emulator.activity(kind, "help", locale=f"x-{unique}", id=f"id-{unique}", name=name)
                async with session.post(bot.messages_url, json=activity) as response:
                    assert response.status < 500 or response.status == 501
            async with session.request("PATCH", f"{bot.base_url}/nowhere/{unique}") as response:
                assert response.status in (404, 405)
            async with session.request(f"M{index}X", bot.messages_url) as response:
                assert response.status in (400, 405)


async def test_no_metric_label_takes_unbounded_values_from_input(
    channel: ChannelStandIn, azure_sdk_offline: None
) -> None:
    """Twice as many never-seen values in every field a client controls add no series the first round did not
    have: every label is bounded."""
    async with running_bot({"BOT_REPLY_TIMEOUT_SECONDS": "2"}) as bot:
        known = sorted(catalog.KNOWN_REPLY_STATUSES)
        await _hostile_round(bot, channel, 0, [*known, 418])  # every known status, one unknown
        bot.flush()
        first = {line.split(" ")[0] for line in (await bot.scrape()).splitlines() if not line.startswith("#")}
        await _hostile_round(bot, channel, 1, [status for status in range(430, 600) if status not in known][:60])
        bot.flush()
        second = {line.split(" ")[0] for line in (await bot.scrape()).splitlines() if not line.startswith("#")}
    assert sorted(second - first) == []
