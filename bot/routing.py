"""How a message finds its answer: an ordered list of routes, the first that matches handles the turn.

A route names its intent (the `bot.intent` of the turn's metrics and spans): creating the route registers the intent
(bot/vocabulary.py), so telemetry reports it by name with no change to telemetry. The routes the bot ships are listed
in bot/routes.py, the one place to add an intent or a dialog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botbuilder.core import BotTelemetryClient, StatePropertyAccessor, TurnContext
from botbuilder.dialogs import Dialog, DialogContext, DialogSet

from bot.vocabulary import INTENT_DIALOG, TURN_STATE_DIALOG, TURN_STATE_INTENT, known_intents, register_intent

if TYPE_CHECKING:
    from bot.answers.turn import ModelAnswers


@dataclass(frozen=True)
class Turn:
    """What a route sees of a message turn."""

    context: TurnContext
    command: str  # the text trimmed, lower-cased, without trailing "." or "!"
    dialogs: DialogContext  # the conversation's dialog stack, over every dialog the routes run
    telemetry: BotTelemetryClient
    answers: ModelAnswers | None = None  # the language model, when one is configured (bot/answers, docs/genai.md)


# A handler answers the turn; it may return another registered intent to record instead of its route's.
Handler = Callable[[Turn], Awaitable[str | None]]
Matcher = Callable[[Turn], bool]


@dataclass(frozen=True)
class Route:
    intent: str
    matches: Matcher
    handle: Handler
    dialogs: tuple[Dialog, ...] = field(default=())  # dialogs the handler begins, added to the dialog set

    def __post_init__(self) -> None:
        register_intent(self.intent)


def commands(*words: str) -> Matcher:
    """Matches a message that is one of `words` (compared with `Turn.command`)."""
    accepted = frozenset(word.lower() for word in words)
    return lambda turn: turn.command in accepted


def anything(_: Turn) -> bool:
    return True


def dialog_route(dialog: Dialog, *words: str) -> Route:
    """Begins `dialog` when the message is one of `words`; the turn's intent is `dialog`, with the dialog's id."""

    async def begin(turn: Turn) -> None:
        turn.context.turn_state[TURN_STATE_DIALOG] = dialog.id
        await turn.dialogs.begin_dialog(dialog.id)
        return None

    return Route(INTENT_DIALOG, commands(*words), begin, (dialog,))


def active_dialog_route() -> Route:
    """Hands the message to the dialog in progress, if any (routes before it, such as `cancel`, win over it)."""

    async def resume(turn: Turn) -> None:
        active = turn.dialogs.active_dialog
        turn.context.turn_state[TURN_STATE_DIALOG] = active.id if active is not None else None
        await turn.dialogs.continue_dialog()
        return None

    return Route(INTENT_DIALOG, lambda turn: turn.dialogs.active_dialog is not None, resume)


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        if not routes:
            raise ValueError("a router needs at least one route")
        self.routes = tuple(routes)
        self.dialogs = tuple(dialog for route in self.routes for dialog in route.dialogs)
        ids = [dialog.id for dialog in self.dialogs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"two dialogs share an id: {sorted(ids)}")

    @property
    def intents(self) -> frozenset[str]:
        return frozenset(route.intent for route in self.routes)

    async def dialog_context(self, context: TurnContext, accessor: StatePropertyAccessor) -> DialogContext:
        """A dialog context over the dialog stack stored through `accessor`, able to run every route's dialogs."""
        dialog_set = DialogSet(accessor)
        for dialog in self.dialogs:
            dialog_set.add(dialog)
        return await dialog_set.create_context(context)

    async def route(self, turn: Turn) -> str | None:
        """Handle `turn` with the first matching route; the intent recorded, or None if no route matched."""
        for route in self.routes:
            if route.matches(turn):
                turn.context.turn_state[TURN_STATE_INTENT] = route.intent
                other = await route.handle(turn)
                if other is not None:
                    if other not in known_intents():
                        raise ValueError(f"route {route.intent!r} returned an unregistered intent {other!r}")
                    turn.context.turn_state[TURN_STATE_INTENT] = other
                return str(turn.context.turn_state[TURN_STATE_INTENT])
        return None
