"""Replies the channel did not take are sent again (bot/compat/reply_retry.py): one 502 or one 429 with Retry-After
never reaches the user, persistent failure ends in the error path within the turn's retry budget, and other 4xx
answers are final. The channel stand-in answers as the Bot Connector does when it throttles or its gateway fails."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from opentelemetry.trace import SpanKind

from bot.adapter import ERROR_MESSAGE
from bot.app import RUNTIME
from bot.compat import ReplyRetryPolicy, retry_after_seconds
from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import RESET, Answer, ChannelStandIn
from tests.support.emulator import EmulatorClient

QUESTION = "what can you do?"


@pytest.fixture
async def replying_bot(azure_sdk_offline: None) -> AsyncIterator[RunningBot]:
    async with running_bot({"BOT_REPLY_TIMEOUT_SECONDS": "2"}) as bot:
        yield bot


def _texts(channel: ChannelStandIn, conversation_id: str) -> list[str]:
    return [str(message.get("text")) for message in channel.messages(conversation_id)]


def _attempt_ids(channel: ChannelStandIn, conversation_id: str) -> list[str | None]:
    return [(request.activity or {}).get("id") for request in channel.requests(conversation_id)]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param(Answer(502), "502", id="502"),
        pytest.param(Answer(503), "503", id="503"),
        pytest.param(Answer(504), "504", id="504"),
        pytest.param(Answer(429, {"Retry-After": "1"}), "429", id="429-retry-after-1"),
        pytest.param(RESET, "ServerDisconnectedError", id="connection-reset"),
    ],
)
async def test_one_failed_reply_is_sent_again_and_the_user_gets_the_answer_once(
    replying_bot: RunningBot, channel: ChannelStandIn, answer: Answer, reason: str
) -> None:
    async with EmulatorClient(replying_bot.messages_url, channel.service_url, channel_id="directline") as user:
        channel.script(user.conversation_id, answer)
        response = await user.send(QUESTION)
        assert response.status == 201
        texts = _texts(channel, user.conversation_id)
        assert len(texts) == 1, texts
        assert texts[0] != ERROR_MESSAGE
        first, second = _attempt_ids(channel, user.conversation_id)
        assert first
        assert first == second
    assert await replying_bot.total("bot_channel_reply_retries_total", error_type=reason) == 1
    assert await replying_bot.total(catalog.ERRORS) == 0
    replying_bot.flush()
    replies = [span for span in replying_bot.spans.get_finished_spans() if span.kind is SpanKind.CLIENT]
    resends = [dict(span.attributes or {}).get(catalog.HTTP_RESEND_COUNT) for span in replies]
    assert resends == [None, 1]


async def test_a_reply_the_channel_refuses_with_another_4xx_is_not_sent_again(
    replying_bot: RunningBot, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(replying_bot.messages_url, channel.service_url, channel_id="directline") as user:
        channel.script(user.conversation_id, Answer(400))
        assert (await user.send(QUESTION)).status == 201
        statuses = [request.status for request in channel.requests(user.conversation_id)]
        assert statuses == [400, 200]  # the answer once, refused; then the apology of the error path
        assert _texts(channel, user.conversation_id) == [ERROR_MESSAGE]
    assert await replying_bot.total("bot_channel_reply_retries_total") == 0
    assert await replying_bot.total(catalog.ERRORS, error_type="bot.compat.ChannelError") == 1


async def test_a_channel_that_refuses_connections_is_not_tried_again(replying_bot: RunningBot) -> None:
    async with EmulatorClient(replying_bot.messages_url, "http://127.0.0.1:9", channel_id="directline") as user:
        assert (await user.send(QUESTION)).status == 201
    assert await replying_bot.total("bot_channel_reply_retries_total") == 0
    assert await replying_bot.total(catalog.ERRORS, error_type="bot.compat.ChannelError") == 1


async def test_a_retry_after_beyond_the_cap_is_not_waited_for(
    replying_bot: RunningBot, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(replying_bot.messages_url, channel.service_url, channel_id="directline") as user:
        channel.script(user.conversation_id, Answer(429, {"Retry-After": "120"}))
        assert (await user.send(QUESTION)).status == 201
        assert [request.status for request in channel.requests(user.conversation_id)] == [429, 200]
        assert _texts(channel, user.conversation_id) == [ERROR_MESSAGE]


class _Clock:
    """A clock that moves only when the sender waits, so the budget is checked without real time passing."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("status", [502, 503])
async def test_a_channel_that_keeps_failing_gets_the_error_path_within_the_retry_budget(
    replying_bot: RunningBot, channel: ChannelStandIn, status: int
) -> None:
    adapter = replying_bot.app[RUNTIME].adapter
    clock = _Clock()
    adapter.retry_clock = clock
    adapter.retry_sleep = clock.sleep
    policy = adapter.reply_retry
    async with EmulatorClient(replying_bot.messages_url, channel.service_url, channel_id="directline") as user:
        channel.fail(user.conversation_id, status)
        assert (await user.send(QUESTION)).status == 201
        requests = channel.requests(user.conversation_id)
        ids = _attempt_ids(channel, user.conversation_id)
    # The answer, then the apology (the error path), each tried while the budget lasted, each with one id throughout.
    assert {request.status for request in requests} == {status}
    answer_ids, apology_ids = ids[: policy.attempts], ids[policy.attempts :]
    assert len(set(answer_ids)) == 1
    assert answer_ids[0]
    assert apology_ids
    assert len(set(apology_ids)) == 1
    assert apology_ids[0] != answer_ids[0]
    assert (requests[-1].activity or {}).get("text") == ERROR_MESSAGE
    assert sum(clock.waits) <= policy.budget_seconds
    assert len(requests) <= 2 * policy.attempts
    assert await replying_bot.total(catalog.ERRORS, error_type="bot.compat.ChannelError") == 1
    assert await replying_bot.total("bot_channel_reply_retries_total") == len(requests) - 2


def test_waits_grow_with_jitter_and_honour_retry_after_up_to_the_cap() -> None:
    policy = ReplyRetryPolicy()
    rng = random.Random(7)
    waits = [[policy.wait(retry, None, rng) for retry in (1, 2, 3, 4, 5)] for _ in range(200)]
    for retry, column in enumerate(zip(*waits, strict=True), start=1):
        ceiling = min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** (retry - 1))
        assert all(ceiling / 2 <= wait <= ceiling for wait in column if wait is not None)
        assert len(set(column)) > 100  # jittered: replies failed together do not retry together
    assert all(1.0 <= (policy.wait(1, 1.0, rng) or 0) <= 1.0 + policy.base_delay_seconds for _ in range(100))
    assert policy.wait(1, policy.max_retry_after_seconds + 1, rng) is None


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("1", now) == 1.0
    assert retry_after_seconds("Mon, 05 Jan 2026 12:00:03 GMT", now) == 3.0
    assert retry_after_seconds("Mon, 05 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
