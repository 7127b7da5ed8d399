"""Whatever stock botbuilder answers, the bot answers too, apart from the documented safety refusals.

Generated activities (optional fields omitted, empty or unusual) go to the real bot application and to botbuilder
4.17.1's own echo bot (loadtest/benchmark/stock.py), both on ephemeral 127.0.0.1 ports and both replying to the
same channel stand-in. Where stock answers 2xx, the bot must answer 2xx, or refuse with 400 for one of the reasons
docs/reliability.md ("Lenient activities") gives. The bot never answers 5xx.

Every generated activity carries a local serviceUrl: without one, stock botbuilder would send its replies to a
public Bot Framework host (the bot refuses such activities; see the last test).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import string
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from aiohttp import web
from botbuilder.integration.aiohttp import cloud_adapter as botbuilder_cloud_adapter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.knowledge import KnowledgeBase
from loadtest.benchmark import stock
from telemetry import catalog
from tests.support.botserver import running_bot
from tests.support.channel import ChannelStandIn

EXAMPLES = 60

# The fields without which an activity cannot be answered safely, and how to tell that one is missing.
SAFETY_REFUSALS = {
    "channelId": lambda activity: not _text(activity.get("channelId")),
    "serviceUrl": lambda activity: not _text(activity.get("serviceUrl")),
    "conversation.id": lambda activity: not _text(_account_id(activity, "conversation")),
    "from.id": lambda activity: not _text(_account_id(activity, "from")),
}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _account_id(activity: dict[str, Any], field: str) -> object:
    account = activity.get(field)
    return account.get("id") if isinstance(account, dict) else None


class BothBots:
    """The real bot and the stock echo bot on one event loop in a thread of their own."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready: Future[tuple[str, str]] = Future()
        self._thread = threading.Thread(target=self._run, name="lenient-bots", daemon=True)
        self._stock_serializer = botbuilder_cloud_adapter.serializer_helper

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        stock_runner = web.AppRunner(stock.create_app(), handle_signals=False, access_log=None)
        try:
            async with running_bot({"BOT_REPLY_TIMEOUT_SECONDS": "5"}) as ours:
                await stock_runner.setup()
                site = web.TCPSite(stock_runner, "127.0.0.1", 0)
                await site.start()
                stock_url = f"http://127.0.0.1:{stock_runner.addresses[0][1]}/api/messages"
                self._ready.set_result((ours.messages_url, stock_url))
                await self._stop.wait()
        except BaseException as error:
            if not self._ready.done():
                self._ready.set_exception(error)
            raise
        finally:
            await stock_runner.cleanup()

    def __enter__(self) -> tuple[str, str]:
        self._thread.start()
        return self._ready.result(timeout=30)

    def __exit__(self, *_: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        # stock.create_app() swaps botbuilder's serialiser for its one workaround; other tests want the original.
        botbuilder_cloud_adapter.serializer_helper = self._stock_serializer


@pytest.fixture(scope="module")
def channel_url() -> Iterator[str]:
    with ChannelStandIn() as channel:
        yield channel.service_url


@pytest.fixture(scope="module")
def bots() -> Iterator[tuple[str, str]]:
    with BothBots() as urls:
        yield urls


def _post(url: str, activity: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/api/messages", json.dumps(activity), {"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    try:
        body = json.loads(payload) if payload else {}
    except ValueError:
        body = {"raw": payload[:200].decode(errors="replace")}
    return response.status, body if isinstance(body, dict) else {"body": body}


ID_ALPHABET = string.ascii_letters + string.digits + "-_:.@|"
ids = st.sampled_from(["user-1", "dl_8f3a", "29:1AbC", "bot@example"]) | st.text(ID_ALPHABET, max_size=24)
accounts = st.fixed_dictionaries(
    {},
    optional={
        "id": ids,
        "name": st.sampled_from(["User", "", "Ünïcødé ✓"]),
        "role": st.sampled_from(["user", "bot", "skill", ""]),
        "aadObjectId": st.uuids().map(str),
    },
)
conversations = st.fixed_dictionaries(
    {}, optional={"id": ids, "isGroup": st.booleans(), "conversationType": st.sampled_from(["personal", ""])}
)
timestamps = st.sampled_from(
    [
        "2026-12-02T17:00:00Z",
        "2026-12-02T17:00:00.123Z",
        "2026-12-02T17:00:00.1234567Z",  # .NET's seven digits of fraction
        "2026-12-02T18:00:00.123+01:00",
        "2026-12-02T17:00:00",
    ]
)
texts = st.sampled_from(["help", "hi", "feedback", "4", "skip", "cancel", "what are you?", "", "  "]) | st.text(
    max_size=40
).filter(lambda text: text.strip().lower().rstrip(".!") != "/fail")


@st.composite
def activities(draw: st.DrawFn, service_urls: st.SearchStrategy[str]) -> dict[str, Any]:
    activity_type = draw(
        st.sampled_from(
            ["message", "conversationUpdate", "event", "typing", "messageReaction", "endOfConversation", "invoke"]
        )
    )
    activity: dict[str, Any] = {"type": activity_type, "serviceUrl": draw(service_urls)}
    optional: dict[str, st.SearchStrategy[Any]] = {
        "id": ids,
        "channelId": st.sampled_from(["emulator", "directline", "webchat", "msteams", ""]),
        "conversation": conversations,
        "from": accounts,
        "recipient": accounts,
        "locale": st.sampled_from(["en-US", "de-DE", "", "xx", "EN_us"]),
        "timestamp": timestamps,
        "localTimestamp": timestamps,
        "deliveryMode": st.sampled_from(["normal", "expectReplies"]),
        "text": texts,
        "textFormat": st.sampled_from(["plain", "markdown"]),
        "channelData": st.fixed_dictionaries({}, optional={"clientActivityID": ids, "clientTimestamp": timestamps}),
        "entities": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["ClientCapabilities", "mention"])})),
        "attachments": st.just([]),
        "membersAdded": st.lists(accounts, max_size=2),
        "name": st.sampled_from(["webchat/join", "startConversation", ""]),
        "value": st.none() | st.dictionaries(st.sampled_from(["a", "b"]), st.integers()),
    }
    for field, values in optional.items():
        if draw(st.booleans()):
            activity[field] = draw(values)
    return activity


