"""Bot Framework instrumentation: turn middleware, channel replies and a BotTelemetryClient for dialogs.

It knows botbuilder's types and the turn-state keys of the catalog; it never imports the bot's own logic.
Modules: turn (the turn in progress), activity (labels read from an activity), masking (ids out of exceptions),
middleware (TurnTelemetryMiddleware), replies (channel_reply_telemetry), telemetry_client
(OpenTelemetryBotTelemetryClient).
"""

from telemetry.botframework.masking import masked_exception
from telemetry.botframework.middleware import TurnTelemetryMiddleware, operation_query
from telemetry.botframework.replies import channel_reply_telemetry, reply_error_type
from telemetry.botframework.telemetry_client import OpenTelemetryBotTelemetryClient
from telemetry.botframework.turn import TurnInProgress

__all__ = [
    "OpenTelemetryBotTelemetryClient",
    "TurnInProgress",
    "TurnTelemetryMiddleware",
    "channel_reply_telemetry",
    "masked_exception",
    "operation_query",
    "reply_error_type",
]
