"""The turn in progress, as the instrumentation knows it, reachable from dialogs and replies through a ContextVar."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from opentelemetry import trace


@dataclass
class TurnInProgress:
    """What the instrumentation knows about the turn in progress: its channel label, its span, how many replies it
    sent and which dialog ran."""

    channel: str
    span: trace.Span
    replies: int = 0
    dialog_id: str | None = None


current_turn: ContextVar[TurnInProgress | None] = ContextVar("otel_chatbot_turn", default=None)