@st.composite
def local_service_urls(draw: st.DrawFn, base: str) -> str:
    port = base.rsplit(":", 1)[1]
    return draw(st.sampled_from([base, base + "/", f"http://localhost:{port}"]))


def _assert_answered_like_stock(bots: tuple[str, str], activity: dict[str, Any]) -> None:
    ours_url, stock_url = bots
    stock_status, _ = _post(stock_url, activity)
    status, body = _post(ours_url, activity)
    assert status < 500, (status, body, activity)
    if not 200 <= stock_status < 300 or 200 <= status < 300:
        return
    # Stock answered, the bot did not: only a documented safety refusal, naming exactly what is missing.
    assert status == 400, (status, body, activity)
    assert body["error"]["code"] == catalog.REJECT_NOT_AN_ACTIVITY, body
    lacking = [name for name, missing in SAFETY_REFUSALS.items() if missing(activity)]
    assert lacking, (body, activity)
    assert body["error"]["message"] == f"the Activity lacks {', '.join(lacking)}", (body, activity)


# What the Direct Line emulator offline-directline 1.3.1 sends: stock answers both, the bot refused both.
def _offline_directline_activities(service_url: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "conversationUpdate",
            "channelId": "emulator",
            "serviceUrl": service_url,
            "conversation": {"id": "4b2c9a1e-offline"},
            "id": "0f1d1f6a-1",
            "membersAdded": [],
            "membersRemoved": [],
            "from": {"id": "offline-directline", "name": "Offline Directline Server"},
        },
        {
            "type": "message",
            "text": "what are you?",
            "textFormat": "plain",
            "from": {"id": "dl_user", "name": "", "role": "user"},
            "channelData": {"clientActivityID": "1733158800000abc", "clientTimestamp": "2026-12-02T17:00:00.000Z"},
            "channelId": "emulator",
            "serviceUrl": service_url,
            "conversation": {"id": "4b2c9a1e-offline"},
            "id": "0f1d1f6a-2",
        },
    ]


def test_what_a_direct_line_emulator_sends_is_answered(bots: tuple[str, str], channel_url: str) -> None:
    ours_url, stock_url = bots
    for activity in _offline_directline_activities(channel_url):
        stock_status, _ = _post(stock_url, activity)
        status, body = _post(ours_url, activity)
        assert (stock_status, status) == (201, 201), (body, activity)
        # A new id: the same id again is a redelivery, which the bot acknowledges without answering twice.
        again = {**activity, "id": f"{activity['id']}-again", "deliveryMode": "expectReplies"}
        answered_at_once = _post(ours_url, again)
        assert answered_at_once[0] == 200
    entry = KnowledgeBase.load().match("what are you?")
    assert entry is not None
    replies = answered_at_once[1]["activities"]
    assert [reply["text"] for reply in replies if reply["type"] == "message"] == [entry.answer]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@example(data=None)  # the same example for every run: recipient, locale and timestamp all missing
def test_every_activity_stock_botbuilder_answers_the_bot_answers(
    bots: tuple[str, str], channel_url: str, data: st.DataObject | None
) -> None:
    if data is None:
        activity = {
            "type": "message",
            "text": "help",
            "channelId": "emulator",
            "serviceUrl": channel_url,
            "conversation": {"id": "lenient"},
            "from": {"id": "user"},
        }
    else:
        activity = data.draw(activities(local_service_urls(channel_url)), label="activity")
    _assert_answered_like_stock(bots, activity)


def test_an_activity_without_service_url_is_refused_before_any_reply_is_attempted(bots: tuple[str, str]) -> None:
    activity = {"type": "message", "text": "hi", "channelId": "emulator", "conversation": {"id": "c"}}
    activity["from"] = {"id": "u"}
    status, body = _post(bots[0], activity)
    assert status == 400
    assert body["error"]["message"] == "the Activity lacks serviceUrl"
