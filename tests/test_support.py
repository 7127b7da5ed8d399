"""Tests of the test-support stand-ins and helpers themselves."""

import asyncio
import contextlib
import gzip
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
from botbuilder.core import ActivityHandler, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from tests.support import netguard
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import INSTRUMENTATION_KEY, IngestionStandIn
from tests.support.polling import wait_until, wait_until_async

# urllib would otherwise honour proxy variables from the environment.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(url: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST") -> tuple[int, Any, Any]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with _direct.open(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"null")


def _envelope(name: str = "e") -> dict[str, Any]:
    return {"name": name, "iKey": INSTRUMENTATION_KEY, "tags": {}, "data": {"baseType": "EventData"}}


# --- polling ---------------------------------------------------------------------------------------------


def test_wait_until_returns_the_truthy_value() -> None:
    calls: Iterator[object] = iter([0, None, [], "ready"])
    assert wait_until(lambda: next(calls), timeout=5) == "ready"


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="the moon"):
        wait_until(lambda: False, timeout=0.05, message="the moon")


async def test_wait_until_async_accepts_sync_and_async_predicates() -> None:
    state = {"n": 0}

    async def bump() -> int:
        state["n"] += 1
        return state["n"] if state["n"] >= 3 else 0

    assert await wait_until_async(bump, timeout=5) == 3
    assert await wait_until_async(lambda: state["n"], timeout=5) == 3
    with pytest.raises(AssertionError, match="never"):
        await wait_until_async(lambda: None, timeout=0.05, message="never")


# --- ingestion ---------------------------------------------------------------------------------------------


