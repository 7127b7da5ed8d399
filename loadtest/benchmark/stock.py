"""The comparison target: botbuilder 4.17.1's echo bot exactly as its sample is written (CloudAdapter,
ConfigurationBotFrameworkAuthentication, an ActivityHandler that echoes, `adapter.process(request, bot)`).

Only one thing is changed, the minimum that makes `deliveryMode: "expectReplies"` answer at all: botbuilder
serialises the ExpectedReplies body twice and the second call raises on the dict the first produced (a 500 for
every such request). The stand-in serialiser passes an already-serialised body through and otherwise calls
botbuilder's own. Nothing else is patched: not the msrest retry policy, not the per-turn clients, not the sender.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, cast

from aiohttp import web
from aiohttp.web import Request, Response
from botbuilder.core import ActivityHandler, MessageFactory, TurnContext
from botbuilder.core import serializer_helper as botbuilder_serializer_helper
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    aiohttp_error_middleware,
)
from botbuilder.integration.aiohttp import cloud_adapter as botbuilder_cloud_adapter
from botbuilder.schema import ChannelAccount


class DefaultConfig:
    """The sample's config.py: no app id, so no authentication (the Emulator's default)."""

    PORT = 3978
    APP_ID = ""
    APP_PASSWORD = ""
    APP_TYPE = "MultiTenant"
    APP_TENANTID = ""


class EchoBot(ActivityHandler):
    async def on_members_added_activity(self, members_added: list[ChannelAccount], turn_context: TurnContext) -> None:
        for member in members_added:
            if member.id != turn_context.activity.recipient.id:
                await turn_context.send_activity("Hello and welcome!")

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(MessageFactory.text(f"Echo: {turn_context.activity.text}"))


def _serializer_helper(body: Any) -> Any:
    if isinstance(body, dict | list):
        return body
    return botbuilder_serializer_helper(body)


def allow_expect_replies() -> None:
    """The one workaround: without it every expectReplies request is answered 500."""
    botbuilder_cloud_adapter.serializer_helper = _serializer_helper


def create_app() -> web.Application:
    allow_expect_replies()
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(DefaultConfig()))
    bot = EchoBot()

    async def on_error(context: TurnContext, error: Exception) -> None:  # the sample's handler
        print(f"\n [on_turn_error] unhandled error: {error}", file=sys.stderr)
        traceback.print_exc()
        await context.send_activity("The bot encountered an error or bug.")

    adapter.on_turn_error = on_error

    async def messages(request: Request) -> Response:
        return cast(Response, await adapter.process(request, bot))  # None only for web sockets

    app = web.Application(middlewares=[aiohttp_error_middleware])
    app.router.add_post("/api/messages", messages)
    return app
