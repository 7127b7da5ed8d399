"""Every workaround for a defect of botbuilder-python 4.17.1, in one place. Each has a test that fails without it
(tests/test_compat.py).

1. `patch_msrest_retry_policy`: msrest builds `[i for i in range(999) if i not in safe_codes]` against a ~500-item
   list for every client it creates, twice per turn: ~80 % of a turn's CPU. A frozenset gives the same policy.
2. `invoke_response_body`: `CloudAdapter.process` serialises an already-serialised `ExpectedReplies` dict again and
   answers every `deliveryMode: "expectReplies"` request with 500.
3. `AsyncChannelReplies`: replies go through msrest's synchronous `requests` sender on the default thread pool with
   a 100 s timeout and a new TCP connection per reply; a handful of hanging serviceUrls stall every conversation.
   Replies are sent with one shared, pooled aiohttp session and a bounded timeout instead.
4. `authenticate_or_refuse`: a malformed `Authorization` header makes the JWT code raise arbitrary exceptions (a 500);
   any failure to authenticate becomes `PermissionError` (a 401).
5. `parse_activity`: `Activity().deserialize` raises msrest errors, or silently accepts wrong types, for malformed
   activities; those become `ValueError` naming the problem (a 400).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.bot_adapter import BotAdapter
from botbuilder.schema import Activity, ActivityTypes, ResourceResponse
from botframework.connector import Channels
from botframework.connector.auth import AppCredentials, AuthenticateRequestResult, BotFrameworkAuthentication
from msrest.exceptions import DeserializationError
from msrest.universal_http.requests import ClientRetryPolicy


def patch_msrest_retry_policy() -> None:
    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)  # type: ignore[assignment]


def invoke_response_body(response: InvokeResponse) -> Any:
    """The JSON body of an invoke or expectReplies response, whether botbuilder serialised it already or not."""
    body = response.body
    if body is None or isinstance(body, dict | list | str | int | float | bool):
        return body
    serialize = getattr(body, "serialize", None)
    return serialize() if callable(serialize) else body


class ChannelError(RuntimeError):
    """The channel (serviceUrl) refused a reply or could not be reached in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AsyncChannelReplies(BotAdapter):
    """Sends a turn's replies to the channel over a shared aiohttp session. Mixed into the CloudAdapter subclass."""

    channel_session: aiohttp.ClientSession
    reply_timeout: aiohttp.ClientTimeout

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
            raise ChannelError(f"activity has no usable serviceUrl: {service_url!r}")
        conversation_id = activity.conversation.id if activity.conversation else None
        if not conversation_id:
            raise ChannelError("activity has no conversation id")
        url = f"{service_url}/v3/conversations/{quote(conversation_id, safe='')}/activities"
        if activity.reply_to_id:
            url += "/" + quote(activity.reply_to_id, safe="")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        token = await self._access_token(context)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self.channel_session.post(
                url,
                json=activity.serialize(),
                headers=headers,
                timeout=self.reply_timeout,
                trace_request_ctx={"channel": context.activity.channel_id},
            ) as response:
                if response.status >= 300:
                    raise ChannelError(f"channel answered {response.status} to a reply", response.status)
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
        except (TimeoutError, aiohttp.ClientError) as error:
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


async def authenticate_or_refuse(
    authentication: BotFrameworkAuthentication, activity: Activity, auth_header: str
) -> AuthenticateRequestResult:
    try:
        return await authentication.authenticate_request(activity, auth_header)
    except PermissionError:
        raise
    except Exception as error:  # malformed tokens raise whatever the JWT library raises
        raise PermissionError(f"invalid Authorization header: {type(error).__name__}") from error


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
        activity = Activity().deserialize(body)
    except (DeserializationError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a valid Activity: {type(error).__name__}") from None
    if not activity.type:
        raise ValueError("the Activity has no 'type'")
    return activity
