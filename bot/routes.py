"""Every way the bot answers a message, in order: the one place to add an intent or a dialog.

- An intent: a `Route(name, matcher, handler)` in `shipped_routes` (and its handler here). Its name becomes the
  `bot.intent` value of the turn's metrics and spans; nothing in telemetry changes.
- A dialog: `dialog_route(YourDialog(...), "start", "words")` in `shipped_routes`; it runs under the `dialog` intent,
  its id recorded as `bot.dialog.id`, and `cancel` and the active-dialog route serve it like the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from botbuilder.core import BotTelemetryClient, MessageFactory, UserState

from bot.dialogs import FeedbackDialog
from bot.knowledge import KnowledgeBase
from bot.routing import Handler, Route, Turn, active_dialog_route, anything, commands, dialog_route
from bot.vocabulary import (
    INTENT_CANCEL,
    INTENT_FALLBACK,
    INTENT_HELP,
    INTENT_KNOWLEDGE,
    INTENT_MODEL,
    KNOWLEDGE_ANSWER_EVENT,
    KNOWLEDGE_FALLBACK_EVENT,
    SOURCE_FALLBACK,
    SOURCE_KNOWLEDGE,
)

HELP_COMMANDS = ("help", "?")
CANCEL_COMMANDS = ("cancel",)
FEEDBACK_COMMANDS = ("feedback", "survey", "rate")

HELP_TEXT = (
    "Here is what I can do:\n\n"
    "- Answer questions about me, e.g. *what are you?* or *what can you do?*\n"
    "- Answer questions about monitoring me, e.g. *where are the metrics?*, *which alerts exist?* or "
    "*how do I find a turn in Application Insights?*\n"
    "- `feedback` (or `survey`, `rate`): rate me from 1 to 5\n"
    "- `cancel`: stop what we are doing\n"
    "- `help`: show this list"
)
CANCELLED_TEXT = "Cancelled. What else can I do for you?"
NOTHING_TO_CANCEL_TEXT = "There is nothing to cancel."
FALLBACK_TEXT = "Sorry, I didn't understand that. Type `help` to see what I can do."

# What builds the routes: the user state (where dialogs keep what they learn) and the client business events go to.
RouteFactory = Callable[[UserState, BotTelemetryClient], Sequence[Route]]


async def cancel(turn: Turn) -> None:
    cancelled = turn.dialogs.active_dialog is not None
    if cancelled:
        await turn.dialogs.cancel_all_dialogs()
    await turn.context.send_activity(MessageFactory.text(CANCELLED_TEXT if cancelled else NOTHING_TO_CANCEL_TEXT))


async def show_help(turn: Turn) -> None:
    await turn.context.send_activity(MessageFactory.text(HELP_TEXT))


def answer_from(knowledge: KnowledgeBase) -> Handler:
    async def answer(turn: Turn) -> str | None:
        # Slash commands are never questions, so an unknown one (or /fail off the drill channels) falls back.
        entry = None if turn.command.startswith("/") else knowledge.match(turn.context.activity.text)
        models = turn.answers
        # Knowledge base first, the language model second (when configured), the fallback when neither answers.
        asked = entry is None and models is not None and not turn.command.startswith("/")
        if asked and models is not None and await models.answer(turn.context):
            return INTENT_MODEL
        if entry is None:
            turn.telemetry.track_event(KNOWLEDGE_FALLBACK_EVENT, {})
            await turn.context.send_activity(MessageFactory.text(FALLBACK_TEXT))
            if models is not None:
                await models.record(turn.context, SOURCE_FALLBACK)
            return INTENT_FALLBACK
        turn.telemetry.track_event(KNOWLEDGE_ANSWER_EVENT, {"topic": entry.id})
        await turn.context.send_activity(MessageFactory.text(entry.answer))
        if models is not None:
            await models.record(turn.context, SOURCE_KNOWLEDGE)
        return None

    return answer


def shipped_routes(
    user_state: UserState, telemetry_client: BotTelemetryClient, knowledge: KnowledgeBase | None = None
) -> list[Route]:
    """The bot's routes; the first that matches a message handles it."""
    return [
        Route(INTENT_CANCEL, commands(*CANCEL_COMMANDS), cancel),  # before the dialog in progress: it stops it
        active_dialog_route(),
        Route(INTENT_HELP, commands(*HELP_COMMANDS), show_help),
        dialog_route(FeedbackDialog(user_state, telemetry_client), *FEEDBACK_COMMANDS),
        Route(INTENT_KNOWLEDGE, anything, answer_from(knowledge or KnowledgeBase.load())),  # last: anything else
    ]
