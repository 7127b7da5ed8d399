"""Telemetry's implementation of the bot's hooks (bot/hooks.py): HTTP middleware, turn middleware, the dialogs'
telemetry client and the reply session's trace configs. `python -m bot` hands `instrument(telemetry)` to the app."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from botbuilder.core import BotTelemetryClient, Middleware
from yarl import URL

from telemetry import catalog
from telemetry.aiohttp_server import server_middleware
from telemetry.botframework import OpenTelemetryBotTelemetryClient, TurnTelemetryMiddleware, channel_reply_telemetry
from telemetry.genai import GenAITelemetry
from telemetry.setup import Telemetry
from telemetry.storage import StorageTelemetry

_CONVERSATION_PATH = re.compile(r"/v3/conversations/[^/]+(/activities)?(/[^/]+)?")
# A path segment of a serviceUrl kept as it is: short lowercase words such as Teams' regional "/amer/" or "/teams/".
_PLAIN_SEGMENT = re.compile(r"[a-z][a-z0-9-]{0,15}")


def reply_url(url: URL) -> str:
    """The URL recorded on reply spans: conversation and activity ids replaced by their route parameters (read from
    the raw path: an id may contain an encoded "/"), and any other path segment of the serviceUrl that is not a
    plain short word replaced by "{segment}" (a client chooses its serviceUrl; it may carry anything)."""

    def template(match: re.Match[str]) -> str:
        path = "/v3/conversations/{conversationId}"
        if match.group(1):
            path += "/activities"
        if match.group(2):
            path += "/{activityId}"
        return path

    raw = url.raw_path
    start = raw.find("/v3/conversations/")
    prefix, rest = (raw[:start], raw[start:]) if start >= 0 else (raw, "")
    prefix = "/".join(
        segment if not segment or _PLAIN_SEGMENT.fullmatch(segment) else "{segment}" for segment in prefix.split("/")
    )
    return str(
        url.with_query(None)
        .with_fragment(None)
        .with_path(prefix + _CONVERSATION_PATH.sub(template, rest), encoded=True)
    )


@dataclass
class TelemetryHooks:
    """Implements `bot.hooks.Instrumentation`."""

    http_middlewares: Sequence[object] = ()
    turn_middlewares: Sequence[Middleware] = ()
    telemetry_client: BotTelemetryClient | None = None
    client_trace_configs: Sequence[aiohttp.TraceConfig] = field(default_factory=tuple)
    # bot.storage.StorageObserver: traces and measures every call of a network state store (telemetry/storage.py)
    storage_observer: StorageTelemetry | None = None
    # The answer engine's telemetry (bot.answers.observer.AnswerObserver); None: none recorded.
    answer_observer: Any = None


def instrument(telemetry: Telemetry) -> TelemetryHooks:
    return TelemetryHooks(
        http_middlewares=(
            server_middleware(
                telemetry.tracer, telemetry.instruments, trust_forwarded=telemetry.config.trust_forwarded_headers
            ),
        ),
        turn_middlewares=(TurnTelemetryMiddleware(telemetry),),
        telemetry_client=OpenTelemetryBotTelemetryClient(telemetry),
        client_trace_configs=(channel_reply_telemetry(telemetry.tracer, telemetry.instruments, reply_url),),
        storage_observer=StorageTelemetry(
            telemetry.tracer,
            telemetry.meter_provider.get_meter(catalog.INSTRUMENTATION_SCOPE, telemetry.config.service_version),
        ),
        answer_observer=GenAITelemetry(telemetry),
    )
