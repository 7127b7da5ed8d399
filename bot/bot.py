"""The bot's turn logic: the welcome, the failure drill, and every message handed to its router (bot/routes.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botbuilder.core import (
    ActivityHandler,
    BotTelemetryClient,
    ConversationState,
    InvokeResponse,
    MessageFactory,
    NullTelemetryClient,
    TurnContext,
    UserState,
)
from botbuilder.schema import ActionTypes, Activity, CardAction, ChannelAccount

from bot import compat
from bot.routing import Router, Turn
from bot.state import DIALOG_STATE_PROPERTY
from bot.vocabulary import INTENT_NONE, INTENT_WELCOME, TURN_STATE_INTENT, TURN_STATE_RATING

if TYPE_CHECKING:
    from bot.answers.turn import ModelAnswers

FAIL_COMMAND = "/fail"
# The failure drill only runs where a developer is at the keyboard, never on a production channel.
FAIL_DRILL_CHANNELS = frozenset({"emulator", "test"})

WELCOME_TEXT = (
    "Welcome! I answer questions about myself and about how I'm monitored (traces, metrics, alerts, logs). "
    "Type `feedback` to rate me, or `help` to see everything I can do."
)
# Offered with the welcome: one tap asks a question or starts the survey (Web Chat shows them as buttons).
WELCOME_ACTIONS = (
    ("What are you?", "what are you?"),
    ("What can you do?", "what can you do?"),
    ("Rate me", "feedback"),
)
# Web Chat pages send this event when the chat opens (the "welcome event" sample of Microsoft's Web Chat): Direct
# Line may announce the user in a conversationUpdate only once they speak, and Direct Line emulators such as
# offline-directline announce nobody (membersAdded is empty), so without it Web Chat shows no welcome.
WEB_CHAT_JOIN_EVENT = "webchat/join"


class SimulatedFailure(RuntimeError):
    """Raised on purpose by the `/fail` drill to exercise the error path."""


def welcome_activity() -> Activity:
    actions = [CardAction(type=ActionTypes.im_back, title=title, value=value) for title, value in WELCOME_ACTIONS]
    return MessageFactory.suggested_actions(actions, WELCOME_TEXT)


def _command(text: str | None) -> str:
    return (text or "").strip().rstrip(".!").strip().lower()


class ChatBot(ActivityHandler):
    def __init__(
        self,
        conversation_state: ConversationState,
        user_state: UserState,
        router: Router,
        telemetry_client: BotTelemetryClient | None = None,
        answers: ModelAnswers | None = None,
    ) -> None:
        if conversation_state is None or user_state is None:
            raise TypeError("ChatBot needs a ConversationState and a UserState")
        self._conversation_state = conversation_state
        self._user_state = user_state
        self._router = router
        self._telemetry_client = telemetry_client or NullTelemetryClient()
        self._dialog_state = conversation_state.create_property(DIALOG_STATE_PROPERTY)
        # The language model for what the knowledge base cannot answer (None: no model configured, docs/genai.md).
        self._answers = answers

    async def on_turn(self, turn_context: TurnContext) -> None:
        turn_context.turn_state[TURN_STATE_INTENT] = INTENT_NONE
        await super().on_turn(turn_context)
        # Not reached when the turn raised: the half-finished turn's state must not be persisted.
        await self._conversation_state.save_changes(turn_context)
        await self._user_state.save_changes(turn_context)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse | None:
        # Unsupported invokes keep botbuilder's answer, 501 (as every Bot Framework SDK does); a malformed
        # adaptiveCard/action gets its 400 error in a form that can be sent (bot/compat/invoke_responses.py).
        return compat.serialisable_invoke_response(await super().on_invoke_activity(turn_context))

    async def on_members_added_activity(self, members_added: list[ChannelAccount], turn_context: TurnContext) -> None:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        for member in members_added:
            if member.id != bot_id:
                await self._welcome(turn_context)

    async def on_event_activity(self, turn_context: TurnContext) -> None:
        if turn_context.activity.name == WEB_CHAT_JOIN_EVENT:
            await self._welcome(turn_context)

    async def _welcome(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(welcome_activity())
        turn_context.turn_state[TURN_STATE_INTENT] = INTENT_WELCOME

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        command = _command(turn_context.activity.text)
        if command == FAIL_COMMAND and turn_context.activity.channel_id in FAIL_DRILL_CHANNELS:
            raise SimulatedFailure("simulated failure requested with /fail")
        dialogs = await self._router.dialog_context(turn_context, self._dialog_state)
        await self._router.route(Turn(turn_context, command, dialogs, self._telemetry_client, self._answers))
        rating = turn_context.turn_state.get(TURN_STATE_RATING)
        if self._answers is not None and isinstance(rating, dict):
            # The survey ended: its rating evaluates the answer given before it.
            await self._answers.rated(turn_context, int(rating["rating"]), bool(rating.get("has_comment")))
