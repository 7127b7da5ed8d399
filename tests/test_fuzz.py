"""Hostile input, generated: whatever arrives at /api/messages, the bot answers below 500, stays up, and user text
cannot forge a log line."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.botserver import RunningBot, running_bot

EXAMPLES = 150

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=200)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5)
)
hostile_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, codec="utf-8"), max_size=500
) | st.sampled_from(["\x1b[2J", "\r\n", "\u2028", "%s%s%n", "${jndi:ldap://x}", "' OR 1=1 --", "\x00"])
# Ids a JSON client can send but UTF-8 cannot encode (lone surrogates), and path tricks ("..", "/").
odd_ids = st.text(alphabet=st.characters(categories=["Cs", "Ll", "Nd"]), max_size=12) | st.sampled_from(
    ["..", ".", "a/../b", "%2e%2e", "\ud800", "c\udfff"]
)
invoke_names = st.sampled_from(["adaptiveCard/action", "composeExtension/query", "signin/verifyState", "x"])
activity_fields = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "conversationUpdate", "typing", "invoke", "event", "bogus"]) | json_values},
    optional={
        "text": hostile_text | json_values,
        "id": st.text(max_size=50) | odd_ids | json_values,
        "name": invoke_names | json_values,
        "channelId": st.sampled_from(["emulator", "msteams", "directline", ""]) | st.text(max_size=30),
        "serviceUrl": st.just("http://127.0.0.1:9") | st.text(max_size=50),
        "deliveryMode": st.just("expectReplies") | json_values,
        "from": st.fixed_dictionaries({"id": st.text(max_size=50) | odd_ids}) | json_values,
        "recipient": st.fixed_dictionaries({"id": st.text(max_size=20)}) | json_values,
        "conversation": st.fixed_dictionaries({"id": st.text(max_size=50) | odd_ids}) | json_values,
        "locale": st.text(max_size=20) | json_values,
        "timestamp": st.text(max_size=30) | json_values,
        "value": json_values,
        "entities": json_values,
        "attachments": json_values,
        "channelData": json_values,
    },
)
bodies = (
    activity_fields.map(lambda activity: json.dumps(activity).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=300)
    | st.integers(min_value=1, max_value=400).map(lambda depth: b"[" * depth + b"]" * depth)
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "application/json; charset=latin-1"]
) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
authorizations = (
    st.none()
    | st.sampled_from(["Bearer", "Bearer x.y.z", "Basic Zm9vOmJhcg=="])
    | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=100)
)


class BotInThread:
    """The real app on its own event loop, so hypothesis can drive it from plain synchronous examples."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = env
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready: Future[RunningBot] = Future()
        self._thread = threading.Thread(target=self._run, name="fuzzed-bot", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with running_bot(self._env) as bot:
                self._ready.set_result(bot)
                await self._stop.wait()
        except BaseException as error:
            if not self._ready.done():
                self._ready.set_exception(error)
            raise

    def __enter__(self) -> RunningBot:
        self._thread.start()
        return self._ready.result(timeout=30)

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def fuzzed_bot() -> Iterator[RunningBot]:
    env = {"BOT_LOG_PERSONAL_INFORMATION": "true", "BOT_MAX_BODY_BYTES": "65536", "BOT_REPLY_TIMEOUT_SECONDS": "1"}
    with BotInThread(env) as bot:
        yield bot


def _post(bot: RunningBot, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = bot.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/api/messages", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, content_type=content_types, authorization=authorizations)
def test_no_body_or_header_gets_a_server_error(
    fuzzed_bot: RunningBot, body: bytes, content_type: str, authorization: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if authorization is not None:
        headers["Authorization"] = authorization
    status, payload = _post(fuzzed_bot, body, headers)
    if status == 501:  # the Bot Framework answer to an invoke the bot does not handle, named as such
        assert json.loads(payload)["error"]["code"] == "unsupported_invoke"
        return
    assert status < 500, (status, payload[:300])
    if status >= 400:
        error: Any = json.loads(payload)
        assert error["error"]["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=hostile_text, separator=st.sampled_from(["\n", "\r", "\r\n", "\x1b[1G", "\n\x1b[2K"]))
def test_user_text_cannot_forge_a_log_line(
    fuzzed_bot: RunningBot, capfd: pytest.CaptureFixture[str], before: str, separator: str
) -> None:
    forged = "2026-01-01 00:00:00,000 ERROR   bot.adapter [trace=- span=-] FORGED"
    activity = {
        "type": "message",
        "text": before + separator + forged,
        "channelId": "directline",
        "serviceUrl": "http://127.0.0.1:9",
        "deliveryMode": "expectReplies",
        "from": {"id": "user"},
        "recipient": {"id": "bot"},
        "conversation": {"id": "conversation"},
        "id": "activity",
    }
    status, _ = _post(fuzzed_bot, json.dumps(activity).encode(), {"Content-Type": "application/json"})
    assert status == 200
    console = capfd.readouterr().err
    assert "UserMessage: " in console  # the text was logged (opted in) ...
    for line in console.splitlines():
        assert not line.startswith("2026-01-01 00:00:00,000"), line  # ... but never as a line of its own
        assert "\x1b" not in line


def test_the_bot_is_still_healthy_after_the_fuzzing(fuzzed_bot: RunningBot) -> None:
    status, payload = _post(
        fuzzed_bot,
        json.dumps(
            {
                "type": "message",
                "text": "help",
                "channelId": "emulator",
                "serviceUrl": "http://127.0.0.1:9",
                "deliveryMode": "expectReplies",
                "conversation": {"id": "after"},
                "from": {"id": "user"},
                "recipient": {"id": "bot"},
            }
        ).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(payload)["activities"]
