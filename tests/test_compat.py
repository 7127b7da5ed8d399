"""The botbuilder 4.17.1 defects bot/compat/ works around are still there, and the workarounds remove them; the speed
rewrites of bot/fastpath/ do exactly what botbuilder does.

When a botbuilder upgrade fixes a defect, the `stock_*` test here fails: the workaround can then go.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from botbuilder.core import InvokeResponse, TurnContext, serializer_helper
from botbuilder.core.bot_state import CachedBotState
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount, ExpectedReplies
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import ClaimsIdentity
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonpickle.pickler import Pickler
from msrest.exceptions import SerializationError
from msrest.serialization import Deserializer, Model
from msrest.universal_http.requests import ClientRetryPolicy

from bot import compat
from bot.adapter import ChatAdapter
from bot.compat import openid_metadata
from bot.fastpath import activity_copy, state_fingerprint
from bot.fastpath.schema_codec import SCHEMA_CODEC, parse_timestamp
from bot.settings import Settings

STOCK_SAFE_CODES = [i for i in range(500) if i != 408] + [501, 505]


def test_stock_expect_replies_serialisation_fails_on_the_dict_botbuilder_builds() -> None:
    body = ExpectedReplies(activities=[Activity(type="message", text="hi")]).serialize()
    with pytest.raises(AttributeError, match="is_xml_model"):
        serializer_helper(body)


def test_invoke_response_body_accepts_serialised_and_model_bodies() -> None:
    replies = ExpectedReplies(activities=[Activity(type="message", text="hi")])
    expected = replies.serialize()
    assert compat.invoke_response_body(InvokeResponse(status=200, body=expected)) == expected
    assert compat.invoke_response_body(InvokeResponse(status=200, body=replies)) == expected
    assert compat.invoke_response_body(InvokeResponse(status=501)) is None


async def test_creating_the_adapter_makes_msrest_retry_policies_cheap_without_changing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ClientRetryPolicy, "safe_codes", list(STOCK_SAFE_CODES))
    async with aiohttp.ClientSession() as session:
        ChatAdapter(Settings(), session)
    assert isinstance(ClientRetryPolicy.safe_codes, frozenset)
    assert ClientRetryPolicy().policy.status_forcelist == [i for i in range(999) if i not in STOCK_SAFE_CODES]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"type": 7}, "'type'"),
        ({"type": "message", "conversation": "c"}, "'conversation'"),
        ({"type": "message", "from": {"id": 5}}, "'from.id'"),
        ({"type": "message", "timestamp": "not a time"}, "not a valid Activity"),
        ({"text": "no type"}, "no 'type'"),
    ],
)
def test_malformed_activities_become_value_errors_naming_the_problem(body: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        compat.parse_activity(body)


async def test_authentication_failures_of_any_kind_become_permission_errors() -> None:
    class Exploding:
        async def authenticate_request(self, activity: Activity, header: str) -> None:
            raise KeyError("kid")  # what the JWT code raises for some malformed tokens

    with pytest.raises(PermissionError, match="KeyError"):
        await compat.authenticate_or_refuse(Exploding(), Activity(type="message"), "Bearer x")


# ---- 6. connector and user token clients cached across turns -----------------------------------------------------


def _activity(service_url: str = "http://127.0.0.1:9", conversation: str = "c1") -> Activity:
    return Activity(
        type="message",
        id="a1",
        text="hi",
        channel_id="webchat",
        service_url=service_url,
        conversation=ConversationAccount(id=conversation),
        from_property=ChannelAccount(id="user"),
        recipient=ChannelAccount(id="bot"),
    )


async def _turn_clients(adapter: CloudAdapter, activity: Activity) -> tuple[object, object]:
    seen: dict[str, object] = {}

    async def logic(context: TurnContext) -> None:
        seen["connector"] = context.turn_state[adapter.BOT_CONNECTOR_CLIENT_KEY]
        seen["user_token"] = context.turn_state[adapter.USER_TOKEN_CLIENT_KEY]

    authenticated = await adapter.bot_framework_authentication.authenticate_request(activity, "")
    await adapter.process_activity(authenticated, activity, logic)
    return seen["connector"], seen["user_token"]


async def test_stock_cloud_adapter_builds_new_clients_for_every_turn() -> None:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(Settings().botbuilder_configuration()))
    first = await _turn_clients(adapter, _activity())
    second = await _turn_clients(adapter, _activity())
    assert first[0] is not second[0]
    assert first[1] is not second[1]


async def test_the_adapter_reuses_clients_per_service_url_and_app_id() -> None:
    async with aiohttp.ClientSession() as session:
        adapter = ChatAdapter(Settings(), session)
        first = await _turn_clients(adapter, _activity())
        second = await _turn_clients(adapter, _activity(conversation="c2"))
        elsewhere = await _turn_clients(adapter, _activity(service_url="http://127.0.0.1:8"))
    assert first[0] is second[0]
    assert first[1] is second[1] is elsewhere[1]
    assert elsewhere[0] is not first[0]
    assert isinstance(first[0], ConnectorClient)
    assert isinstance(elsewhere[0], ConnectorClient)
    assert first[0].config.base_url == "http://127.0.0.1:9"
    assert elsewhere[0].config.base_url == "http://127.0.0.1:8"


async def test_the_client_cache_is_bounded_least_recently_used_first_out() -> None:
    inner = ConfigurationBotFrameworkAuthentication(Settings().botbuilder_configuration())
    authentication = compat.CachingBotFrameworkAuthentication(inner, limit=2)
    identity = ClaimsIdentity({}, True)
    factory = authentication.create_connector_factory(identity)
    a = await factory.create("http://127.0.0.1:1", None)
    await factory.create("http://127.0.0.1:2", None)
    assert await factory.create("http://127.0.0.1:1", None) is a  # now the most recently used
    await factory.create("http://127.0.0.1:3", None)  # evicts :2
    assert await factory.create("http://127.0.0.1:1", None) is a
    assert len(authentication._connectors) == 2


# ---- 7. the schema codec converts exactly as msrest does -----------------------------------------------------------

_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5), st.floats(allow_nan=False))
_JSON = st.recursive(
    _JSON_LEAF,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
_ACCOUNT = st.fixed_dictionaries(
    {"id": st.text(max_size=6)}, optional={"name": st.text(max_size=6), "role": st.sampled_from(["user", "bot"])}
)
_TIMESTAMP = st.sampled_from(
    ["2025-01-01T12:00:00.000Z", "2025-01-01T13:00:00.1234567+01:00", "2025-06-30T23:59:59Z", "not a time", ""]
)
_ACTIVITY_FIELDS = {
    "type": st.sampled_from(["message", "conversationUpdate", "event", "invoke"]),
    "id": st.text(max_size=8),
    "text": st.text(max_size=20),
    "channelId": st.sampled_from(["webchat", "msteams", "emulator"]),
    "serviceUrl": st.just("http://127.0.0.1:9"),
    "timestamp": _TIMESTAMP,
    "localTimestamp": _TIMESTAMP,
    "from": _ACCOUNT,
    "recipient": _ACCOUNT,
    "conversation": st.fixed_dictionaries({"id": st.text(max_size=8)}, optional={"isGroup": st.booleans()}),
    "membersAdded": st.lists(_ACCOUNT, max_size=2),
    "entities": st.lists(st.fixed_dictionaries({"type": st.text(max_size=6)}), max_size=2),
    "attachments": st.lists(
        st.fixed_dictionaries({"contentType": st.text(max_size=6)}, optional={"content": _JSON}), max_size=2
    ),
    "channelData": _JSON,
    "value": _JSON,
    "listenFor": st.lists(st.text(max_size=4), max_size=2),
    "deliveryMode": st.sampled_from(["normal", "expectReplies"]),
    "suggestedActions": st.fixed_dictionaries(
        {"to": st.lists(st.text(max_size=4), max_size=2)},
        optional={"actions": st.lists(st.fixed_dictionaries({"type": st.text(max_size=4)}), max_size=2)},
    ),
}
_ODD_VALUES = st.one_of(st.integers(), st.booleans(), st.text(max_size=3), st.lists(st.integers(), max_size=2))


def _msrest_outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", call()
    except Exception as error:
        return "error", type(error).__name__


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.fixed_dictionaries({}, optional=_ACTIVITY_FIELDS),
    odd=st.dictionaries(st.sampled_from([*_ACTIVITY_FIELDS, "unknownField", "x-extra"]), _ODD_VALUES, max_size=2),
)
def test_the_codec_deserialises_and_serialises_exactly_as_msrest(body: dict[str, Any], odd: dict[str, Any]) -> None:
    body = {**body, **odd}  # well-formed fields, then some wrong types and unknown keys
    expected = _msrest_outcome(lambda: Activity().deserialize(copy.deepcopy(body)))
    actual = _msrest_outcome(lambda: SCHEMA_CODEC.deserialize(Activity, copy.deepcopy(body)))
    assert actual[0] == expected[0]
    if expected[0] == "error":
        assert actual[1] == expected[1]
        return
    assert actual[1] == expected[1]  # msrest models compare their attributes, additional_properties included
    activity = expected[1]
    assert isinstance(activity, Activity)
    assert json.dumps(SCHEMA_CODEC.serialize(activity)) == json.dumps(activity.serialize())
    replies = ExpectedReplies(activities=[activity, Activity(type=ActivityTypes.message, text="x")])
    assert json.dumps(SCHEMA_CODEC.serialize(replies)) == json.dumps(replies.serialize())


_TIMESTAMP_TEXT = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}".format,
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 61),
        st.sampled_from(["", ".0", ".5", ".123", ".000001", ".123456", ".1234567", "."]),
        st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-07:30", "+14:00", "-12:00", "+24:00", "+0100", ""]),
    ),
    st.text(max_size=30),
)


@settings(max_examples=500, deadline=None)
@given(text=_TIMESTAMP_TEXT)
def test_timestamps_parse_exactly_as_msrest_parses_them(text: str) -> None:
    fast = parse_timestamp(text)
    if fast is None:
        return  # left to msrest itself
    expected = Deserializer.deserialize_iso(text)
    assert fast == expected
    assert type(fast.tzinfo) is type(expected.tzinfo)
    assert (fast.utcoffset(), fast.tzname(), repr(fast)) == (expected.utcoffset(), expected.tzname(), repr(expected))


def test_the_timestamps_channels_send_are_parsed_without_isodate() -> None:
    for text in ("2025-01-01T12:00:00.000Z", "2025-01-01T13:00:00.123456+01:00", "2025-06-30T23:59:59-07:00"):
        parsed = parse_timestamp(text)
        assert parsed is not None
        assert parsed == Deserializer.deserialize_iso(text)


def test_the_codec_hands_what_it_does_not_know_to_msrest() -> None:
    odd = Activity(type="message", text="hi", from_property={"id": "not a model"})
    with pytest.raises(SerializationError):
        odd.serialize()
    with pytest.raises(SerializationError):
        SCHEMA_CODEC.serialize(odd)
    assert SCHEMA_CODEC.deserialize(Activity, {"type": "message", "text": 7}).text == "7"  # msrest's coercion


def test_parsing_and_answering_an_activity_do_not_go_through_msrest(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {
        "type": "message",
        "id": "a1",
        "text": "what can you do?",
        "timestamp": "2025-01-01T12:00:00.000Z",
        "channelId": "webchat",
        "serviceUrl": "http://127.0.0.1:9",
        "from": {"id": "user", "role": "user"},
        "recipient": {"id": "bot"},
        "conversation": {"id": "c1"},
        "entities": [{"type": "ClientCapabilities", "requiresBotState": True}],
        "channelData": {"clientActivityID": "x", "nested": [1, {"a": "b"}]},
        "deliveryMode": "expectReplies",
    }

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("msrest's generic (de)serialiser was used")

    monkeypatch.setattr(Model, "deserialize", refuse)
    monkeypatch.setattr(Model, "serialize", refuse)
    monkeypatch.setattr(Deserializer, "deserialize_iso", refuse)
    activity = compat.parse_activity(body)
    assert activity.from_property.id == "user"
    assert activity.channel_data == body["channelData"]
    reply = Activity(type=ActivityTypes.message, text="hello", reply_to_id="a1", recipient=activity.from_property)
    serialised = SCHEMA_CODEC.serialize(ExpectedReplies(activities=[reply]))
    assert serialised == {
        "activities": [
            {"type": "message", "replyToId": "a1", "recipient": {"id": "user", "role": "user"}, "text": "hello"}
        ]
    }


async def test_expect_replies_results_are_serialised_by_the_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as session:
        adapter = ChatAdapter(Settings(), session)
        activity = _activity()
        activity.delivery_mode = "expectReplies"

        async def logic(context: TurnContext) -> None:
            await context.send_activity("hello")

        def refuse(*_: object, **__: object) -> None:
            raise AssertionError("msrest's serialiser was used")

        monkeypatch.setattr(Model, "serialize", refuse)
        authenticated = await adapter.bot_framework_authentication.authenticate_request(activity, "")
        response = await adapter.process_activity(authenticated, activity, logic)
    assert response.status == 200
    assert [reply["text"] for reply in response.body["activities"]] == ["hello"]


# ---- 8. bot state fingerprints --------------------------------------------------------------------------------------


def test_stock_bot_state_fingerprints_with_jsonpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CachedBotState, "compute_hash", state_fingerprint._STOCK_FINGERPRINT)
    calls: list[object] = []
    original = Pickler.flatten

    def flatten(self: Pickler, obj: object, **kwargs: Any) -> object:
        calls.append(obj)
        return original(self, obj, **kwargs)

    monkeypatch.setattr(Pickler, "flatten", flatten)
    CachedBotState({"a": 1})
    assert calls


def test_bot_state_changes_are_detected_without_jsonpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    state_fingerprint.patch_bot_state_fingerprint()

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("jsonpickle was used")

    monkeypatch.setattr(Pickler, "flatten", refuse)
    state = CachedBotState({"DialogState": {"dialogStack": [{"id": "FeedbackWaterfall", "state": {"step": 0}}]}})
    assert not state.is_changed
    state.state["DialogState"]["dialogStack"][0]["state"]["step"] = 1
    assert state.is_changed
    state.hash = state.compute_hash(state.state)
    assert not state.is_changed
    del state.state["DialogState"]
    assert state.is_changed


def test_state_that_cannot_be_pickled_is_fingerprinted_the_stock_way() -> None:
    state_fingerprint.patch_bot_state_fingerprint()
    state = CachedBotState({"callback": lambda: None, "count": 1})
    assert not state.is_changed
    state.state["count"] = 2
    assert state.is_changed


async def test_creating_the_adapter_installs_the_cheap_state_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CachedBotState, "compute_hash", state_fingerprint._STOCK_FINGERPRINT)
    async with aiohttp.ClientSession() as session:
        ChatAdapter(Settings(), session)
    assert CachedBotState.compute_hash is state_fingerprint._state_fingerprint


# ---- 9. OpenID metadata fetched off the event loop ----------------------------------------------------------------


class _FakeResponse:
    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def raise_for_status(self) -> None:
        return None

    def json(self) -> dict[str, Any]:
        return self._payload


async def test_signing_keys_are_fetched_on_a_thread_with_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    compat.patch_openid_metadata_fetch()
    loop_thread = threading.get_ident()
    calls: list[tuple[str, object, int]] = []

    def fake_get(url: str, timeout: object = None, **_: object) -> _FakeResponse:
        calls.append((url, timeout, threading.get_ident()))
        if url.endswith("/openid"):
            return _FakeResponse({"jwks_uri": "http://127.0.0.1:9/keys"})
        return _FakeResponse({"keys": [{"kid": "k1"}]})

    monkeypatch.setattr(openid_metadata.requests, "get", fake_get)
    metadata = _OpenIdMetadata("http://127.0.0.1:9/openid")
    await metadata._refresh()
    assert [url for url, _, _ in calls] == ["http://127.0.0.1:9/openid", "http://127.0.0.1:9/keys"]
    assert all(timeout == openid_metadata.OPENID_TIMEOUT_SECONDS for _, timeout, _ in calls)
    assert all(thread != loop_thread for _, _, thread in calls)
    assert metadata.keys == [{"kid": "k1"}]


# ---- 10. outgoing activities copied without copy.deepcopy's dispatch ---------------------------------------------


def _containers(value: Any, found: set[int] | None = None) -> set[int]:
    """The ids of every list, dict and model reachable from `value`."""
    found = set() if found is None else found
    if isinstance(value, list | dict | Model) and id(value) not in found:
        found.add(id(value))
        children = vars(value) if isinstance(value, Model) else value
        for item in children.values() if isinstance(children, dict) else children:
            _containers(item, found)
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.fixed_dictionaries({}, optional=_ACTIVITY_FIELDS))
def test_an_outgoing_activity_is_copied_as_deepcopy_copies_it(body: dict[str, Any]) -> None:
    try:
        activity = Activity().deserialize(body)
    except Exception:
        return  # not an activity
    copied = activity_copy.copy_activity(activity)
    assert copied == copy.deepcopy(activity)
    assert json.dumps(copied.serialize()) == json.dumps(activity.serialize())
    assert not _containers(copied) & _containers(activity)  # nothing mutable is shared with the original


def test_shared_parts_cycles_and_other_types_are_copied_as_deepcopy_copies_them() -> None:
    shared = {"k": [1, 2]}
    data: dict[str, Any] = {
        "a": shared,
        "b": shared,
        "when": parse_timestamp("2025-01-01T12:00:00Z"),
        "s": {1},
    }
    data["self"] = data
    activity = Activity(type=ActivityTypes.message, channel_data=data, from_property=ChannelAccount(id="u"))
    activity.recipient = activity.from_property
    copied = activity_copy.copy_activity(activity)
    assert copied.channel_data["a"] is copied.channel_data["b"] is not shared
    assert copied.channel_data["self"] is copied.channel_data
    assert copied.recipient is copied.from_property is not activity.from_property
    assert copied.channel_data["when"] == data["when"]
    assert copied.channel_data["s"] == {1}
    assert copied.channel_data["s"] is not data["s"]
    assert copied.type is ActivityTypes.message


def test_a_shallow_copy_is_what_copy_copy_makes() -> None:
    account = ChannelAccount(id="u", name="User", role="user")
    account.additional_properties = {"x": [1]}
    copied = activity_copy.shallow_copy(account)
    assert copied == copy.copy(account)
    assert copied is not account
    assert copied.additional_properties is account.additional_properties
    handlers = [len]
    assert activity_copy.shallow_copy(handlers) == handlers
    assert activity_copy.shallow_copy(handlers) is not handlers
    assert activity_copy.shallow_copy(None) is None
    assert activity_copy.shallow_copy({1: 2}) == {1: 2}


async def test_sending_copies_activities_without_copy_deepcopy(monkeypatch: pytest.MonkeyPatch) -> None:
    from botbuilder.core import MessageFactory, turn_context
    from botbuilder.core.adapters import TestAdapter
    from botbuilder.schema import CardAction

    monkeypatch.setattr(turn_context, "deepcopy", copy.deepcopy)  # botbuilder's own
    monkeypatch.setattr(turn_context, "copy", copy.copy)
    async with aiohttp.ClientSession() as session:
        ChatAdapter(Settings(), session)  # installs the workarounds
    assert turn_context.deepcopy is activity_copy.copy_activity
    assert turn_context.copy is activity_copy.shallow_copy

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("copy.deepcopy was used")

    monkeypatch.setattr(copy, "deepcopy", refuse)
    monkeypatch.setattr(copy, "copy", refuse)
    adapter = TestAdapter()
    context = TurnContext(adapter, _activity())
    reply = MessageFactory.suggested_actions([CardAction(type="imBack", title="help", value="help")], "I can help.")
    await context.send_activity(reply)
    (sent,) = adapter.activity_buffer
    assert sent is not reply
    assert sent.text == "I can help."
    assert sent.suggested_actions.actions[0] is not reply.suggested_actions.actions[0]
    assert sent.conversation.id == "c1"


async def test_a_malformed_adaptive_card_action_is_answered_as_a_serialisable_bot_framework_error() -> None:
    """botbuilder puts a Python Exception in the AdaptiveCardInvokeResponse it answers; msrest cannot serialise it."""
    from botbuilder.core import ActivityHandler, TurnContext
    from botbuilder.core.adapters import TestAdapter

    activity = Activity(
        type=ActivityTypes.invoke,
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Submit"}},
        channel_id="test",
        conversation=ConversationAccount(id="c"),
        from_property=ChannelAccount(id="u"),
        recipient=ChannelAccount(id="b"),
    )
    stock = await ActivityHandler().on_invoke_activity(TurnContext(TestAdapter(), activity))
    with pytest.raises(SerializationError):
        serializer_helper(stock.body)
    fixed = compat.serialisable_invoke_response(stock)
    assert fixed is not None
    assert fixed.status == 400
    assert json.loads(json.dumps(compat.invoke_response_body(fixed))) == {
        "statusCode": 400,
        "type": "application/vnd.microsoft.error",
        "value": {"code": "NotSupported", "message": fixed.body["value"]["message"]},
    }
    assert fixed.body["value"]["message"]


@pytest.mark.parametrize("value", ["..", ".", "a/b", "c\ud800", "x y"])
def test_reply_url_segments_never_resolve_and_encode_every_id(value: str) -> None:
    from yarl import URL

    segment = compat.path_segment(value)
    url = URL(f"http://h/v3/conversations/{segment}/activities", encoded=True)
    assert url.raw_parts[1:4] == ("v3", "conversations", segment)
    assert "/" not in segment
    assert segment not in (".", "..")


def _modules(package: str) -> list[Any]:
    import importlib
    import pkgutil

    root = importlib.import_module(package)
    return [importlib.import_module(f"{package}.{info.name}") for info in pkgutil.iter_modules(root.__path__)]


@pytest.mark.parametrize("module", _modules("bot.compat") + _modules("bot.fastpath"), ids=lambda m: m.__name__)
def test_every_workaround_and_rewrite_names_tests_that_exist(module: Any) -> None:
    """Each module of bot/compat/ and bot/fastpath/ says why it exists and names its tests; the named tests exist."""
    from pathlib import Path

    doc = module.__doc__ or ""
    assert "Why" in doc, f"{module.__name__}: the docstring does not say why"
    if module.__name__.startswith("bot.compat."):
        assert "Defect" in doc, f"{module.__name__}: the docstring does not name the defect"
    named = re.findall(r"(tests/test_\w+\.py)(?:::(\w+))?", doc)
    assert named, f"{module.__name__}: the docstring names no test"
    root = Path(__file__).resolve().parent.parent
    for path, test in named:
        source = (root / path).read_text(encoding="utf-8")
        assert not test or re.search(rf"^(async )?def {test}\(", source, re.M), f"{module.__name__}: {path}::{test}"
