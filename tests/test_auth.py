"""Bot Framework JWT validation with keys made here, served from a local OpenID metadata endpoint."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from aiohttp import web
from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bot.app import RUNTIME
from tests.support import BackgroundServer
from tests.support.botserver import RunningBot, running_bot
from tests.support.emulator import EmulatorClient

ISSUER = "https://api.botframework.com"  # the issuer botbuilder expects of channel tokens
APP_ID = str(uuid.uuid4())
KEY_ID = "local-key"


class OpenIdEndpoint(BackgroundServer):
    """OpenID configuration and signing keys, as login.botframework.com serves them; optionally slow."""

    def __init__(self) -> None:
        super().__init__("openid-metadata")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.delay = 0.0
        self.fetches = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        await asyncio.sleep(self.delay)
        if request.path == "/v1/.well-known/openidconfiguration":
            self.fetches += 1
            return web.json_response({"issuer": ISSUER, "jwks_uri": f"{self.base_url}/v1/keys"})
        if request.path == "/v1/keys":
            key = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
            key.update({"kid": KEY_ID, "use": "sig", "endorsements": ["msteams"]})
            return web.json_response({"keys": [key]})
        return web.Response(status=404)

    def token(self, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": APP_ID, "nbf": now - 60, "exp": now + 600, "serviceurl": SERVICE_URL}
        payload.update(claims)
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": KEY_ID})


SERVICE_URL = "http://127.0.0.1:9"


@pytest.fixture
def openid() -> Iterator[OpenIdEndpoint]:
    with OpenIdEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def secured_bot(openid: OpenIdEndpoint, azure_sdk_offline: None) -> AsyncIterator[RunningBot]:
    async with running_bot({"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "not-used-here"}) as bot:
        # botbuilder reads the metadata location from its configuration; point it at the local endpoint. (Only
        # here: any such override key makes botbuilder refuse credential-less Emulator requests, see settings.py.)
        configuration = SimpleNamespace(
            **vars(bot.settings.botbuilder_configuration()),
            TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=f"{openid.base_url}/v1/.well-known/openidconfiguration",
            TO_BOT_FROM_CHANNEL_TOKEN_ISSUER=ISSUER,
        )
        bot.app[RUNTIME].adapter.bot_framework_authentication = ConfigurationBotFrameworkAuthentication(configuration)
        yield bot


def _other_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def _send(bot: RunningBot, authorization: str | None) -> int:
    async with EmulatorClient(
        bot.messages_url, SERVICE_URL, channel_id="msteams", authorization=authorization
    ) as emulator:
        return (await emulator.expect_replies("help")).status


async def test_a_valid_channel_token_is_accepted(secured_bot: RunningBot, openid: OpenIdEndpoint) -> None:
    assert await _send(secured_bot, f"Bearer {openid.token()}") == 200
    assert await secured_bot.total("bot_turns_total") == 1


@pytest.mark.parametrize(
    "make_header",
    [
        lambda openid: None,
        lambda openid: "Bearer not.a.token",
        lambda openid: f"Bearer {openid.token(exp=int(time.time()) - 3600, nbf=int(time.time()) - 7200)}",
        lambda openid: f"Bearer {openid.token(aud=str(uuid.uuid4()))}",
        lambda openid: f"Bearer {openid.token(key=_other_key())}",
        lambda openid: f"Bearer {openid.token(iss='https://issuer.example')}",
        lambda openid: f"Bearer {openid.token(serviceurl='http://elsewhere.example')}",
    ],
    ids=["missing", "malformed", "expired", "wrong-audience", "wrongly-signed", "wrong-issuer", "other-serviceurl"],
)
async def test_invalid_tokens_get_401(secured_bot: RunningBot, openid: OpenIdEndpoint, make_header: Any) -> None:
    assert await _send(secured_bot, make_header(openid)) == 401
    assert await secured_bot.total("bot_turns_total") == 0
    assert await secured_bot.total("bot_requests_rejected_total", bot_request_rejection="unauthorized") == 1


async def test_a_slow_metadata_endpoint_does_not_block_other_requests(
    secured_bot: RunningBot, openid: OpenIdEndpoint
) -> None:
    openid.delay = 2.0
    authenticated = asyncio.ensure_future(_send(secured_bot, f"Bearer {openid.token()}"))
    # While the bot waits for its signing keys, it keeps answering.
    async with EmulatorClient(secured_bot.messages_url, SERVICE_URL, channel_id="msteams") as other:
        for _ in range(3):
            assert (await other.expect_replies("help")).status == 401
    assert not authenticated.done()
    assert await authenticated == 200
