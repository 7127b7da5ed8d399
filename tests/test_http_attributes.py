"""The request items Application Insights shows, and the HTTP attributes behind them, follow the current HTTP
semantic conventions and come from what a client cannot forge: the socket, or a proxy the operator trusts.

Conventions: https://opentelemetry.io/docs/specs/semconv/http/http-spans/ (span name `{method} {http.route}`, `HTTP`
for `_OTHER`; `url.scheme`, `server.address`/`server.port`, `client.address`) and
https://opentelemetry.io/docs/specs/semconv/http/http-metrics/ (`url.scheme` is required on
`http.server.request.duration`). Forwarding headers: RFC 7239 `Forwarded`, and `X-Forwarded-Proto/Host/For`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.support.botserver import RunningBot, running_bot
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import Envelope, IngestionStandIn

NO_REPLIES = "http://127.0.0.1:9"


def _server_spans(bot: RunningBot) -> list[ReadableSpan]:
    bot.flush()
    return [span for span in bot.spans.get_finished_spans() if span.kind is SpanKind.SERVER]


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


async def _request_items(ingestion: IngestionStandIn, count: int) -> list[Envelope]:
    def enough(_: list[Envelope]) -> list[Envelope] | None:
        requests = ingestion.of_type("RequestData")
        return requests if len(requests) >= count else None

    return await ingestion.wait_for_async(enough)


async def test_a_request_is_described_by_its_socket_not_by_the_host_header(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    async with running_bot(connection_string=ingestion.connection_string) as bot:
        port = int(bot.base_url.rsplit(":", 1)[1])
        headers = {"Host": "jane.doe@contoso.example:1234"}  # a client can put anything here
        async with EmulatorClient(bot.messages_url, NO_REPLIES, headers=headers) as emulator:
            assert (await emulator.expect_replies("help")).status == 200
        async with EmulatorClient(bot.messages_url, NO_REPLIES, headers={"Host": "[::1]:3978"}) as emulator:
            assert (await emulator.expect_replies("help")).status == 200
        spans = _server_spans(bot)
        assert await bot.total("http_server_request_duration_seconds_count", url_scheme="http") == 2
    for span in spans:
        attributes = _attributes(span)
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == port
        assert attributes["url.scheme"] == "http"
        assert attributes["client.address"] == "127.0.0.0"  # the network, not the machine
    requests = await _request_items(ingestion, 2)
    assert {item["data"]["baseData"]["url"] for item in requests} == {f"http://127.0.0.1:{port}/api/messages"}
    assert "contoso" not in str(ingestion.envelopes)


async def test_behind_a_trusted_proxy_the_forwarded_scheme_and_host_are_the_requests(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    env = {"BOT_TRUST_FORWARDED_HEADERS": "true"}
    forwarded = [
        # App Service: TLS ends at the front end, which tells the scheme and keeps the Host.
        ({"X-Forwarded-Proto": "https", "Host": "bot.example.net", "X-Forwarded-For": "203.0.113.7:50123"}, None),
        # RFC 7239, a client's forged first element, then the one the proxy appended (IPv6 host with a port).
        (
            {"Forwarded": 'for=198.51.100.1;proto=http, for="[2001:db8::7]";proto=https;host="[2001:db8::1]:8443"'},
            "https://[2001:db8::1]:8443/api/messages",
        ),
    ]
    async with running_bot(env, connection_string=ingestion.connection_string) as bot:
        for headers, _ in forwarded:
            async with EmulatorClient(bot.messages_url, NO_REPLIES, headers=headers) as emulator:
                assert (await emulator.expect_replies("help")).status == 200
        spans = _server_spans(bot)
        assert await bot.total("http_server_request_duration_seconds_count", url_scheme="https") == 2
    first, second = (_attributes(span) for span in spans)
    assert (first["url.scheme"], first["server.address"], first["server.port"]) == ("https", "bot.example.net", 443)
    assert first["client.address"] == "203.0.113.0"
    assert (second["server.address"], second["server.port"], second["client.address"]) == (
        "2001:db8::1",
        8443,
        "2001:db8::",
    )
    urls = [item["data"]["baseData"]["url"] for item in await _request_items(ingestion, 2)]
    assert urls == ["https://bot.example.net/api/messages", "https://[2001:db8::1]:8443/api/messages"]


async def test_without_a_trusted_proxy_forwarding_headers_change_nothing(azure_sdk_offline: None) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "elsewhere.example", "Forwarded": "proto=https"}
    async with running_bot() as bot:
        async with EmulatorClient(bot.messages_url, NO_REPLIES, headers=headers) as emulator:
            assert (await emulator.expect_replies("help")).status == 200
        (span,) = _server_spans(bot)
        assert await bot.total("http_server_request_duration_seconds_count", url_scheme="http") == 1
    assert _attributes(span)["url.scheme"] == "http"
    assert _attributes(span)["server.address"] == "127.0.0.1"


async def test_an_unknown_method_is_named_http_and_an_unmatched_path_never_names_anything(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    async with running_bot(connection_string=ingestion.connection_string) as bot:
        async with aiohttp.ClientSession() as session:
            async with session.request("PROPFIND", bot.messages_url) as response:
                assert response.status == 405
            async with session.get(f"{bot.base_url}/users/jane.doe@contoso.example/profile") as response:
                assert response.status == 404
        spans = {span.name: _attributes(span) for span in _server_spans(bot)}
    assert set(spans) == {"HTTP /api/messages", "GET"}
    other = spans["HTTP /api/messages"]
    assert (other["http.request.method"], other["http.request.method_original"]) == ("_OTHER", "PROPFIND")
    assert "url.path" not in spans["GET"]
    requests = await _request_items(ingestion, 2)
    names = {item["data"]["baseData"]["name"] for item in requests}
    assert names == {"HTTP /api/messages", "GET"}
    assert {item["tags"]["ai.operation.name"] for item in requests} == names
    assert "jane" not in str(ingestion.envelopes)


async def test_a_failed_turn_fails_its_request_in_the_metric_as_on_the_span(azure_sdk_offline: None) -> None:
    async with running_bot() as bot:
        async with EmulatorClient(bot.messages_url, NO_REPLIES) as emulator:
            assert (await emulator.expect_replies("/fail")).status == 200  # the user gets the apology
        (span,) = _server_spans(bot)
        failed = await bot.total("http_server_request_duration_seconds_count", error_type="bot.bot.SimulatedFailure")
    assert failed == 1
    assert _attributes(span)["error.type"] == "bot.bot.SimulatedFailure"
