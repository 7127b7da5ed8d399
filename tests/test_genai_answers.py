"""The answer engine: knowledge base first, the model second, the fallback when neither answers; its settings."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp import web

from bot.answers.config import PROVIDER_AZURE, PROVIDER_OPENAI, ModelSettings
from bot.answers.engine import MAX_RETRIES, SYSTEM_INSTRUCTIONS
from bot.knowledge import KnowledgeBase
from bot.routes import FALLBACK_TEXT
from bot.settings import ConfigError, Settings
from loadtest.model_standin import ModelStandIn, Scripted
from loadtest.rig.background import BackgroundServer
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient

UNKNOWN_QUESTION = "Which colour is the sky on Mars at noon?"
KNOWN_QUESTION = "what are you?"


@pytest.fixture
async def model_bot(model: ModelStandIn) -> AsyncIterator[RunningBot]:
    async with running_bot(model.bot_env()) as bot:
        yield bot


def texts(body: Any) -> list[str]:
    return [a.get("text") or "" for a in body["activities"] if a.get("type") == "message"]


# ---- settings -------------------------------------------------------------------------------------------------------


def test_no_model_variables_mean_no_model() -> None:
    assert Settings.from_env({}).model is None


def test_openai_compatible_settings() -> None:
    settings = ModelSettings.from_env(
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1/", "OPENAI_API_KEY": "k", "OPENAI_MODEL": "m"}
    )
    assert settings is not None
    assert (settings.provider, settings.model, settings.base_url) == (PROVIDER_OPENAI, "m", "http://127.0.0.1:9/v1")
    assert settings.server == ("127.0.0.1", 9)
    assert not settings.uses_managed_identity


def test_azure_without_a_key_uses_the_managed_identity() -> None:
    env = {"AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "chat"}
    settings = ModelSettings.from_env(env)
    assert settings is not None
    assert (settings.provider, settings.model, settings.server) == (
        PROVIDER_AZURE,
        "chat",
        ("example.openai.azure.com", 443),
    )
    assert settings.uses_managed_identity
    keyed = ModelSettings.from_env({**env, "AZURE_OPENAI_API_KEY": "secret"})
    assert keyed is not None
    assert not keyed.uses_managed_identity
    assert "secret" not in repr(keyed)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"}, "AZURE_OPENAI_DEPLOYMENT"),
        ({"AZURE_OPENAI_DEPLOYMENT": "chat"}, "AZURE_OPENAI_ENDPOINT"),
        ({"AZURE_OPENAI_ENDPOINT": "x.openai.azure.com", "AZURE_OPENAI_DEPLOYMENT": "c"}, "AZURE_OPENAI_ENDPOINT"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_MODEL": "m"}, "OPENAI_API_KEY"),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": "k"}, "OPENAI_MODEL"),
        ({"OPENAI_MODEL": "m", "OPENAI_API_KEY": "k"}, "OPENAI_BASE_URL"),
        ({"OPENAI_BASE_URL": "ftp://h/v1", "OPENAI_API_KEY": "k", "OPENAI_MODEL": "m"}, "OPENAI_BASE_URL"),
        (
            {
                "OPENAI_BASE_URL": "http://h/v1",
                "OPENAI_API_KEY": "k",
                "OPENAI_MODEL": "m",
                "AZURE_OPENAI_ENDPOINT": "https://x",
                "AZURE_OPENAI_DEPLOYMENT": "c",
            },
            "OPENAI_BASE_URL",
        ),
        (
            {
                "OPENAI_BASE_URL": "http://h/v1",
                "OPENAI_API_KEY": "k",
                "OPENAI_MODEL": "m",
                "BOT_MODEL_TIMEOUT_SECONDS": "x",
            },
            "BOT_MODEL_TIMEOUT_SECONDS",
        ),
        (
            {
                "OPENAI_BASE_URL": "http://h/v1",
                "OPENAI_API_KEY": "k",
                "OPENAI_MODEL": "m",
                "BOT_MODEL_PROACTIVE_AFTER_SECONDS": "15",
            },
            "BOT_MODEL_PROACTIVE_AFTER_SECONDS",
        ),
    ],
)
def test_bad_model_settings_name_the_variable(env: Mapping[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env(env)
    assert error.value.variable == variable
    assert str(error.value).startswith(f"{variable}: ")


def test_the_client_does_not_retry_on_its_own() -> None:
    # A retried 429 would be invisible on the chat span and late for the channel (bot/answers/engine.py).
    assert MAX_RETRIES == 0


# ---- turns ----------------------------------------------------------------------------------------------------------


async def test_the_knowledge_base_answers_first_and_the_model_is_not_asked(
    model_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(model_bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies(KNOWN_QUESTION)
    assert response.status == 200
    assert texts(response.body) == [KnowledgeBase.load().match(KNOWN_QUESTION).answer]  # type: ignore[union-attr]
    assert model.requests == []


async def test_the_model_answers_what_the_knowledge_base_cannot_grounded_and_with_history(
    model_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    model.script("Reddish, like butterscotch.", "Blue, oddly.")
    async with EmulatorClient(model_bot.messages_url, channel.service_url) as emulator:
        first = await emulator.expect_replies(UNKNOWN_QUESTION)
        second = await emulator.expect_replies("And at sunset?")
    assert texts(first.body) == ["Reddish, like butterscotch."]
    assert texts(second.body) == ["Blue, oddly."]
    opening, following = model.requests
    system = opening.body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(SYSTEM_INSTRUCTIONS)
    for entry in KnowledgeBase.load().entries:
        assert entry.answer in system["content"]
    assert opening.body["messages"][1:] == [{"role": "user", "content": UNKNOWN_QUESTION}]
    assert following.body["messages"][1:] == [
        {"role": "user", "content": UNKNOWN_QUESTION},
        {"role": "assistant", "content": "Reddish, like butterscotch."},
        {"role": "user", "content": "And at sunset?"},
    ]
    assert opening.body["stream"] is True
    assert opening.body["stream_options"] == {"include_usage": True}
    assert opening.body["model"] == "gpt-4o-mini"


async def test_history_is_bounded(model: ModelStandIn, channel: ChannelStandIn) -> None:
    async with (
        running_bot(model.bot_env(BOT_MODEL_HISTORY_MESSAGES="2")) as bot,
        EmulatorClient(bot.messages_url, channel.service_url) as emulator,
    ):
        for number in range(4):
            await emulator.expect_replies(f"zebra question number {number}")
    last = model.requests[-1].body["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
    assert last[1]["content"] == "zebra question number 2"


@pytest.mark.parametrize("failure", [Scripted(status=500), Scripted(status=429, retry_after=30), Scripted(status=400)])
async def test_when_the_model_fails_the_user_gets_the_fallback_at_once(
    model_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn, failure: Scripted
) -> None:
    model.script(failure)
    async with EmulatorClient(model_bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies(UNKNOWN_QUESTION)
    assert response.status == 200
    assert texts(response.body) == [FALLBACK_TEXT]
    assert len(model.requests) == 1  # not retried


async def test_slash_commands_never_go_to_the_model(
    model_bot: RunningBot, model: ModelStandIn, channel: ChannelStandIn
) -> None:
    async with EmulatorClient(model_bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies("/unknown-command")
    assert texts(response.body) == [FALLBACK_TEXT]
    assert model.requests == []


async def test_azure_openai_with_an_api_key(model: ModelStandIn, channel: ChannelStandIn) -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": model.azure_endpoint,
        "AZURE_OPENAI_DEPLOYMENT": "chat",
        "AZURE_OPENAI_API_KEY": "k",
    }
    model.script("From Azure.")
    async with running_bot(env) as bot, EmulatorClient(bot.messages_url, channel.service_url) as emulator:
        response = await emulator.expect_replies(UNKNOWN_QUESTION)
    assert texts(response.body) == ["From Azure."]
    (request,) = model.requests
    assert (request.deployment, request.api_version, request.authorization) == ("chat", "2024-10-21", "api-key")


class IdentityEndpointStandIn(BackgroundServer):
    """App Service's managed identity endpoint, as its documentation describes the protocol ("Use managed identities
    for App Service": GET $IDENTITY_ENDPOINT?resource=...&api-version=2019-08-01[&client_id=...] with the header
    X-IDENTITY-HEADER: $IDENTITY_HEADER; answer {access_token, expires_on (epoch seconds), resource, token_type})."""

    SECRET = "identity-header-secret"

    def __init__(self) -> None:
        super().__init__("identity-endpoint-stand-in")
        self.asked: list[dict[str, str]] = []

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.headers.get("X-IDENTITY-HEADER") != self.SECRET:
            return web.json_response({"error": "missing or wrong X-IDENTITY-HEADER"}, status=401)
        self.asked.append(dict(request.query))
        token = {
            "access_token": "entra-token-of-the-bot",
            "expires_on": str(int(time.time()) + 3600),
            "resource": request.query.get("resource", ""),
            "token_type": "Bearer",
        }
        return web.json_response(token)


async def test_azure_openai_without_a_key_uses_the_managed_identitys_token(
    model: ModelStandIn, channel: ChannelStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    with IdentityEndpointStandIn() as identity:
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{identity.base_url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", IdentityEndpointStandIn.SECRET)
        env = {
            "AZURE_OPENAI_ENDPOINT": model.azure_endpoint,
            "AZURE_OPENAI_DEPLOYMENT": "chat",
            "AZURE_OPENAI_CLIENT_ID": "00000000-0000-0000-0000-0000000000aa",
        }
        model.script("Answered with Entra ID.", "Again, with the cached token.")
        async with running_bot(env) as bot, EmulatorClient(bot.messages_url, channel.service_url) as emulator:
            first = await emulator.expect_replies(UNKNOWN_QUESTION)
            second = await emulator.expect_replies("And at sunset?")
    assert texts(first.body) == ["Answered with Entra ID."]
    assert texts(second.body) == ["Again, with the cached token."]
    assert [request.authorization for request in model.requests] == ["bearer", "bearer"]
    # One token for both calls, for Azure OpenAI's scope and the user-assigned identity named.
    (asked,) = identity.asked
    assert asked["resource"] == "https://cognitiveservices.azure.com"
    assert asked["client_id"] == "00000000-0000-0000-0000-0000000000aa"
