"""Workaround: `CloudAdapter` builds new Bot Framework clients for every turn.

Defect (botbuilder 4.17.1): `CloudAdapter` builds a new ConnectorClient and a new UserTokenClient for every turn
(msrest configuration, configparser, a `requests.Session` and a urllib3 pool each: much of a turn's CPU, a new TCP
connection for every call through them and, with an app id, new credentials whose token cache starts empty).
Why this way: they are cached per (app id, serviceUrl, audience) and per app id, as botbuilder's older
`BotFrameworkAdapter` did, in a bounded least-recently-used cache (serviceUrls come from requests).
Tests that fail without it:
- tests/test_compat.py::test_stock_cloud_adapter_builds_new_clients_for_every_turn
- tests/test_compat.py::test_the_adapter_reuses_clients_per_service_url_and_app_id
- tests/test_compat.py::test_the_client_cache_is_bounded_least_recently_used_first_out
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, TypeVar

from botbuilder.schema import Activity
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    ServiceClientCredentialsFactory,
    UserTokenClient,
)
from botframework.connector.skills import BotFrameworkClient

_T = TypeVar("_T")
MAX_CACHED_CLIENTS = 256  # serviceUrls come from requests: bounded, least recently used first out


class _LruCache(OrderedDict[Any, Any]):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: Any, value: _T) -> _T:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
        return value

    def recall(self, key: Any) -> Any:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


def app_id_of(claims_identity: ClaimsIdentity | None) -> str | None:
    """The bot's app id a request was made for, as botbuilder reads it: the audience claim of a channel's token, the
    appid claim of an Emulator token, None for anonymous requests."""
    if claims_identity is None:
        return None
    app_id = claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
    if app_id is None:
        app_id = claims_identity.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
    return app_id


class _CachingConnectorFactory(ConnectorFactory):
    def __init__(self, inner: ConnectorFactory, app_id: str | None, cache: _LruCache) -> None:
        self.inner = inner
        self._app_id = app_id
        self._cache = cache

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        key = (self._app_id, service_url, audience)
        client = self._cache.recall(key)
        if client is None:
            client = self._cache.remember(key, await self.inner.create(service_url, audience))
        return client


class CachingBotFrameworkAuthentication(BotFrameworkAuthentication):
    """Delegates everything to botbuilder's authentication and reuses the clients it creates.

    A ConnectorClient is bound to one serviceUrl, one app id and one audience, and holds nothing else that changes
    between turns; the credentials inside cache their token. A UserTokenClient is bound to the app id.
    """

    def __init__(self, inner: BotFrameworkAuthentication, limit: int = MAX_CACHED_CLIENTS) -> None:
        self.inner = inner
        self._connectors = _LruCache(limit)
        self._user_token_clients = _LruCache(limit)

    def _caching(self, factory: ConnectorFactory | None, claims_identity: ClaimsIdentity | None) -> Any:
        if factory is None or isinstance(factory, _CachingConnectorFactory):
            return factory
        return _CachingConnectorFactory(factory, app_id_of(claims_identity), self._connectors)

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        result = await self.inner.authenticate_request(activity, auth_header)
        result.connector_factory = self._caching(result.connector_factory, result.claims_identity)
        return result

    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        result = await self.inner.authenticate_streaming_request(auth_header, channel_id_header)
        result.connector_factory = self._caching(result.connector_factory, result.claims_identity)
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return self._caching(self.inner.create_connector_factory(claims_identity), claims_identity)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        key = app_id_of(claims_identity)
        client = self._user_token_clients.recall(key)
        if client is None:
            client = self._user_token_clients.remember(key, await self.inner.create_user_token_client(claims_identity))
        return client

    def create_bot_framework_client(self) -> BotFrameworkClient:
        return self.inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self.inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self.inner.authenticate_channel_request(auth_header)

    async def generate_caller_id(
        self, *, credential_factory: ServiceClientCredentialsFactory, claims_identity: ClaimsIdentity, caller_id: str
    ) -> str:
        return await self.inner.generate_caller_id(
            credential_factory=credential_factory, claims_identity=claims_identity, caller_id=caller_id
        )
