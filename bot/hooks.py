"""What the bot lets an observer hook into, and what it tells it; telemetry implements this (telemetry/wiring.py).

The bot depends on this protocol only, never on telemetry: `create_app(settings)` without instrumentation runs the bot
with none of the telemetry packages imported. What the bot tells an observer:

- on a refused request's response, `REJECTION` (one of `bot.vocabulary.REJECTIONS`) and, for a failed
  authentication, `AUTH_FAILURE` (one of `bot.vocabulary.AUTH_FAILURES`);
- in a turn's `turn_state`, `bot.vocabulary.TURN_STATE_INTENT` and `TURN_STATE_DIALOG`;
- business events and metrics through the `BotTelemetryClient` it is given (`telemetry_client`);
- with a language model configured, its calls, answers and ratings through `answer_observer` (bot/answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from botbuilder.core import BotTelemetryClient, Middleware

from bot.storage import StorageObserver

# A refused request's response carries why (read by telemetry's HTTP middleware and the refusal log).
REJECTION = web.ResponseKey("bot.request.rejection", str)
# ... and a request that failed authentication why that failed.
AUTH_FAILURE = web.ResponseKey("bot.auth.failure", str)


class Instrumentation(Protocol):
    """Everything an observer adds to the bot, each applied by `bot.app.create_app`."""

    @property
    def http_middlewares(self) -> Sequence[object]:
        """aiohttp middlewares around every request, outermost first (before the bot's own)."""
        ...

    @property
    def turn_middlewares(self) -> Sequence[Middleware]:
        """botbuilder middlewares around every turn, before the fault injection."""
        ...

    @property
    def telemetry_client(self) -> BotTelemetryClient | None:
        """Where the bot, its dialogs and its fault injection send business events and metrics."""
        ...

    @property
    def client_trace_configs(self) -> Sequence[aiohttp.TraceConfig]:
        """aiohttp trace configs of the session that sends replies to the channels."""
        ...

    @property
    def storage_observer(self) -> StorageObserver | None:
        """Told about every call of a network state store and every rerun or redelivery of a turn (bot/storage)."""
        ...

    @property
    def answer_observer(self) -> Any:
        """What the answer engine tells about model calls, answers and ratings (bot.answers.observer.AnswerObserver);
        None: nothing."""
        ...


@dataclass(frozen=True)
class NoInstrumentation:
    """Nothing hooked in: the bot on its own."""

    http_middlewares: Sequence[object] = ()
    turn_middlewares: Sequence[Middleware] = ()
    telemetry_client: BotTelemetryClient | None = None
    client_trace_configs: Sequence[aiohttp.TraceConfig] = ()
    storage_observer: StorageObserver | None = None
    answer_observer: Any = None


__all__ = ["AUTH_FAILURE", "REJECTION", "Instrumentation", "NoInstrumentation"]
