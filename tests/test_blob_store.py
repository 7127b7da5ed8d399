"""BOT_STATE_STORE and the blob state store: settings, the state codec, and the store against a real Azurite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient
from botbuilder.dialogs import DialogInstance, DialogState
from botbuilder.dialogs.prompts import PromptOptions
from botbuilder.schema import ActionTypes, Activity, CardAction, SuggestedActions

from bot.__main__ import banner
from bot.adapter import ERROR_MESSAGE
from bot.settings import ConfigError, Settings
from bot.storage import StateConflict, StateStoreError
from bot.storage.blob import BlobStateStorage, blob_name
from bot.storage.codec import StateCodecError, dumps, loads
from telemetry import catalog
from telemetry.config import TelemetryConfig
from tests.support.azurite import Azurite, running_azurite
from tests.support.botserver import running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn

BLOB = {"BOT_STATE_STORE": "blob", "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"}


# ---- settings -------------------------------------------------------------------------------------------------------


def test_the_store_defaults_to_memory_and_to_sqlite_with_a_file_or_workers(tmp_path: Path) -> None:
    assert Settings.from_env({}).state_store == "memory"
    assert Settings.from_env({"BOT_STATE_DB": str(tmp_path / "s.db")}).state_store == "sqlite"
    assert Settings.from_env({"BOT_WORKERS": "2"}).state_store == "sqlite"
    blob = Settings.from_env(BLOB)
    assert (blob.state_store, blob.blob_container) == ("blob", "bot-state")
    assert "UseDevelopmentStorage" not in repr(blob), "the connection string may hold an account key"


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        ({"BOT_STATE_STORE": "redis"}, "BOT_STATE_STORE", "memory, sqlite, blob"),
        ({"BOT_STATE_STORE": "memory", "BOT_WORKERS": "2"}, "BOT_STATE_STORE", "private to one process"),
        ({"BOT_STATE_STORE": "blob"}, "AZURE_STORAGE_CONNECTION_STRING", "BOT_STATE_BLOB_ACCOUNT_URL"),
        (
            {**BLOB, "BOT_STATE_BLOB_ACCOUNT_URL": "https://a.blob.core.windows.net"},
            "BOT_STATE_BLOB_ACCOUNT_URL",
            "either",
        ),
        ({**BLOB, "AZURE_STORAGE_CONNECTION_STRING": "not a connection string"}, "AZURE_STORAGE_CONNECTION_STRING", ""),
        (
            {"BOT_STATE_STORE": "blob", "BOT_STATE_BLOB_ACCOUNT_URL": "http://a.blob.core.windows.net"},
            "BOT_STATE_BLOB_ACCOUNT_URL",
            "https://",
        ),
        ({**BLOB, "BOT_STATE_BLOB_CONTAINER": "Bot_State"}, "BOT_STATE_BLOB_CONTAINER", "lowercase"),
        ({**BLOB, "BOT_STATE_BLOB_CONTAINER": "a--b"}, "BOT_STATE_BLOB_CONTAINER", "single hyphens"),
    ],
)
def test_bad_store_settings_name_the_variable(env: dict[str, str], variable: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert raised.value.variable == variable
    assert fragment in str(raised.value)


async def test_the_managed_identity_store_contacts_nothing_until_used() -> None:
    """The account URL selects DefaultAzureCredential (the App Service identity in Azure); building the store makes
    no request, to the account or to a token endpoint (the autouse network guard fails the test otherwise)."""
    settings = Settings.from_env(
        {"BOT_STATE_STORE": "blob", "BOT_STATE_BLOB_ACCOUNT_URL": "https://example.blob.core.windows.net/"}
    )
    store = BlobStateStorage.from_settings(settings)
    try:
        assert store.target.url == "https://example.blob.core.windows.net/bot-state"
        assert type(store._container.credential).__name__ == "DefaultAzureCredential"
    finally:
        await store.aclose()


# ---- the codec -------------------------------------------------------------------------------------------------------


def _dialog_state() -> dict[str, Any]:
    prompt = Activity(
        type="message",
        text="How would you rate me?",
        suggested_actions=SuggestedActions(actions=[CardAction(type=ActionTypes.im_back, title="4", value="4")]),
    )
    stack = [
        DialogInstance(id="FeedbackDialog", state={"dialogs": {"stepIndex": 1, "values": {"rating": 4}}}),
        DialogInstance(id="FeedbackRatingPrompt", state={"options": PromptOptions(prompt=prompt), "state": {}}),
    ]
    return {"DialogState": DialogState(stack), "processed": ["a", "b"], "odd": {"$type": "user data"}}


def test_dialog_state_survives_the_codec() -> None:
    restored = loads(dumps(_dialog_state()))
    stack = restored["DialogState"].dialog_stack
    assert [instance.id for instance in stack] == ["FeedbackDialog", "FeedbackRatingPrompt"]
    assert stack[0].state["dialogs"]["values"] == {"rating": 4}
    prompt = stack[1].state["options"].prompt
    assert isinstance(prompt, Activity)
    assert (prompt.text, prompt.suggested_actions.actions[0].value) == ("How would you rate me?", "4")
    assert restored["odd"] == {"$type": "user data"}, "a user's dict with a $type key stays a dict"


def test_the_codec_refuses_types_it_does_not_know() -> None:
    with pytest.raises(StateCodecError, match="pathlib"):
        dumps({"where": Path("/tmp")})
    with pytest.raises(StateCodecError, match=r"unknown type 'os\.system'"):
        loads(b'{"x": {"$type": "os.system", "$value": "true"}}')


def test_every_key_becomes_one_flat_blob_name() -> None:
    assert blob_name("msteams/conversations/19:a/b..c") == "msteams%2Fconversations%2F19%3Aa%2Fb..c"
    assert blob_name("x" * 2000).startswith("sha256-")


# ---- against Azurite -------------------------------------------------------------------------------------------------


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[Azurite]:
    yield from running_azurite(tmp_path / "azurite")


def _settings(azurite: Azurite, container: str) -> Settings:
    return Settings.from_env(
        {
            "BOT_STATE_STORE": "blob",
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "BOT_STATE_BLOB_CONTAINER": container,
        }
    )


@pytest.fixture
async def store(azurite: Azurite) -> AsyncIterator[BlobStateStorage]:
    storage = BlobStateStorage.from_settings(_settings(azurite, f"test-{uuid.uuid4().hex[:12]}"))
    yield storage
    await storage.aclose()


async def _container_names(azurite: Azurite) -> set[str]:
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        return {container.name async for container in service.list_containers()}


async def test_write_read_delete_round_trip(store: BlobStateStorage, azurite: Azurite) -> None:
    assert store.target.container not in await _container_names(azurite)
    assert await store.read(["emulator/conversations/c1"]) == {}
    assert store.target.container in await _container_names(azurite), "created on first use"

    await store.write({"emulator/conversations/c1": _dialog_state(), "emulator/users/u1": {"count": 1}})
    found = await store.read(["emulator/conversations/c1", "emulator/users/u1", "emulator/users/nobody"])
    assert set(found) == {"emulator/conversations/c1", "emulator/users/u1"}
    assert found["emulator/users/u1"]["count"] == 1
    assert found["emulator/users/u1"]["e_tag"]
    assert found["emulator/conversations/c1"]["DialogState"].dialog_stack[0].id == "FeedbackDialog"

    await store.delete(["emulator/users/u1", "emulator/users/never-written"])
    assert set(await store.read(["emulator/conversations/c1", "emulator/users/u1"])) == {"emulator/conversations/c1"}


async def test_a_stale_e_tag_is_a_conflict_and_star_overwrites(store: BlobStateStorage) -> None:
    await store.write({"k": {"turn": 0}})
    first = (await store.read(["k"]))["k"]
    second = (await store.read(["k"]))["k"]
    first["turn"] = 1
    await store.write({"k": first})  # first writer wins
    second["turn"] = 2
    with pytest.raises(StateConflict, match="changed since it was read"):
        await store.write({"k": second})
    assert (await store.read(["k"]))["k"]["turn"] == 1, "the stale write changed nothing"
    # The store updated the winner's e-tag: writing it again in the same turn builds on the first write.
    first["turn"] = 3
    await store.write({"k": first})
    await store.write({"k": {"turn": 4, "e_tag": "*"}})
    assert (await store.read(["k"]))["k"]["turn"] == 4


async def test_a_deleted_container_is_created_again(store: BlobStateStorage, azurite: Azurite) -> None:
    await store.write({"k": {"v": 1}})
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.delete_container(store.target.container)
    assert await store.read(["k"]) == {}
    await store.write({"k": {"v": 2}})
    assert (await store.read(["k"]))["k"]["v"] == 2


async def test_an_outage_fails_clearly_and_ends_without_a_restart(store: BlobStateStorage, azurite: Azurite) -> None:
    await store.write({"k": {"v": 1}})
    azurite.stop()
    with pytest.raises(StateStoreError) as raised:
        await store.read(["k"])
    message = str(raised.value)
    assert f"127.0.0.1:{azurite.port}" in message
    assert repr(store.target.container) in message
    assert "cannot reach the storage account" in message
    with pytest.raises(StateStoreError, match="writing an item failed"):
        await store.write({"k": {"v": 2}})

    azurite.start()  # same port, same workspace: the account is back with its data
    assert (await store.read(["k"]))["k"]["v"] == 1


# ---- through the bot -------------------------------------------------------------------------------------------------


def _texts(response: Any) -> list[str]:
    return [a.get("text") or "" for a in response.body.get("activities", []) if a.get("type") == "message"]


async def test_a_storage_outage_is_the_usual_apology_and_the_bot_recovers(
    azurite: Azurite, channel: ChannelStandIn, azure_sdk_offline: None, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"BOT_STATE_STORE": "blob", "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    async with running_bot(env) as bot, EmulatorClient(bot.messages_url, channel.service_url) as user:
        assert "How would you rate me" in " ".join(_texts(await user.expect_replies("feedback")))
        azurite.stop()
        failed = await user.expect_replies("4")
        assert _texts(failed) == [ERROR_MESSAGE]
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert "StateStoreError" in logged
        # The address itself is masked in logs (telemetry/privacy.py); the port and container say which store.
        assert f":{azurite.port}, container 'bot-state')" in logged
        assert "cannot reach the storage account" in logged

        azurite.start()  # the same bot process, no restart: the dialog is where the failed turn found it
        comment = await user.expect_replies("4")
        assert "Any comment" in " ".join(_texts(comment))
        assert "You rated me 4/5" in " ".join(_texts(await user.expect_replies("skip")))


async def test_every_blob_call_is_a_storage_dependency_of_its_turn_and_is_measured(
    azurite: Azurite, channel: ChannelStandIn, ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    env = {"BOT_STATE_STORE": "blob", "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    async with (
        running_bot(env, connection_string=ingestion.connection_string) as bot,
        EmulatorClient(bot.messages_url, channel.service_url) as user,
    ):
        assert (await user.expect_replies("feedback")).status == 200
        azurite.stop()
        assert _texts(await user.expect_replies("4")) == [ERROR_MESSAGE]
        azurite.start()
        bot.flush()
        requests = await ingestion.wait_for_async(
            lambda envelopes: [e for e in envelopes if e["data"]["baseType"] == "RequestData"][:2] or None,
            message="the two turns' Requests",
        )
        assert len(requests) == 2
        first, failed = requests
        storage = [
            e
            for e in ingestion.envelopes
            if e["data"]["baseType"] == "RemoteDependencyData"
            and e["data"]["baseData"].get("type") == catalog.AZURE_NAMESPACE_STORAGE
        ]

        def calls_of(request: dict[str, Any]) -> list[dict[str, Any]]:
            operation = request["tags"]["ai.operation.id"]
            return [e["data"]["baseData"] for e in storage if e["tags"]["ai.operation.id"] == operation]

        # The first turn: the container created, conversation and user state read once each (botbuilder reads an
        # empty state again at each use; the store remembers within the turn that they are absent), the state
        # written.
        names = sorted(call["name"] for call in calls_of(first))
        assert names.count(catalog.SPAN_STATE_CREATE_CONTAINER) == 1, names
        assert names.count(catalog.SPAN_STATE_READ) == 2, names
        assert names.count(catalog.SPAN_STATE_WRITE) >= 1, names
        assert all(call["success"] for call in calls_of(first)), "a 404 for a new conversation is no failure"
        outcomes = {call["properties"][catalog.STATE_OUTCOME] for call in calls_of(first)}
        assert outcomes == {"success", "not_found"}
        # The outage: failed dependencies, each saying what failed.
        failures = [call for call in calls_of(failed) if not call["success"]]
        assert failures
        assert {call["properties"][catalog.STATE_OUTCOME] for call in failures} == {"error"}

        failed_reads = await bot.total(
            "bot_state_operation_duration_seconds_count",
            bot_state_store="blob",
            bot_state_operation="read",
            bot_state_outcome="error",
        )
        assert failed_reads >= 1
        assert await bot.total("bot_state_operation_duration_seconds_count", bot_state_outcome="success") >= 3


def test_the_banner_says_where_dialogs_live() -> None:
    telemetry = TelemetryConfig.from_env({})
    assert "in memory (this process only" in banner(Settings.from_env({}), telemetry, False)
    blob = {"BOT_STATE_STORE": "blob", "BOT_STATE_BLOB_ACCOUNT_URL": "https://acct.blob.core.windows.net"}
    shown = banner(Settings.from_env(blob), telemetry, False)
    assert "Conversation state:     Azure Blob Storage, container bot-state (acct.blob.core.windows.net)" in shown
    assert "SQLite (a temporary file) (this host only)" in banner(
        Settings.from_env({"BOT_WORKERS": "2"}), telemetry, False, 2
    )
