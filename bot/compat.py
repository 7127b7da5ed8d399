"""Every workaround for a defect of botbuilder-python 4.17.1, in one place. Each has a test that fails without it
(tests/test_compat.py).

1. `patch_msrest_retry_policy`: msrest builds `[i for i in range(999) if i not in safe_codes]` against a ~500-item
   list for every client it creates, twice per turn: ~80 % of a turn's CPU. A frozenset gives the same policy.
2. `invoke_response_body`: `CloudAdapter.process` serialises an already-serialised `ExpectedReplies` dict again and
   answers every `deliveryMode: "expectReplies"` request with 500. An `adaptiveCard/action` invoke without a valid
   `Action.Execute` value makes `ActivityHandler` answer an `AdaptiveCardInvokeResponse` whose `value` is a Python
   `Exception`, which msrest cannot serialise (another 500); it is answered as the Bot Framework error it means:
   `{"statusCode": 400, "type": "application/vnd.microsoft.error", "value": {"code": ..., "message": ...}}`.
3. `AsyncChannelReplies`: replies go through msrest's synchronous `requests` sender on the default thread pool with
   a 100 s timeout and a new TCP connection per reply; a handful of hanging serviceUrls stall every conversation.
   Replies are sent with one shared, pooled aiohttp session and a bounded timeout instead. msrest also retried
   failed replies and the pooled client must too (`ReplyRetryPolicy`): 429 (after its Retry-After, up to a cap),
   502/503/504, timeouts and dropped connections are retried with jittered exponential back-off, with the same
   activity id on every attempt, while the turn's retry budget lasts; other 4xx answers are final.
4. `authenticate_or_refuse`: a malformed `Authorization` header makes the JWT code raise arbitrary exceptions (a 500);
   any failure to authenticate becomes `AuthenticationRefused`, a `PermissionError` (a 401) carrying one of the
   bounded reasons of `catalog.AUTH_FAILURES`. botbuilder says why only in free-text messages (and returns no
   identity at all for a token of another issuer), so the reason is read from the header, the JWT library's
   exception class and those messages; anything unrecognised is `other`.
5. `parse_activity`: `Activity().deserialize` raises msrest errors, or silently accepts wrong types, for malformed
   activities; those become `ValueError` naming the problem (a 400).
6. `CachingBotFrameworkAuthentication`: `CloudAdapter` builds a new ConnectorClient and a new UserTokenClient for
   every turn (msrest configuration, configparser, a `requests.Session` and urllib3 pool each: about half of a turn's
   CPU once (1) is applied, a new TCP connection for every call through them and, with an app id, new credentials
   whose token cache starts empty). They are cached per (app id, serviceUrl, audience) and per app id, as
   botbuilder's older `BotFrameworkAdapter` did.
7. `SCHEMA_CODEC` and `FastTurnResults`: msrest's generic (de)serialiser rebuilds its class map and walks every
   attribute through several layers of dispatch for each activity: parsing the request and serialising the replies
   cost about a third of a turn. The codec converts botbuilder's schema models with a per-class plan built once;
   whatever it is not sure to convert exactly as msrest would (wrong types, unusual shapes) goes to msrest itself.
   Timestamps of the usual shape are parsed with `datetime` instead of isodate (~7 µs instead of ~21, twice a request).
8. `patch_bot_state_fingerprint`: `BotState` finds out whether a turn changed the conversation or user state by
   comparing `str(jsonpickle.Pickler().flatten(state))` before and after, computed four times per turn and state:
   a sixth of a turn. A pickle of the state tells the same (equal pickles, equal state); a state pickle refuses is
   fingerprinted botbuilder's way, and a mix of the two only ever reads as "changed", which saves once more.
9. `patch_openid_metadata_fetch`: the signing keys of Bot Framework tokens are fetched with a blocking
   `requests.get` on the event loop and no timeout (first authenticated request, then daily): a slow metadata
   endpoint freezes every conversation. The fetch runs in a worker thread with a timeout instead.
10. `patch_outgoing_activity_copy`: `TurnContext.send_activities` deep-copies every outgoing activity with
   `copy.deepcopy`, which walks each of an Activity's ~50 attributes through its generic dispatch: ~150 µs for a
   reply with suggested actions, a tenth of a turn. `copy_activity` makes the same copy (shared references and
   cycles kept, via the same memo) for schema models, lists and dicts, and hands anything else to `copy.deepcopy`;
   `shallow_copy` does the same for the three `copy.copy` calls of the conversation reference built for each send.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import random
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import Enum
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import isodate
import jwt
import requests
from botbuilder.core import CloudAdapterBase, InvokeResponse, TurnContext
from botbuilder.core import turn_context as botbuilder_turn_context
from botbuilder.core.bot_adapter import BotAdapter
from botbuilder.core.bot_state import CachedBotState
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    DeliveryModes,
    ExpectedReplies,
    ResourceResponse,
)
from botframework.connector import Channels
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    ServiceClientCredentialsFactory,
    UserTokenClient,
)
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata
from botframework.connector.skills import BotFrameworkClient
from msrest.exceptions import DeserializationError
from msrest.serialization import Deserializer, Model, Serializer
from msrest.universal_http.requests import ClientRetryPolicy
from yarl import URL

from telemetry import catalog


def patch_msrest_retry_policy() -> None:
    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)  # type: ignore[assignment]


_STOCK_FINGERPRINT = CachedBotState.compute_hash


def _state_fingerprint(self: CachedBotState, obj: object) -> object:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # not picklable (a lambda, a lock, ...): botbuilder's jsonpickle way, slow but total
        return _STOCK_FINGERPRINT(self, obj)


def patch_bot_state_fingerprint() -> None:
    CachedBotState.compute_hash = _state_fingerprint


OPENID_TIMEOUT_SECONDS = 10.0


def _fetch_signing_keys(metadata_url: str) -> list[dict[str, Any]]:
    configuration = requests.get(metadata_url, timeout=OPENID_TIMEOUT_SECONDS)
    configuration.raise_for_status()
    keys = requests.get(configuration.json()["jwks_uri"], timeout=OPENID_TIMEOUT_SECONDS)
    keys.raise_for_status()
    return list(keys.json()["keys"])


async def _refresh_off_the_loop(self: _OpenIdMetadata) -> None:
    if self.last_updated > datetime.now() - timedelta(minutes=1):
        return  # refreshed meanwhile by a concurrent request
    self.keys = await asyncio.get_running_loop().run_in_executor(None, _fetch_signing_keys, self.url)
    self.last_updated = datetime.now()


def patch_openid_metadata_fetch() -> None:
    _OpenIdMetadata._refresh = _refresh_off_the_loop


# ---- 10. outgoing activities copied without copy.deepcopy's generic dispatch -------------------------------------

# Immutable values a deep copy returns as they are.
_SHARED_TYPES = frozenset({str, int, float, bool, type(None), bytes, complex})
_PLAIN_MODELS: dict[type, bool] = {}


def _is_plain_model(kind: type) -> bool:
    """An msrest model whose deep copy is its class plus a deep copy of its `__dict__` (no copy hooks of its own)."""
    plain = _PLAIN_MODELS.get(kind)
    if plain is None:
        hooks = ("__deepcopy__", "__setstate__", "__slots__", "__getnewargs__", "__getnewargs_ex__")
        plain = _PLAIN_MODELS[kind] = (
            issubclass(kind, Model)
            and kind.__reduce_ex__ is object.__reduce_ex__
            and kind.__reduce__ is object.__reduce__
            and kind.__new__ is object.__new__
            and not any(hasattr(kind, hook) for hook in hooks)
        )
    return plain


def copy_activity(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """`copy.deepcopy(value)`, several times faster for botbuilder's schema models."""
    return _deep_copy(value, {} if memo is None else memo)