async def test_real_exporter_delivers_request_envelope(ingestion: IngestionStandIn, azure_sdk_offline: None) -> None:
    provider = TracerProvider()
    exporter = AzureMonitorTraceExporter(
        connection_string=ingestion.connection_string, disable_offline_storage=True, tracer_provider=provider
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer(__name__)
    with tracer.start_as_current_span("turn", kind=SpanKind.SERVER, attributes={"bot.conversation": "c-1"}) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    try:
        # Flushing from the test's own event loop must not deadlock against the stand-in.
        assert provider.force_flush(10_000)
        requests = await ingestion.wait_for_async(
            lambda envelopes: [e for e in envelopes if e["data"]["baseType"] == "RequestData"], message="a request"
        )
    finally:
        provider.shutdown()
    [request] = requests
    assert request["name"] == "Microsoft.ApplicationInsights.Request"
    assert request["iKey"] == INSTRUMENTATION_KEY
    assert request["tags"]["ai.operation.id"] == trace_id
    assert request["data"]["baseData"]["name"] == "turn"
    assert request["data"]["baseData"]["properties"] == {"bot.conversation": "c-1"}
    assert ingestion.requests_seen >= 1
    assert ingestion.other_requests == []


def test_exporter_sees_outage_then_recovers(ingestion: IngestionStandIn, azure_sdk_offline: None) -> None:
    provider = TracerProvider()
    exporter = AzureMonitorTraceExporter(
        connection_string=ingestion.connection_string,
        disable_offline_storage=True,
        tracer_provider=provider,
        retry_total=0,
    )
    tracer = provider.get_tracer(__name__)

    def one_span() -> Any:
        span = tracer.start_span("turn", kind=SpanKind.SERVER)
        span.end()
        return span

    ingestion.fail_with(503)
    assert exporter.export([one_span()]) == SpanExportResult.FAILURE
    assert ingestion.requests_seen == 1
    assert ingestion.envelopes == []

    ingestion.recover()
    assert exporter.export([one_span()]) == SpanExportResult.SUCCESS
    assert len(ingestion.of_type("RequestData")) == 1
    exporter.shutdown()


@pytest.mark.parametrize("path", ["/v2/track", "/v2.1/track", "//v2.1/track", "////v2.1/track"])
def test_track_paths_are_accepted(ingestion: IngestionStandIn, path: str) -> None:
    status, _, body = _post(ingestion.base_url + path, json.dumps([_envelope()]).encode())
    assert (status, body) == (200, {"itemsReceived": 1, "itemsAccepted": 1, "errors": []})
    assert len(ingestion.of_type("EventData")) == 1


def test_payload_encodings(ingestion: IngestionStandIn) -> None:
    url = ingestion.base_url + "/v2.1/track"
    as_array = json.dumps([_envelope("a"), _envelope("b")]).encode()
    ndjson = "\n".join(json.dumps(_envelope(n)) for n in "cd").encode()
    assert _post(url, gzip.compress(as_array), {"Content-Encoding": "gzip"})[0] == 200
    assert _post(url, gzip.compress(ndjson))[0] == 200  # gzip body without the header
    assert _post(url, ndjson)[0] == 200
    assert _post(url, json.dumps(_envelope("e")).encode())[0] == 200
    assert [e["name"] for e in ingestion.envelopes] == ["a", "b", "c", "d", "c", "d", "e"]
    assert _post(url, b"{not json")[0] == 400
    assert ingestion.requests_seen == 5


def test_other_requests_are_recorded_not_counted(ingestion: IngestionStandIn) -> None:
    assert _post(ingestion.base_url + "/QuickPulseService.svc/ping", b"{}")[0] == 404
    assert _post(ingestion.base_url + "/v2.1/track", b"", method="GET")[0] == 404
    assert [(r.method, r.path) for r in ingestion.other_requests] == [
        ("POST", "/QuickPulseService.svc/ping"),
        ("GET", "/v2.1/track"),
    ]
    assert ingestion.requests_seen == 0
    assert ingestion.envelopes == []


def test_fault_mode_answers_status_and_retry_after(ingestion: IngestionStandIn) -> None:
    url = ingestion.base_url + "/v2.1/track"
    ingestion.fail_with(429, retry_after=3)
    status, headers, body = _post(url, json.dumps([_envelope(), _envelope()]).encode())
    assert (status, headers["Retry-After"]) == (429, "3")
    assert body["itemsAccepted"] == 0
    assert [e["index"] for e in body["errors"]] == [0, 1]
    assert ingestion.envelopes == []
    ingestion.recover()
    assert _post(url, json.dumps([_envelope()]).encode())[0] == 200
    assert (ingestion.requests_seen, len(ingestion.envelopes)) == (2, 1)
    ingestion.clear()
    assert (ingestion.envelopes, ingestion.requests_seen) == ([], 0)


def test_concurrent_uploads(ingestion: IngestionStandIn) -> None:
    url = ingestion.base_url + "/v2.1/track"
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda i: _post(url, json.dumps([_envelope(str(i))]).encode())[0], range(64)))
    assert statuses == [200] * 64
    assert sorted(int(e["name"]) for e in ingestion.envelopes) == list(range(64))


def test_wait_for_times_out_with_message(ingestion: IngestionStandIn) -> None:
    with pytest.raises(AssertionError, match="three envelopes"):
        ingestion.wait_for(lambda envelopes: len(envelopes) == 3, timeout=0.05, message="three envelopes")


def test_stop_releases_the_port() -> None:
    standin = IngestionStandIn().start()
    assert standin.connection_string.startswith("InstrumentationKey=00000000-0000-0000-0000-000000000000;")
    port = standin.port
    standin.stop()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


# --- channel ---------------------------------------------------------------------------------------------


async def test_real_connector_client_round_trip(channel: ChannelStandIn) -> None:
    from botframework.connector.aio import ConnectorClient
    from botframework.connector.auth import MicrosoftAppCredentials

    conversation = "abc|livechat"
    async with ConnectorClient(MicrosoftAppCredentials("", ""), base_url=channel.service_url) as client:
        reply = Activity(type="message", text="hi")
        sent = await client.conversations.reply_to_activity(conversation, "incoming-1", reply)
        await client.conversations.send_to_conversation(conversation, Activity(type="typing"))
        await client.conversations.update_activity(conversation, sent.id, Activity(type="message", text="edited"))
        await client.conversations.delete_activity(conversation, sent.id)

    assert sent.id
    requests = channel.requests(conversation)
    assert [(r.method, r.activity_id) for r in requests] == [
        ("POST", "incoming-1"),
        ("POST", None),
        ("PUT", sent.id),
        ("DELETE", sent.id),
    ]
    assert requests[0].path == "/v3/conversations/abc%7Clivechat/activities/incoming-1"
    assert [a["type"] for a in channel.replies(conversation)] == ["message", "typing"]
    assert [a["text"] for a in channel.messages(conversation)] == ["hi"]


