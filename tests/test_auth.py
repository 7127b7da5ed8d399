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
from botframework.connector.auth import ChannelValidation, JwtTokenExtractor
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bot.app import RUNTIME
from telemetry import catalog
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
def openid(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenIdEndpoint]:
    # botbuilder keeps fetched signing keys per metadata URL for the whole process and does not refetch for an unknown
    # key id within the hour: an earlier test's endpoint on the same (reused) port would answer for this one.
    monkeypatch.setattr(JwtTokenExtractor, "metadataCache", {})
    with OpenIdEndpoint() as endpoint:
        yield endpoint


@pytest.fixture(params=["configured-metadata", "built-in-validation"])
async def secured_bot(
    request: pytest.FixtureRequest, openid: OpenIdEndpoint, azure_sdk_offline: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningBot]:
    """The bot with an app id, its tokens checked against the local endpoint along either of botbuilder's paths."""
    metadata_url = f"{openid.base_url}/v1/.well-known/openidconfiguration"
    async with running_bot({"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "not-used-here"}) as bot:
        if request.param == "configured-metadata":
            # botbuilder reads the metadata location from its configuration; point it at the local endpoint. (Only
            # here: any such override key makes botbuilder refuse credential-less Emulator requests, see
            # settings.py.) This selects botbuilder's parameterized authentication.
            configuration = SimpleNamespace(
                **vars(bot.settings.botbuilder_configuration()),
                TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=metadata_url,
                TO_BOT_FROM_CHANNEL_TOKEN_ISSUER=ISSUER,
            )
            authentication = ConfigurationBotFrameworkAuthentication(configuration)
            bot.app[RUNTIME].adapter.bot_framework_authentication = authentication
        else:
            # The deployed bot's path (no override keys): JwtTokenValidation and ChannelValidation, whose metadata
            # location is a class attribute.
            monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", metadata_url)
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
    assert await secured_bot.total(catalog.TURNS) == 1


def _hour_ago() -> dict[str, int]:
    return {"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200}


INVALID_HEADERS: dict[str, Any] = {
    catalog.AUTH_MISSING: lambda openid: None,
    catalog.AUTH_MALFORMED: lambda openid: "Bearer not.a.token",
    catalog.AUTH_EXPIRED: lambda openid: f"Bearer {openid.token(**_hour_ago())}",
    catalog.AUTH_WRONG_AUDIENCE: lambda openid: f"Bearer {openid.token(aud=str(uuid.uuid4()))}",
    catalog.AUTH_BAD_SIGNATURE: lambda openid: f"Bearer {openid.token(key=_other_key())}",
    catalog.AUTH_WRONG_ISSUER: lambda openid: f"Bearer {openid.token(iss='https://issuer.example')}",
    catalog.AUTH_OTHER_SERVICE_URL: lambda openid: f"Bearer {openid.token(serviceurl='http://elsewhere.example')}",
}


@pytest.mark.parametrize("reason", list(INVALID_HEADERS))
async def test_invalid_tokens_get_401_counted_by_why(
    secured_bot: RunningBot, openid: OpenIdEndpoint, reason: str
) -> None:
    assert await _send(secured_bot, INVALID_HEADERS[reason](openid)) == 401
    assert await secured_bot.total(catalog.TURNS) == 0
    assert await secured_bot.total(catalog.REQUESTS_REJECTED, bot_request_rejection="unauthorized") == 1
    assert await secured_bot.total(catalog.REQUESTS_REJECTED, bot_auth_failure=reason) == 1
    secured_bot.flush()
    (server,) = [span for span in secured_bot.spans.get_finished_spans() if span.name == "POST /api/messages"]
    assert server.attributes is not None
    assert server.attributes[catalog.REJECTION_REASON] == catalog.REJECT_UNAUTHORIZED
    assert server.attributes[catalog.AUTH_FAILURE] == reason


async def test_a_token_signed_with_a_key_the_channel_does_not_publish_is_a_bad_signature(
    secured_bot: RunningBot, openid: OpenIdEndpoint
) -> None:
    token = jwt.encode(
        {"iss": ISSUER, "aud": APP_ID, "exp": int(time.time()) + 600, "serviceurl": SERVICE_URL},
        _other_key(),
        algorithm="RS256",
        headers={"kid": "a-key-nobody-published"},
    )
    assert await _send(secured_bot, f"Bearer {token}") == 401
    assert await secured_bot.total(catalog.REQUESTS_REJECTED, bot_auth_failure=catalog.AUTH_BAD_SIGNATURE) == 1


def test_an_unrecognised_failure_is_counted_as_other_and_bad_headers_as_malformed() -> None:
    from bot.compat import authentication_failure_reason

    token = jwt.encode({"iss": ISSUER}, "k" * 32, algorithm="HS256")
    assert authentication_failure_reason(f"Bearer {token}", RuntimeError("something new")) == catalog.AUTH_OTHER
    for header in ("Basic dXNlcjpwYXNz", "bearer " + token, "Bearer", "Bearer a b", "Bearer " + "x" * 40):
        assert authentication_failure_reason(header, PermissionError("Identity missing")) == catalog.AUTH_MALFORMED
    assert authentication_failure_reason("  ", AttributeError("x")) == catalog.AUTH_MISSING
    assert set(INVALID_HEADERS) | {catalog.AUTH_OTHER} == set(catalog.AUTH_FAILURES)


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
