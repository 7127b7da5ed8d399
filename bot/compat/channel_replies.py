"""Workaround: replies go to the channel through msrest's synchronous sender, one new connection each, 100 s timeout.

Defect (botbuilder 4.17.1): replies go through msrest's synchronous `requests` sender on the default thread pool, with
a 100 s timeout and a new TCP connection per reply; a handful of hanging serviceUrls stall every conversation.
Why this way: `AsyncChannelReplies` (mixed into the adapter) sends them with one shared, pooled aiohttp session and a
bounded timeout, retried as reply_retry.py says, with the same activity id on every attempt. Ids become URL path
segments that never resolve ("..", "."), so a conversation id cannot send the reply to another URL.
Tests that fail without it:
- tests/test_compat.py::test_reply_url_segments_never_resolve_and_encode_every_id
- tests/test_channel_replies.py::test_replies_of_untraced_turns_are_timed_but_get_no_span_and_no_trace_headers
- tests/test_reply_retries.py (all of it)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from botbuilder.core import TurnContext
from botbuilder.core.bot_adapter import BotAdapter
from botbuilder.schema import Activity, ActivityTypes, ResourceResponse
from botframework.connector import Channels
from botframework.connector.auth import AppCredentials
from yarl import URL

from bot.compat.reply_retry import RETRIED_STATUSES, ReplyRetryPolicy, retry_after_seconds
from bot.fastpath.schema_codec import SCHEMA_CODEC


class ChannelError(RuntimeError):
    """The channel (serviceUrl) refused a reply or could not be reached in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# The exception's qualified name is the `error.type` of a failed turn (bot_errors_total, Application Insights): keep
# the name dashboards and queries know, whichever module of the package defines the class.
ChannelError.__module__ = "bot.compat"

REPLY_DEADLINE_KEY = "otel_chatbot.reply_deadline"


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
