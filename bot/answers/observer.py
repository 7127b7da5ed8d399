"""What the answer engine tells telemetry, as an interface: the bot never imports the telemetry SDK.

telemetry/genai.py implements it with the GenAI semantic conventions; `NullObserver` is used without telemetry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.vocabulary import (
    DELIVERED,
    DELIVERY_FAILED,
    SOURCE_FALLBACK,
    SOURCE_KNOWLEDGE,
    SOURCE_MODEL,
)
from bot.vocabulary import DELIVERY_CANCELLED as CANCELLED
from bot.vocabulary import DELIVERY_REFUSED as REFUSED

# Re-exported: the values of bot.answer.source and bot.answer.delivery (bot/vocabulary.py).
__all__ = [
    "CANCELLED",
    "DELIVERED",
    "DELIVERY_FAILED",
    "REFUSED",
    "SOURCE_FALLBACK",
    "SOURCE_KNOWLEDGE",
    "SOURCE_MODEL",
]

AnswerReference = Mapping[str, str]
"""Where an answer's telemetry is (trace and span ids), kept in conversation state so a later rating can point at it."""


@dataclass(frozen=True)
class CallRequest:
    provider: str
    model: str
    server_address: str
    server_port: int | None
    conversation_id: str  # as the channel sent it: telemetry hashes it
    messages: Sequence[Mapping[str, str]]
    max_output_tokens: int
    capture_content: bool = False  # the operator opted in to recording prompts and answers (then redacted)


@dataclass(frozen=True)
class ModelReply:
    text: str
    response_model: str | None
    response_id: str | None
    finish_reasons: tuple[str, ...]
    input_tokens: int | None  # None when the server reported no usage
    output_tokens: int | None
    reference: AnswerReference = field(default_factory=dict)  # the call's span, for a rating of this answer


class ModelCall(Protocol):
    @property
    def reference(self) -> AnswerReference: ...

    def first_chunk(self) -> None: ...

    def succeeded(self, reply: ModelReply) -> None: ...

    def failed(self, error_type: str, description: str) -> None: ...


class DeferredDelivery(Protocol):
    def ended(self, outcome: str) -> None: ...


class AnswerObserver(Protocol):
    def start_call(self, request: CallRequest) -> ModelCall: ...

    def turn_reference(self) -> AnswerReference: ...

    def answered(self, source: str, channel: str | None) -> None: ...

    def rated(self, rating: int, has_comment: bool, rated: Mapping[str, str]) -> None: ...

    def deferred(self, turn: AnswerReference) -> contextlib.AbstractContextManager[DeferredDelivery]: ...


class _NullCall:
    reference: AnswerReference = {}

    def first_chunk(self) -> None:
        return None

    def succeeded(self, reply: ModelReply) -> None:
        return None

    def failed(self, error_type: str, description: str) -> None:
        return None


class _NullDelivery:
    def ended(self, outcome: str) -> None:
        return None


class NullObserver:
    def start_call(self, request: CallRequest) -> ModelCall:
        return _NullCall()

    def turn_reference(self) -> AnswerReference:
        return {}

    def answered(self, source: str, channel: str | None) -> None:
        return None

    def rated(self, rating: int, has_comment: bool, rated: Mapping[str, str]) -> None:
        return None

    @contextlib.contextmanager
    def deferred(self, turn: AnswerReference) -> Iterator[DeferredDelivery]:
        yield _NullDelivery()
