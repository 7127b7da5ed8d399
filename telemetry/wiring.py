"""What the application needs from telemetry, bundled: HTTP middleware, turn middleware, the dialogs' telemetry
client and the reply session's trace configs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
from botbuilder.core import BotTelemetryClient, Middleware
from yarl import URL

from telemetry.aiohttp_server import server_middleware
from telemetry.botframework import OpenTelemetryBotTelemetryClient, TurnTelemetryMiddleware, channel_reply_telemetry
from telemetry.setup import Telemetry

_CONVERSATION_PATH = re.compile(r"/v3/conversations/[^/]+(/activities)?(/[^/]+)?")


def reply_url(url: URL) -> str:
    """The URL recorded on reply spans: conversation and activity ids replaced by their route parameters."""

    def template(match: re.Match[str]) -> str:
        path = "/v3/conversations/{conversationId}"
        if match.group(1):
            path += "/activities"
        if match.group(2):
            path += "/{activityId}"
        return path

    return str(url.with_query(None).with_path(_CONVERSATION_PATH.sub(template, url.path), encoded=True))


@dataclass
class Instrumentation:
    http_middlewares: Sequence[object] = ()
    turn_middlewares: Sequence[Middleware] = ()
    telemetry_client: BotTelemetryClient | None = None
    client_trace_configs: Sequence[aiohttp.TraceConfig] = field(default_factory=tuple)


def instrument(telemetry: Telemetry) -> Instrumentation:
    return Instrumentation(
        http_middlewares=(
            server_middleware(
                telemetry.tracer, telemetry.instruments, trust_forwarded=telemetry.config.trust_forwarded_headers
            ),
        ),
        turn_middlewares=(TurnTelemetryMiddleware(telemetry),),
        telemetry_client=OpenTelemetryBotTelemetryClient(telemetry),
        client_trace_configs=(channel_reply_telemetry(telemetry.tracer, telemetry.instruments, reply_url),),
    )
