"""The bot's turn logic: commands, the feedback dialog and knowledge-base answers."""

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
from botbuilder.dialogs import Dialog, DialogTurnStatus
from botbuilder.schema import ActionTypes, Activity, CardAction, ChannelAccount

from bot import compat
from bot.answers.observer import SOURCE_FALLBACK, SOURCE_KNOWLEDGE
from bot.dialogs import create_dialog_context
from bot.knowledge import KnowledgeBase
from bot.state import DIALOG_STATE_PROPERTY
from telemetry.catalog import (
    EVENT_KNOWLEDGE_ANSWER,
    EVENT_KNOWLEDGE_FALLBACK,
    INTENT_CANCEL,
    INTENT_DIALOG,
    INTENT_FALLBACK,
    INTENT_HELP,
    INTENT_KNOWLEDGE,
    INTENT_MODEL,
    INTENT_NONE,
    INTENT_WELCOME,
    TURN_STATE_DIALOG,
    TURN_STATE_INTENT,
)

if TYPE_CHECKING:
    from bot.answers.turn import ModelAnswers

HELP_COMMANDS = frozenset({"help", "?"})
CANCEL_COMMANDS = frozenset({"cancel"})
FEEDBACK_COMMANDS = frozenset({"feedback", "survey", "rate"})
FAIL_COMMAND = "/fail"
# The failure drill only runs where a developer is at the keyboard, never on a production channel.
FAIL_DRILL_CHANNELS = frozenset({"emulator", "test"})

WELCOME_TEXT = (
    "Welcome! I answer questions about myself and about how I'm monitored (traces, metrics, alerts, logs). "
    "Type `feedback` to rate me, or `help` to see everything I can do."
)
HELP_TEXT = (
    "Here is what I can do:\n\n"
    "- Answer questions about me, e.g. *what are you?* or *what can you do?*\n"
    "- Answer questions about monitoring me, e.g. *where are the metrics?*, *which alerts exist?* or "
    "*how do I find a turn in Application Insights?*\n"
    "- `feedback` (or `survey`, `rate`): rate me from 1 to 5\n"
    "- `cancel`: stop what we are doing\n"
    "- `help`: show this list"
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
CANCELLED_TEXT = "Cancelled. What else can I do for you?"
NOTHING_TO_CANCEL_TEXT = "There is nothing to cancel."
FALLBACK_TEXT = "Sorry, I didn't understand that. Type `help` to see what I can do."


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
        dialog: Dialog,
        knowledge: KnowledgeBase,
        telemetry_client: BotTelemetryClient | None = None,
        answers: ModelAnswers | None = None,
    ) -> None:
        if conversation_state is None or user_state is None:
            raise TypeError("ChatBot needs a ConversationState and a UserState")
        self._conversation_state = conversation_state
        self._user_state = user_state
        self._dialog = dialog
        self._knowledge = knowledge
        self._telemetry_client = telemetry_client or NullTelemetryClient()
        self._dialog_state = conversation_state.create_property(DIALOG_STATE_PROPERTY)
        # The language model for what the knowledge base cannot answer (None: no model configured).
        self._answers = answers

    async def on_turn(self, turn_context: TurnContext) -> None:
        turn_context.turn_state[TURN_STATE_INTENT] = INTENT_NONE
        await super().on_turn(turn_context)
        # Not reached when the turn raised: the half-finished turn's state must not be persisted.
        await self._conversation_state.save_changes(turn_context)
        await self._user_state.save_changes(turn_context)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse | None:
        # Unsupported invokes keep botbuilder's answer, 501 (as every Bot Framework SDK does); a malformed
        # adaptiveCard/action gets its 400 error in a form that can be sent (compat workaround 2).
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

        dialog_context = await create_dialog_context(self._dialog, turn_context, self._dialog_state)
        if command in CANCEL_COMMANDS:
            cancelled = dialog_context.active_dialog is not None
            if cancelled:
                await dialog_context.cancel_all_dialogs()
            turn_context.turn_state[TURN_STATE_INTENT] = INTENT_CANCEL
            await turn_context.send_activity(
                MessageFactory.text(CANCELLED_TEXT if cancelled else NOTHING_TO_CANCEL_TEXT)
            )
        elif dialog_context.active_dialog is not None:
            self._set_dialog_intent(turn_context)
            result = await dialog_context.continue_dialog()
            if self._answers is not None and result.status == DialogTurnStatus.Complete:
                rating = result.result if isinstance(result.result, dict) else {}
                if isinstance(rating.get("rating"), int):
                    # The rating is an evaluation of the answer before the survey (docs/genai.md).
                    await self._answers.rated(turn_context, rating["rating"], bool(rating.get("has_comment")))
        elif command in HELP_COMMANDS:
            turn_context.turn_state[TURN_STATE_INTENT] = INTENT_HELP
            await turn_context.send_activity(MessageFactory.text(HELP_TEXT))
        elif command in FEEDBACK_COMMANDS:
            self._set_dialog_intent(turn_context)
            await dialog_context.begin_dialog(self._dialog.id)
        else:
            await self._answer(turn_context, command)

    def _set_dialog_intent(self, turn_context: TurnContext) -> None:
        turn_context.turn_state[TURN_STATE_INTENT] = INTENT_DIALOG
        turn_context.turn_state[TURN_STATE_DIALOG] = self._dialog.id

    async def _answer(self, turn_context: TurnContext, command: str) -> None:
        # Slash commands are never questions, so an unknown one (or /fail off the drill channels) falls back.
        entry = None if command.startswith("/") else self._knowledge.match(turn_context.activity.text)
        if entry is None and self._answers is not None and not command.startswith("/"):
            # Knowledge base first, the model second, the fallback when neither answers.
            turn_context.turn_state[TURN_STATE_INTENT] = INTENT_MODEL
            if await self._answers.answer(turn_context):
                return
        if entry is None:
            turn_context.turn_state[TURN_STATE_INTENT] = INTENT_FALLBACK
            self._telemetry_client.track_event(EVENT_KNOWLEDGE_FALLBACK.name, {})
            await turn_context.send_activity(MessageFactory.text(FALLBACK_TEXT))
            if self._answers is not None:
                await self._answers.record(turn_context, SOURCE_FALLBACK)
            return
        turn_context.turn_state[TURN_STATE_INTENT] = INTENT_KNOWLEDGE
        self._telemetry_client.track_event(EVENT_KNOWLEDGE_ANSWER.name, {"topic": entry.id})
        await turn_context.send_activity(MessageFactory.text(entry.answer))
        if self._answers is not None:
            await self._answers.record(turn_context, SOURCE_KNOWLEDGE)
