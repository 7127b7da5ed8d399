"""The CloudAdapter the bot runs on: Bot Framework authentication, replies to the channel, the turn error handler."""

from __future__ import annotations

import logging
import traceback

import aiohttp
from botbuilder.core import ConversationState, Middleware, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes
from botframework.connector import Channels

from bot import compat, fastpath
from bot.fastpath.schema_codec import FastTurnResults
from bot.settings import Settings
from bot.storage import StateStoreError
from bot.storage.turns import StateConflictError

log = logging.getLogger("bot.adapter")

ERROR_MESSAGE = "Sorry, something went wrong on my side. Please try again in a moment."


class ChatAdapter(compat.AsyncChannelReplies, FastTurnResults, CloudAdapter):
    def __init__(
        self,
        settings: Settings,
        channel_session: aiohttp.ClientSession,
        conversation_state: ConversationState | None = None,
        middleware: list[Middleware] | None = None,
    ) -> None:
        compat.install()
        fastpath.install()
        authentication = ConfigurationBotFrameworkAuthentication(settings.botbuilder_configuration())
        super().__init__(compat.CachingBotFrameworkAuthentication(authentication))
        self.channel_session = channel_session
        self.reply_timeout = aiohttp.ClientTimeout(total=settings.reply_timeout_seconds)
        self._conversation_state = conversation_state
        for item in middleware or []:
            self.use(item)
        self.on_turn_error = self.handle_turn_error

    async def handle_turn_error(self, context: TurnContext, error: Exception) -> None:
        """Record the exception, tell the user, and on the Emulator show the error in the inspector.

        The exception itself is already on the turn's span (the telemetry middleware saw it pass)."""
        # No traceback here: the exception is recorded once, on the turn's span (Application Insights `exceptions`).
        log.error("unhandled error in a %s turn: %s", context.activity.type, type(error).__name__)
        if isinstance(error, StateStoreError | StateConflictError):
            # These messages name the store and the cause, never an id or a text: the operator's first clue.
            log.error("%s", error)
        if self._conversation_state is not None:
            # The conversation state may be what broke the turn (a dialog stuck in an error loop): start afresh.
            await self._conversation_state.clear_state(context)
            try:
                await self._conversation_state.delete(context)
            except StateStoreError as store_error:
                # The store may be what failed: the apology below must still reach the user.
                log.error("could not reset the conversation state: %s", store_error)
        try:
            await context.send_activity(ERROR_MESSAGE)
            if context.activity.channel_id == Channels.emulator:
                await context.send_activity(
                    Activity(
                        type=ActivityTypes.trace,
                        name="OnTurnError Trace",
                        label="TurnError",
                        value=f"{type(error).__name__}: {error}",
                        value_type="https://www.botframework.com/schemas/error",
                        text="".join(traceback.format_exception_only(type(error), error)).strip(),
                    )
                )
        except compat.ChannelError:
            log.warning("could not tell the user about the error: the channel is unreachable")