async def test_channel_fail_and_hang(channel: ChannelStandIn) -> None:
    def url(conversation: str) -> str:
        return f"{channel.service_url}/v3/conversations/{conversation}/activities"

    async with aiohttp.ClientSession() as session:
        channel.fail("broken", 502)
        async with session.post(url("broken"), json={"type": "message"}) as response:
            assert response.status == 502
        assert channel.replies("broken") == []
        assert [r.status for r in channel.requests("broken")] == [502]

        channel.hang("stuck")
        held = asyncio.ensure_future(session.post(url("stuck"), json={"type": "message", "text": "1"}))
        await wait_until_async(lambda: channel.held("stuck") == 1, message="the request to be held")
        async with session.post(url("fine"), json={"type": "message"}, headers={"Authorization": "Bearer x"}) as ok:
            assert ok.status == 200
            assert "id" in await ok.json()
        assert channel.requests("fine")[0].authorization == "Bearer x"
        assert not held.done()

        channel.recover("stuck")
        async with await held as response:
            assert response.status == 200
        assert [a["text"] for a in await channel.wait_for_replies_async("stuck", 1)] == ["1"]


async def test_stop_is_prompt_while_requests_hang() -> None:
    standin = ChannelStandIn().start()
    standin.hang("c")
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.post(f"{standin.service_url}/v3/conversations/c/activities", json={}))
        await wait_until_async(lambda: standin.held("c") == 1, message="the request to be held")
        started = time.monotonic()
        await asyncio.to_thread(standin.stop)
        assert time.monotonic() - started < 1.0
        async with await pending as response:
            assert response.status == 503
    assert standin.replies("c") == []


def test_wait_for_replies_times_out_with_conversation_name(channel: ChannelStandIn) -> None:
    with pytest.raises(AssertionError, match="'nobody'"):
        channel.wait_for_replies("nobody", 1, timeout=0.05)


# --- emulator (against a real botbuilder CloudAdapter) ----------------------------------------------------------


class _EchoBot(ActivityHandler):
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(MessageFactory.text(f"echo: {turn_context.activity.text}"))

    async def on_members_added_activity(self, members_added: Any, turn_context: TurnContext) -> None:
        for member in members_added:
            if member.id != turn_context.activity.recipient.id:
                await turn_context.send_activity("welcome")


@pytest.fixture
async def echo_bot() -> Any:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(SimpleNamespace(APP_ID="", APP_PASSWORD="")))
    bot = _EchoBot()
    seen: list[tuple[dict[str, Any], dict[str, str]]] = []

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append((body, dict(request.headers)))
        if body.get("deliveryMode") == "expectReplies":
            # CloudAdapter.process cannot serialise an already-serialised ExpectedReplies body (500).
            invoke = await adapter.process_activity("", Activity().deserialize(body), bot.on_turn)
            return web.json_response(invoke.body, status=invoke.status)
        return await adapter.process(request, bot) or web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    async with TestServer(app, host="127.0.0.1") as server:
        yield SimpleNamespace(url=str(server.make_url("/api/messages")), seen=seen)


