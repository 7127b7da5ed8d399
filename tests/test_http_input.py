"""Bad requests get a clear 4xx that is counted, never a 500; a hanging channel stalls no other conversation."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from opentelemetry.trace import StatusCode

from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.polling import wait_until_async

VALID = {
    "type": "message",
    "id": "a1",
    "text": "help",
    "channelId": "emulator",
    "serviceUrl": "http://127.0.0.1:9",
    "deliveryMode": "expectReplies",
    "from": {"id": "user"},
    "recipient": {"id": "bot"},
    "conversation": {"id": "c1"},
}


@pytest.fixture
async def plain_bot(azure_sdk_offline: None) -> AsyncIterator[RunningBot]:
    async with running_bot({"BOT_MAX_BODY_BYTES": "4096"}) as running:
        yield running


async def _post(url: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as response:
        body = await response.json(content_type=None) if response.status != 201 else {}
        return response.status, body


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason", "says"),
    [
        (b"{not json", JSON, 400, catalog.REJECT_INVALID_JSON, "not valid JSON"),
        (b"", JSON, 400, catalog.REJECT_INVALID_JSON, "empty"),
        (b"   ", JSON, 400, catalog.REJECT_INVALID_JSON, "empty"),
        (b"[1, 2]", JSON, 400, catalog.REJECT_NOT_AN_ACTIVITY, "JSON object"),
        (b'"hello"', JSON, 400, catalog.REJECT_NOT_AN_ACTIVITY, "JSON object"),
        (b"{}", JSON, 400, catalog.REJECT_NOT_AN_ACTIVITY, "'type'"),
        (json.dumps({**VALID, "text": 5}).encode(), JSON, 400, catalog.REJECT_NOT_AN_ACTIVITY, "'text'"),
        (json.dumps({**VALID, "from": "me"}).encode(), JSON, 400, catalog.REJECT_NOT_AN_ACTIVITY, "'from'"),
        (json.dumps({**VALID, "timestamp": "yesterday"}).encode(), JSON, 400, catalog.REJECT_NOT_AN_ACTIVITY, ""),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 413, catalog.REJECT_TOO_LARGE, "larger than"),
        (json.dumps(VALID).encode(), {}, 415, catalog.REJECT_MEDIA_TYPE, "Content-Type"),
        (json.dumps(VALID).encode(), {"Content-Type": "text/plain"}, 415, catalog.REJECT_MEDIA_TYPE, "text/plain"),
        # aiohttp's parser of the header raises on this one (found by fuzzing).
        (json.dumps(VALID).encode(), {"Content-Type": ";0*"}, 415, catalog.REJECT_MEDIA_TYPE, ";0*"),
        (json.dumps({**VALID, "text": "x" * 5000}).encode(), JSON, 413, catalog.REJECT_TOO_LARGE, "4096"),
    ],
)
async def test_bad_requests_get_a_json_error_naming_the_problem(
    plain_bot: RunningBot, body: bytes, headers: dict[str, str], status: int, reason: str, says: str
) -> None:
    got, error = await _post(plain_bot.messages_url, body, headers)
    assert got == status, error
    assert error["error"]["code"] == reason  # type: ignore[index]
    assert says in error["error"]["message"]  # type: ignore[index]
    assert await plain_bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection=reason) == 1
    assert await plain_bot.total(catalog.TURNS) == 0
    # The process is still healthy and still answers.
    ok, replies = await _post(plain_bot.messages_url, json.dumps(VALID).encode(), JSON)
    assert ok == 200
    assert replies["activities"]


async def test_deeply_nested_json_within_the_size_limit_is_a_400(azure_sdk_offline: None) -> None:
    async with running_bot({"BOT_MAX_BODY_BYTES": str(1024 * 1024)}) as bot:
        status, error = await _post(bot.messages_url, b"[" * 200_000 + b"]" * 200_000, JSON)
    assert status == 400
    assert error["error"]["code"] == catalog.REJECT_INVALID_JSON  # type: ignore[index]


async def test_other_methods_are_refused_with_405(plain_bot: RunningBot) -> None:
    async with aiohttp.ClientSession() as session, session.get(plain_bot.messages_url) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
    assert await plain_bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection=catalog.REJECT_METHOD) == 1


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 4000],
)
async def test_with_an_app_id_requests_without_a_valid_token_get_401(
    azure_sdk_offline: None, authorization: str | None
) -> None:
    env = {"MicrosoftAppId": str(uuid.uuid4()), "MicrosoftAppPassword": "secret"}
    headers = dict(JSON)
    if authorization is not None:
        headers["Authorization"] = authorization
    async with running_bot(env) as bot:
        status, error = await _post(bot.messages_url, json.dumps({**VALID, "channelId": "msteams"}).encode(), headers)
        assert status == 401, error
        assert error["error"]["code"] == catalog.REJECT_UNAUTHORIZED  # type: ignore[index]
        assert await bot.total(catalog.REQUESTS_REJECTED, http_response_status_code="401") == 1
        assert await bot.total(catalog.TURNS) == 0


async def test_a_hanging_service_url_does_not_stall_other_conversations(
    channel: ChannelStandIn, azure_sdk_offline: None
) -> None:
    async with running_bot({"BOT_REPLY_TIMEOUT_SECONDS": "3"}) as bot:
        stuck = EmulatorClient(bot.messages_url, channel.service_url, channel_id="directline")
        channel.hang(stuck.conversation_id)
        stuck_turns = [asyncio.ensure_future(stuck.send("help")) for _ in range(12)]
        await wait_until_async(lambda: channel.held(stuck.conversation_id) == 12, message="12 replies held")
        # Twelve turns are now waiting on a channel that never answers; other conversations go on.
        async with EmulatorClient(bot.messages_url, channel.service_url) as other:
            for _ in range(5):
                response = await other.send("what can you do?")
                assert response.status == 201
            assert len(channel.messages(other.conversation_id)) == 5
        assert not any(turn.done() for turn in stuck_turns)
        # The stuck turns end by themselves once the reply timeout passes, and are counted as errors.
        results = await asyncio.gather(*stuck_turns)
        await stuck.close()
        assert {result.status for result in results} == {201}
        assert await bot.total(catalog.ERRORS, error_type="bot.compat.ChannelError") == 12
        failed_replies = [
            value
            for labels, value in await bot.samples("bot_channel_reply_duration_seconds_count")
            if labels.get("error_type") == "TimeoutError"
        ]
        assert sum(failed_replies) >= 12


ODD_IDS = {
    "lone surrogate in the activity id": {"id": "a\ud800"},
    "lone surrogate in the conversation id": {"conversation": {"id": "c\ud800"}},
    "lone surrogate in the from id": {"from": {"id": "\udfff"}},
    "conversation id ..": {"conversation": {"id": ".."}},
    "conversation id .": {"conversation": {"id": "."}},
    "conversation id with slashes": {"conversation": {"id": "../../v3/x"}},
}


@pytest.mark.parametrize("fields", ODD_IDS.values(), ids=ODD_IDS.keys())
async def test_odd_ids_are_answered_and_the_reply_goes_to_their_conversation(
    fields: dict[str, object], channel: ChannelStandIn, azure_sdk_offline: None
) -> None:
    activity = {**VALID, "channelId": "directline", "serviceUrl": channel.service_url, **fields}
    del activity["deliveryMode"]
    conversation_id = str(activity["conversation"]["id"])  # type: ignore[index]
    # The stand-in decodes the path as UTF-8, a lone surrogate (sent percent-encoded as the client sent it) as U+FFFD.
    expected = conversation_id.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    async with running_bot() as bot:
        status, body = await _post(
            bot.messages_url, json.dumps(activity).encode(), {"Content-Type": "application/json"}
        )
        assert status == 201, body
        await wait_until_async(lambda: channel.other_requests or channel.requests(expected), message="a reply")
    assert channel.other_requests == []  # no reply went to another URL ("..": /v3/activities)
    (request,) = channel.requests(expected)
    assert request.activity is not None
    assert request.activity.get("text") != "Sorry, something went wrong."  # the answer, not the apology


async def test_an_adaptive_card_action_without_a_valid_value_gets_the_bot_framework_400(plain_bot: RunningBot) -> None:
    for value in (None, {"action": {"type": "Action.Submit"}}, {"verb": "x"}, "x"):
        activity = {**VALID, "type": "invoke", "name": "adaptiveCard/action", "value": value}
        del activity["deliveryMode"]
        status, body = await _post(
            plain_bot.messages_url, json.dumps(activity).encode(), {"Content-Type": "application/json"}
        )
        assert status == 400, (value, body)
        assert body["type"] == "application/vnd.microsoft.error"
        assert body["value"]["code"] in ("BadRequest", "NotSupported")  # type: ignore[index]
        assert body["value"]["message"]  # type: ignore[index]


async def test_unsupported_invokes_get_501_counted_as_unsupported_not_as_server_errors(plain_bot: RunningBot) -> None:
    for name in ("composeExtension/query", "bogus", None):
        activity = {**VALID, "type": "invoke", "name": name}
        del activity["deliveryMode"]
        status, body = await _post(
            plain_bot.messages_url, json.dumps(activity).encode(), {"Content-Type": "application/json"}
        )
        assert status == 501
        assert body["error"]["code"] == catalog.REJECT_UNSUPPORTED_INVOKE  # type: ignore[index]
    rejected = await plain_bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection="unsupported_invoke")
    assert rejected == 3
    # Not a failure of the server: no error.type on the request's metric, span status left unset.
    assert await plain_bot.total("http_server_request_duration_seconds_count", http_response_status_code="501") == 3
    failed = [
        labels
        for labels, _ in await plain_bot.samples("http_server_request_duration_seconds_count")
        if labels.get("http_response_status_code") == "501" and "error_type" in labels
    ]
    assert failed == []
    plain_bot.flush()
    servers = [span for span in plain_bot.spans.get_finished_spans() if span.name == "POST /api/messages"]
    assert all(span.status.status_code is not StatusCode.ERROR for span in servers)