def _deep_copy(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _SHARED_TYPES:
        return value
    key = id(value)
    done = memo.get(key)
    if done is not None:
        return done
    result: Any
    if kind is list:
        result = memo[key] = []
        result.extend(item if type(item) in _SHARED_TYPES else _deep_copy(item, memo) for item in value)
    elif kind is dict:
        result = memo[key] = {}
        for name, item in value.items():
            copied = item if type(item) in _SHARED_TYPES else _deep_copy(item, memo)
            result[name if type(name) in _SHARED_TYPES else _deep_copy(name, memo)] = copied
    elif _is_plain_model(kind):
        result = memo[key] = object.__new__(kind)
        state = result.__dict__
        for name, item in value.__dict__.items():
            state[name] = item if type(item) in _SHARED_TYPES else _deep_copy(item, memo)
    elif isinstance(value, Enum):
        return value  # what copy.deepcopy returns for an enum member (ActivityTypes.message, ...)
    else:
        return copy.deepcopy(value, memo)
    return result


def shallow_copy(value: Any) -> Any:
    """`copy.copy(value)`: TurnContext copies the conversation's accounts for every send."""
    kind = type(value)
    if kind in _SHARED_TYPES:
        return value
    if kind is list:
        return list(value)
    if _is_plain_model(kind):
        result = object.__new__(kind)
        result.__dict__.update(value.__dict__)
        return result
    return copy.copy(value)


def patch_outgoing_activity_copy() -> None:
    botbuilder_turn_context.deepcopy = copy_activity
    botbuilder_turn_context.copy = shallow_copy


def invoke_response_body(response: InvokeResponse) -> Any:
    """The JSON body of an invoke or expectReplies response, whether botbuilder serialised it already or not."""
    body = response.body
    if body is None or isinstance(body, dict | list | str | int | float | bool):
        return body
    if isinstance(body, AdaptiveCardInvokeResponse) and isinstance(body.value, Exception):
        return adaptive_card_error(body)
    serialize = getattr(body, "serialize", None)
    return serialize() if callable(serialize) else body


def adaptive_card_error(body: AdaptiveCardInvokeResponse) -> dict[str, Any]:
    """The Bot Framework error an `AdaptiveCardInvokeResponse` carrying a Python exception stands for."""
    args = [str(arg) for arg in getattr(body.value, "args", ())]
    code, message = (args[0], " ".join(args[1:])) if len(args) > 1 else ("BadRequest", " ".join(args))
    return {
        "statusCode": int(body.status_code or 400),
        "type": body.type or "application/vnd.microsoft.error",
        "value": {"code": code, "message": message or "invalid adaptiveCard/action invoke"},
    }


def serialisable_invoke_response(response: InvokeResponse | None) -> InvokeResponse | None:
    """`response` with an adaptive card error body made serialisable (workaround 2); otherwise unchanged."""
    body = response.body if response is not None else None
    if response is not None and isinstance(body, AdaptiveCardInvokeResponse) and isinstance(body.value, Exception):
        return InvokeResponse(status=response.status, body=adaptive_card_error(body))
    return response


class ChannelError(RuntimeError):
    """The channel (serviceUrl) refused a reply or could not be reached in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# Answers worth another attempt: rate limited, or a gateway in front of the channel failed. Any other 4xx is final.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
REPLY_DEADLINE_KEY = "otel_chatbot.reply_deadline"


@dataclass(frozen=True)
class ReplyRetryPolicy:
    """How a reply the channel did not take is tried again.

    `budget_seconds` bounds the retrying of a whole turn (from its first reply): the waits and the retried attempts of
    all its replies, the apology of a failed turn included, end by then, so that the turn answers well within the
    15 s a channel waits for it. A first attempt keeps the reply timeout (BOT_REPLY_TIMEOUT_SECONDS); a retry gets what
    is left of the budget if that is less.
    """

    attempts: int = 4
    budget_seconds: float = 8.0
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 2.0
    max_retry_after_seconds: float = 5.0
    min_attempt_seconds: float = 0.5

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Wait before retry number `retry` (1, 2, ...): exponential, capped, with equal jitter (half fixed, half
        random) so that replies failed together do not come back together."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def wait(self, retry: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
        """The wait before retry number `retry`, or None if the answer asks for a longer wait than the cap."""
        if retry_after is None:
            return self.backoff(retry, rng)
        if retry_after > self.max_retry_after_seconds:
            return None
        return retry_after + (rng or random).uniform(0, self.base_delay_seconds / 2)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP-date, RFC 9110 10.2.3), else None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Retryable(Exception):
    def __init__(self, error: ChannelError, reason: str, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.reason = reason
        self.retry_after = retry_after


class AsyncChannelReplies(BotAdapter):
    """Sends a turn's replies to the channel over a shared aiohttp session. Mixed into the CloudAdapter subclass."""

    channel_session: aiohttp.ClientSession
    reply_timeout: aiohttp.ClientTimeout
    reply_retry: ReplyRetryPolicy = ReplyRetryPolicy()
    # Where the retry loop reads the time and waits (tests substitute a clock they control).
    retry_clock: Callable[[], float] = staticmethod(time.monotonic)
    retry_sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        responses: list[ResourceResponse] = []
        for activity in activities:
            activity.id = None
            if activity.type == "delay":
                await asyncio.sleep(float(activity.value or 1000) / 1000)
                responses.append(ResourceResponse(id=""))
            elif activity.type == ActivityTypes.invoke_response:
                context.turn_state[self._INVOKE_RESPONSE_KEY] = activity
                responses.append(ResourceResponse(id=""))
            elif activity.type == ActivityTypes.trace and activity.channel_id != Channels.emulator:
                responses.append(ResourceResponse(id=""))
            else:
                responses.append(await self._post_activity(context, activity))
        return responses

    async def _post_activity(self, context: TurnContext, activity: Activity) -> ResourceResponse:
        service_url = (activity.service_url or "").rstrip("/")
        if urlsplit(service_url).scheme not in ("http", "https"):
            raise ChannelError("activity has no usable serviceUrl (not an http(s) URL)")  # the URL may be personal
        conversation_id = activity.conversation.id if activity.conversation else None
        if not conversation_id:
            raise ChannelError("activity has no conversation id")
        path = f"/v3/conversations/{path_segment(conversation_id)}/activities"
        if activity.reply_to_id:
            path += "/" + path_segment(activity.reply_to_id)
        try:
            # The serviceUrl is quoted by yarl; the id segments are appended as built (yarl would resolve "..").
            url = URL(str(URL(service_url)).rstrip("/") + path, encoded=True)
        except ValueError as error:
            raise ChannelError("activity has no usable serviceUrl (not a valid URL)") from error
        # One id for every attempt: a channel that got an attempt whose answer was lost can tell the retry apart.
        activity.id = uuid.uuid4().hex
        body = SCHEMA_CODEC.serialize(activity)
        policy = self.reply_retry
        deadline = context.turn_state.setdefault(REPLY_DEADLINE_KEY, self.retry_clock() + policy.budget_seconds)
        channel = context.activity.channel_id
        timeout = self.reply_timeout
        resend = 0
        failure: _Retryable | None = None
        while True:
            trace_context: dict[str, Any] = {"channel": channel}
            if failure is not None:
                trace_context["resend_count"] = resend
                trace_context["resend_reason"] = failure.reason
            try:
                return await self._attempt(context, url, body, timeout, trace_context)
            except _Retryable as retryable:
                failure = retryable
            resend += 1
            if resend >= policy.attempts:
                raise failure.error
            wait = policy.wait(resend, failure.retry_after)
            left = deadline - self.retry_clock() - (wait or 0.0)
            if wait is None or left < policy.min_attempt_seconds:
                raise failure.error
            await self.retry_sleep(wait)
            timeout = aiohttp.ClientTimeout(total=min(self.reply_timeout.total or left, left))

    async def _attempt(
        self,
        context: TurnContext,
        url: URL,
        body: Any,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's per-request timeout, not a scope
        trace_context: dict[str, Any],
    ) -> ResourceResponse:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        token = await self._access_token(context)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self.channel_session.post(
                url, json=body, headers=headers, timeout=timeout, trace_request_ctx=trace_context
            ) as response:
                if response.status >= 300:
                    error = ChannelError(f"channel answered {response.status} to a reply", response.status)
                    if response.status in RETRIED_STATUSES:
                        wait = retry_after_seconds(response.headers.get("Retry-After"))
                        raise _Retryable(error, str(response.status), wait if response.status == 429 else None)
                    raise error
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
        except aiohttp.ClientConnectorError as error:
            # Nothing listens there (refused, unknown host): not a hiccup, and every attempt would fail alike.
            raise ChannelError(f"could not deliver a reply to the channel: {type(error).__name__}") from error
        except (TimeoutError, aiohttp.ClientConnectionError) as error:
            failure = ChannelError(f"could not deliver a reply to the channel: {type(error).__name__}")
            failure.__cause__ = error
            raise _Retryable(failure, type(error).__qualname__) from error
        except aiohttp.ClientError as error:
            raise ChannelError(f"could not deliver a reply to the channel: {type(error).__name__}") from error
        reply_id = payload.get("id") if isinstance(payload, dict) else None
        return ResourceResponse(id=reply_id or "")

    async def _access_token(self, context: TurnContext) -> str | None:
        client = context.turn_state.get(self.BOT_CONNECTOR_CLIENT_KEY)
        credentials = getattr(getattr(client, "config", None), "credentials", None)
        if not isinstance(credentials, AppCredentials) or not credentials._should_set_token(None):
            return None
        # MSAL is synchronous and caches tokens; keep the network call off the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, credentials.get_access_token)


def path_segment(value: str) -> str:
    """An id as one URL path segment: UTF-8 percent-encoded (a lone surrogate the channel sent too, as sent), and
    never "." or "..", which URL normalisation would resolve (a conversation "..": replies to another URL)."""
    segment = quote(value.encode("utf-8", "surrogatepass"), safe="")
    return segment.replace(".", "%2E") if not segment.strip(".") else segment


class AuthenticationRefused(PermissionError):
    """A request that failed authentication, with the bounded reason it is counted under (catalog.AUTH_FAILURES)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


async def authenticate_or_refuse(
    authentication: BotFrameworkAuthentication, activity: Activity, auth_header: str
) -> AuthenticateRequestResult:
    try:
        return await authentication.authenticate_request(activity, auth_header)
    except Exception as error:  # malformed tokens raise whatever the JWT library raises
        reason = authentication_failure_reason(auth_header, error)
        message = str(error) if isinstance(error, PermissionError) and str(error) else type(error).__name__
        raise AuthenticationRefused(f"authentication failed ({reason}): {message}", reason) from error


_JWT_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, catalog.AUTH_EXPIRED),
    (jwt.InvalidAudienceError, catalog.AUTH_WRONG_AUDIENCE),
    (jwt.InvalidIssuerError, catalog.AUTH_WRONG_ISSUER),
    (jwt.InvalidSignatureError, catalog.AUTH_BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, catalog.AUTH_BAD_SIGNATURE),
    (jwt.InvalidKeyError, catalog.AUTH_BAD_SIGNATURE),
    (jwt.DecodeError, catalog.AUTH_MALFORMED),
)
# Fragments of botbuilder 4.17.1's messages (channel, emulator, skill and parameterized validation), first match wins.
_MESSAGE_FAILURES: tuple[tuple[str, str], ...] = (
    ("not supplied", catalog.AUTH_MISSING),
    ("auth_header is null", catalog.AUTH_MISSING),
    ("serviceurl", catalog.AUTH_OTHER_SERVICE_URL),
    ("service_url", catalog.AUTH_OTHER_SERVICE_URL),
    ("appid", catalog.AUTH_WRONG_AUDIENCE),
    ("app_id", catalog.AUTH_WRONG_AUDIENCE),
    ("audience", catalog.AUTH_WRONG_AUDIENCE),
    ("'aud'", catalog.AUTH_WRONG_AUDIENCE),
    ("issuer", catalog.AUTH_WRONG_ISSUER),
    ("'iss'", catalog.AUTH_WRONG_ISSUER),
    ("signing algorithm", catalog.AUTH_BAD_SIGNATURE),
    # The token names a signing key the metadata endpoint does not publish (botbuilder trips over the missing key).
    ("attribute 'endorsements'", catalog.AUTH_BAD_SIGNATURE),
    # The token extractor returns no identity, without a word, for a well-formed Bearer token of a foreign issuer.
    ("identity missing", catalog.AUTH_WRONG_ISSUER),
    ("no valid identity", catalog.AUTH_WRONG_ISSUER),
    ("invalid identity", catalog.AUTH_WRONG_ISSUER),
    ("not authenticated", catalog.AUTH_WRONG_ISSUER),
)


def _raised_in(error: BaseException, function: str) -> bool:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_code.co_name == function


def authentication_failure_reason(auth_header: str | None, error: BaseException) -> str:
    """Why a request failed authentication, as one of catalog.AUTH_FAILURES."""
    if not auth_header or not auth_header.strip():
        return catalog.AUTH_MISSING
    scheme, _, token = auth_header.partition(" ")
    try:
        if scheme != "Bearer" or not token or " " in token:
            raise jwt.DecodeError("not a Bearer token")
        jwt.get_unverified_header(token)
        jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return catalog.AUTH_MALFORMED
    cause: BaseException | None = error
    while cause is not None:
        for kind, reason in _JWT_FAILURES:
            if isinstance(cause, kind):
                return reason
        cause = cause.__cause__ or cause.__context__
    if _raised_in(error, "_find"):
        # botbuilder's key lookup indexes an empty list when the token names a key the endpoint does not publish.
        return catalog.AUTH_BAD_SIGNATURE
    message = str(error).lower()
    for fragment, reason in _MESSAGE_FAILURES:
        if fragment in message:
            return reason
    return catalog.AUTH_OTHER


_STRING_FIELDS = ("type", "id", "text", "channelId", "serviceUrl", "locale", "deliveryMode", "replyToId", "name")
_ACCOUNT_FIELDS = ("from", "recipient", "conversation")


def parse_activity(body: Any) -> Activity:
    """A botbuilder Activity from a JSON value, or ValueError saying what is wrong with it."""
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object (an Activity), got {type(body).__name__}")
    for name in _STRING_FIELDS:
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise ValueError(f"field '{name}' must be a string")
    for name in _ACCOUNT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"field '{name}' must be an object")
        if isinstance(value, dict) and value.get("id") is not None and not isinstance(value["id"], str):
            raise ValueError(f"field '{name}.id' must be a string")
    try:
        activity = SCHEMA_CODEC.deserialize(Activity, body)
    except (DeserializationError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a valid Activity: {type(error).__name__}") from None
    if not activity.type:
        raise ValueError("the Activity has no 'type'")
    return activity


# ---- 6. clients cached across turns -----------------------------------------------------------------------------

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


# ---- 7. botbuilder schema (de)serialisation ---------------------------------------------------------------------


class _NotFast(Exception):
    """The codec met something it does not convert itself; msrest converts the whole value instead."""


_MISSING = object()
_STR, _BOOL, _INT, _ISO, _OBJECT, _MODEL, _MODEL_LIST, _STR_LIST, _MODEL_DICT = range(9)
_BASIC_KINDS = {"str": _STR, "bool": _BOOL, "int": _INT, "iso-8601": _ISO, "object": _OBJECT, "[str]": _STR_LIST}


# An activity's timestamps as channels write them: msrest parses them with isodate (~21 µs each, two per request).
_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:(Z)|([+-])(\d\d):(\d\d))\Z")


def parse_timestamp(text: str) -> datetime | None:
    """`Deserializer.deserialize_iso(text)` for the common shape (the same value, with isodate's time zone objects),
    or None for anything else: other shapes, out-of-range fields, and years at the edges msrest checks."""
    match = _TIMESTAMP.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, zone_hours, zone_minutes = match.groups()
    if not 1 < int(year) < 9999:
        return None
    if zulu:
        zone: Any = isodate.UTC
    else:
        direction = -1 if sign == "-" else 1
        zone = isodate.FixedOffset(direction * int(zone_hours), direction * int(zone_minutes), text[-6:])
    microseconds = int(fraction.ljust(6, "0")) if fraction else 0
    try:
        parsed = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), microseconds, zone)
        parsed.utctimetuple()  # msrest's check: the offset and the instant in UTC must be valid
    except (ValueError, OverflowError):
        return None
    return parsed


class _Plan:
    """How one schema class maps to JSON: (attribute, JSON key, kind, model class) for each field, in msrest's
    order, and the JSON keys msrest knows (any other key of a request ends up in `additional_properties`)."""

    def __init__(self, fields: tuple[tuple[str, str, int, type[Model] | None], ...]) -> None:
        self.fields = fields
        self.known_keys = frozenset(key for _, key, _, _ in fields)


class SchemaCodec:
    """Converts botbuilder schema models (msrest `Model`s: Activity, ExpectedReplies, ...) to and from JSON values
    exactly as msrest does, for the shapes where that is certain, and hands anything else to msrest."""

    def __init__(self) -> None:
        self._plans: dict[type, _Plan | None] = {}
        self._msrest_deserializers: dict[type, Deserializer] = {}
        self._msrest_serializers: dict[type, Serializer] = {}

    def deserialize(self, model: type[_T], data: Any) -> _T:
        """`model().deserialize(data)`, the same result (msrest's own errors for what it refuses)."""
        try:
            return self._from_json(model, data)  # type: ignore[return-value]
        except _NotFast:
            return model().deserialize(data)  # type: ignore[attr-defined]

    def serialize(self, value: Model) -> Any:
        """`value.serialize()`, the same JSON value (msrest's own errors for what it cannot serialise)."""
        try:
            return self._to_json(value)
        except _NotFast:
            return value.serialize()

    def _plan(self, model: type) -> _Plan:
        if model not in self._plans:
            self._plans[model] = self._build_plan(model)
        plan = self._plans[model]
        if plan is None:
            raise _NotFast(model.__name__)
        return plan

    def _build_plan(self, model: type) -> _Plan | None:
        if not (isinstance(model, type) and issubclass(model, Model)):
            return None
        if model.__dict__.get("_subtype_map") or getattr(model, "_validation", None) or model.is_xml_model():
            return None
        dependencies = model._infer_class_models()
        fields: list[tuple[str, str, int, type[Model] | None]] = []
        for attr, description in model._attribute_map.items():
            key, data_type = description["key"], description["type"]
            if not key or "." in key or "\\" in key or description.get("flatten") or attr == "additional_properties":
                return None
            if data_type in _BASIC_KINDS:
                fields.append((attr, key, _BASIC_KINDS[data_type], None))
                continue
            inner = data_type.strip("[]{}")
            target = dependencies.get(inner)
            if not (isinstance(target, type) and issubclass(target, Model)) or issubclass(target, Enum):
                return None
            if data_type == inner:
                fields.append((attr, key, _MODEL, target))
            elif data_type == f"[{inner}]":
                fields.append((attr, key, _MODEL_LIST, target))
            elif data_type == f"{{{inner}}}":
                fields.append((attr, key, _MODEL_DICT, target))
            else:
                return None
        self._msrest_deserializers[model] = Deserializer(dependencies)
        self._msrest_serializers[model] = Serializer(dependencies)
        return _Plan(tuple(fields))

    # -- JSON -> model

    def _from_json(self, model: type, data: Any) -> Model:
        if type(data) is not dict:
            raise _NotFast(type(data).__name__)
        plan = self._plan(model)
        values: dict[str, Any] = {}
        for attr, key, kind, target in plan.fields:
            value = data.get(key)
            values[attr] = None if value is None else self._decode(model, kind, target, value)
        try:
            result = model(**values)
        except Exception as error:
            raise _NotFast(model.__name__) from error
        if not plan.known_keys.issuperset(data):
            result.additional_properties = {key: data[key] for key in data.keys() - plan.known_keys}
        return result

    def _decode(self, model: type, kind: int, target: type | None, value: Any) -> Any:
        kind_of_value = type(value)
        if kind == _STR and kind_of_value is str:
            return value
        if (kind == _BOOL and kind_of_value is bool) or (kind == _INT and kind_of_value is int):
            return value
        if kind == _MODEL and kind_of_value is dict:
            return self._from_json(target, value)  # type: ignore[arg-type]
        if kind == _MODEL_LIST and kind_of_value is list:
            return [None if item is None else self._from_json(target, item) for item in value]  # type: ignore[arg-type]
        if kind == _STR_LIST and kind_of_value is list and all(item is None or type(item) is str for item in value):
            return list(value)
        if kind == _MODEL_DICT and kind_of_value is dict:
            return {
                name: None if item is None else self._from_json(target, item)  # type: ignore[arg-type]
                for name, item in value.items()
            }
        try:
            if kind == _ISO and kind_of_value is str:
                return parse_timestamp(value) or Deserializer.deserialize_iso(value)
            if kind == _OBJECT:
                return self._msrest_deserializers[model].deserialize_object(value)
        except Exception as error:
            raise _NotFast(kind_of_value.__name__) from error
        raise _NotFast(kind_of_value.__name__)

    # -- model -> JSON

    def _to_json(self, value: Any) -> dict[str, Any]:
        model = type(value)
        plan = self._plan(model)
        result: dict[str, Any] = {}
        for attr, key, kind, _ in plan.fields:
            item = getattr(value, attr, _MISSING)
            if item is _MISSING:
                raise _NotFast(attr)
            if item is not None:
                result[key] = self._encode(model, kind, item)
        return result

    def _encode(self, model: type, kind: int, value: Any) -> Any:
        kind_of_value = type(value)
        if kind == _STR:
            if kind_of_value is str:
                return value
            if isinstance(value, Enum):
                return value.value
        elif (kind == _BOOL and kind_of_value is bool) or (kind == _INT and kind_of_value is int):
            return value
        elif kind == _MODEL and isinstance(value, Model):
            return self._to_json(value)
        elif kind == _MODEL_LIST and kind_of_value in (list, tuple):
            return [None if item is None else self._encode(model, _MODEL, item) for item in value]
        elif kind == _STR_LIST and kind_of_value in (list, tuple):
            return [None if item is None else self._encode(model, _STR, item) for item in value]
        elif kind == _MODEL_DICT and kind_of_value is dict and all(type(name) is str for name in value):
            return {name: None if item is None else self._encode(model, _MODEL, item) for name, item in value.items()}
        else:
            try:
                if kind == _ISO:
                    return Serializer.serialize_iso(value)
                if kind == _OBJECT:
                    return self._msrest_serializers[model].serialize_object(value, keep_readonly=False, is_xml=False)
            except Exception as error:
                raise _NotFast(kind_of_value.__name__) from error
        raise _NotFast(kind_of_value.__name__)


SCHEMA_CODEC = SchemaCodec()


class FastTurnResults(CloudAdapterBase):
    """Serialises the replies of an expectReplies turn with the codec (botbuilder does it with msrest)."""

    def _process_turn_results(self, context: TurnContext) -> InvokeResponse:
        if context.activity.delivery_mode == DeliveryModes.expect_replies:
            replies = ExpectedReplies(activities=context.buffered_reply_activities)
            return InvokeResponse(status=HTTPStatus.OK, body=SCHEMA_CODEC.serialize(replies))
        return super()._process_turn_results(context)


__all__ = [
    "SCHEMA_CODEC",
    "AsyncChannelReplies",
    "CachingBotFrameworkAuthentication",
    "ChannelError",
    "FastTurnResults",
    "ReplyRetryPolicy",
    "SchemaCodec",
    "adaptive_card_error",
    "app_id_of",
    "authenticate_or_refuse",
    "copy_activity",
    "invoke_response_body",
    "parse_activity",
    "patch_bot_state_fingerprint",
    "patch_msrest_retry_policy",
    "patch_openid_metadata_fetch",
    "patch_outgoing_activity_copy",
    "path_segment",
    "retry_after_seconds",
    "serialisable_invoke_response",
    "shallow_copy",
]
