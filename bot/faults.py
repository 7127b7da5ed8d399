"""Fault injection for drills and load tests: a share of message turns fails or is slowed down. Off by default.

Its state is logged when it changes and reported as the `bot.faults.*` gauges; injected failures are ordinary
failed turns (`bot.errors` with `error.type=bot.faults.InjectedFault`), injected delays show in every latency metric.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from botbuilder.core import BotTelemetryClient, Middleware, NullTelemetryClient, TurnContext
from botbuilder.schema import ActivityTypes

from bot import vocabulary

log = logging.getLogger("bot.faults")


class InjectedFault(RuntimeError):
    """A failure the fault injection caused on purpose."""


@dataclass(frozen=True)
class FaultSettings:
    error_ratio: float = 0.0
    delay_ratio: float = 0.0
    delay_seconds: float = 0.0

    @property
    def active(self) -> bool:
        return self.error_ratio > 0 or (self.delay_ratio > 0 and self.delay_seconds > 0)

    def describe(self) -> str:
        if not self.active:
            return "fault injection off"
        return (
            f"fault injection ON: {self.error_ratio:.0%} of message turns fail, "
            f"{self.delay_ratio:.0%} are delayed by {self.delay_seconds:g} s"
        )


class FaultInjection(Middleware):
    def __init__(
        self, settings: FaultSettings, telemetry_client: BotTelemetryClient | None = None, seed: int | None = None
    ) -> None:
        self._telemetry = telemetry_client or NullTelemetryClient()
        self._random = random.Random(seed)
        self.settings = FaultSettings()
        self.configure(settings)

    def configure(self, settings: FaultSettings | None = None, **changes: float) -> FaultSettings:
        """Switch faults on, off or change them while the bot runs (drills); returns the new settings."""
        new = replace(settings or self.settings, **changes)
        if new != self.settings or settings is not None:
            (log.warning if new.active else log.info)("%s", new.describe())
        self.settings = new
        self._telemetry.track_metric(vocabulary.FAULT_ERROR_RATIO_METRIC, new.error_ratio)
        self._telemetry.track_metric(vocabulary.FAULT_DELAY_RATIO_METRIC, new.delay_ratio)
        self._telemetry.track_metric(vocabulary.FAULT_DELAY_METRIC, new.delay_seconds)
        return new

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[Any]]) -> None:
        faults = self.settings
        if faults.active and context.activity.type == ActivityTypes.message:
            if faults.delay_ratio and self._random.random() < faults.delay_ratio:
                await asyncio.sleep(faults.delay_seconds)
            if faults.error_ratio and self._random.random() < faults.error_ratio:
                raise InjectedFault("failure injected by BOT_FAULT_ERROR_RATIO")
        await logic()