async def test_emulator_conversation_against_real_adapter(echo_bot: Any, channel: ChannelStandIn) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with EmulatorClient(echo_bot.url, channel.service_url) as emulator:
        assert (await emulator.conversation_update()).status in (200, 201)
        response = await emulator.send("hello", headers={"traceparent": traceparent})
        assert response.status in (200, 201)
        replies = await channel.wait_for_replies_async(emulator.conversation_id, 2, messages_only=True)
        assert [a["text"] for a in replies] == ["welcome", "echo: hello"]

        status, body = await emulator.expect_replies("inline")
        assert status == 200
        assert [a["text"] for a in body["activities"]] == ["echo: inline"]

    update, _ = echo_bot.seen[0]
    assert update["type"] == "conversationUpdate"
    assert "text" not in update
    assert [m["id"] for m in update["membersAdded"]] == ["bot", emulator.user_id]
    message, headers = echo_bot.seen[1]
    assert headers["traceparent"] == traceparent
    parsed = Activity().deserialize(message)
    assert (parsed.from_property.role, parsed.recipient.id, parsed.recipient.role) == ("user", "bot", "bot")
    assert (parsed.channel_id, parsed.service_url) == ("emulator", channel.service_url)
    assert parsed.timestamp.tzinfo is not None
    assert parsed.local_timestamp is not None
    assert (parsed.locale, parsed.text_format, parsed.text) == ("en-US", "plain", "hello")
    assert channel.requests(emulator.conversation_id)[1].activity_id == message["id"]
    assert echo_bot.seen[2][0]["deliveryMode"] == "expectReplies"


async def test_emulator_headers_and_body_decoding() -> None:
    seen: list[web.Request] = []

    async def endpoint(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        reply = request.headers.get("X-Reply", "json")
        if reply == "text":
            return web.Response(text="plain words", status=202)
        if reply == "empty":
            return web.Response(status=201)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/messages", endpoint)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/api/messages"))
        async with EmulatorClient(
            url, "http://127.0.0.1:9", authorization="Bearer t", headers={"X-A": "1"}
        ) as emulator:
            assert await emulator.send("a") == (200, {"ok": True})
            assert await emulator.send("b", headers={"X-Reply": "text"}) == (202, "plain words")
            assert await emulator.send("c", headers={"X-Reply": "empty"}) == (201, None)
    assert all(r.headers["Authorization"] == "Bearer t" and r.headers["X-A"] == "1" for r in seen)


def test_activity_builder_overrides() -> None:
    emulator = EmulatorClient("http://127.0.0.1:1/api/messages", "http://127.0.0.1:2", conversation_id="c", user_id="u")
    activity = emulator.activity("message", "hi", channelData={"k": 1}, locale="de-DE")
    assert (activity["conversation"], activity["from"]["id"]) == ({"id": "c"}, "u")
    assert (activity["locale"], activity["channelData"]) == ("de-DE", {"k": 1})
    assert activity["id"] != emulator.activity("message")["id"]
    assert "text" not in emulator.activity("typing")


# --- netguard ------------------------------------------------------------------------------------------------


def test_netguard_records_outside_attempts_only() -> None:
    with netguard.capture() as seen:
        socket.getaddrinfo("192.0.2.1", 80, flags=socket.AI_NUMERICHOST)  # parsing only, nothing is sent
        socket.getaddrinfo("127.0.0.1", 80, flags=socket.AI_NUMERICHOST)
        socket.getaddrinfo("::1", 80, flags=socket.AI_NUMERICHOST)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            # A UDP connect only sets the default destination; no packet leaves.
            with contextlib.suppress(OSError):
                udp.connect(("192.0.2.1", 9))
            udp.connect(("127.0.0.1", 9))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix, pytest.raises(FileNotFoundError):
            unix.connect("/nonexistent/netguard.sock")
    assert len(seen) == 2
    assert seen[0].startswith("socket.getaddrinfo 192.0.2.1:80 (thread MainThread, at ")
    assert "test_support.py" in seen[0]
    assert seen[1].startswith("socket.connect 192.0.2.1:9")
    assert netguard.offenders() == []


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        (b"127.0.0.1", True),
        (None, True),
        ("0.0.0.0", True),
        ("192.0.2.1", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("example.invalid", False),
        ("dc.services.visualstudio.com", False),
    ],
)
def test_is_local(host: object, local: bool) -> None:
    assert netguard.is_local(host) is local


def test_no_outside_connections_reports_and_clears() -> None:
    with pytest.raises(AssertionError, match=r"192\.0\.2\.7"), netguard.no_outside_connections():
        socket.getaddrinfo("192.0.2.7", 443, flags=socket.AI_NUMERICHOST)
    assert netguard.offenders() == []
    with netguard.no_outside_connections():
        socket.getaddrinfo("127.0.0.1", 443, flags=socket.AI_NUMERICHOST)
