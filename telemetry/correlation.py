"""What ties the items of one turn together where people read them.

Application Insights reads `operation_Name`, `user_Id`, `session_Id` and `itemCount` from each item on its own, and
Microsoft's Bot analytics queries group customEvents by `user_Id` and `session_Id`. The turn's SERVER span knows
them; the processors here copy them onto every span started inside it (its replies) and every log record emitted
inside it (custom events, log lines, logged exceptions), before any exporter sees them.

The sample rate is copied only onto records that are themselves kept with the turn (custom events and the turn's
own log lines, marked `SAMPLED_WITH_TURN`): records exported for every turn whatever the sampler must keep an
itemCount of 1.

`RequestOutcome` carries a turn's failure from the turn middleware out to the HTTP middleware, so the request's
metric says failed where its span does (the bot answers 2xx after apologising).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import Span, SpanProcessor

from telemetry import catalog

SAMPLED_WITH_TURN = "otel_chatbot.sampled_with_turn"
"""Log attribute marking a record emitted only for traced turns; replaced by the turn's sample rate."""

# A load test's turn is synthetic in every item it produces, so Application Insights can leave all of them out.
_COPIED = (catalog.ENDUSER_PSEUDO_ID, catalog.SESSION_ID, catalog.USER_AGENT_SYNTHETIC_TYPE)


def qualified_type(error: BaseException) -> str:
    """`error.type` as the OpenTelemetry SDK writes `exception.type`: module and class, builtins unqualified."""
    kind = type(error)
    module = kind.__module__
    return f"{module}.{kind.__qualname__}" if module and module != "builtins" else kind.__qualname__


@dataclass
class RequestOutcome:
    error_type: str | None = None


current_request: ContextVar[RequestOutcome | None] = ContextVar("otel_chatbot_request", default=None)


def turn_failed(error_type: str) -> None:
    outcome = current_request.get()
    if outcome is not None:
        outcome.error_type = error_type


def turn_correlation(span: Any) -> dict[str, Any]:
    """The correlation a recording SDK span hands down: its own name as operation name unless it inherited one."""
    attributes = getattr(span, "attributes", None) or {}
    found = {key: attributes[key] for key in (*_COPIED, catalog.OPERATION_NAME) if key in attributes}
    found.setdefault(catalog.OPERATION_NAME, getattr(span, "name", None))
    if catalog.SAMPLE_RATE in attributes:
        found[catalog.SAMPLE_RATE] = attributes[catalog.SAMPLE_RATE]
    return {key: value for key, value in found.items() if value is not None}


class CorrelationSpanProcessor(SpanProcessor):
    """Spans started inside a turn carry the turn's operation name, user and session (the sampler already gives
    them its sample rate)."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        parent = trace.get_current_span(parent_context)
        if not parent.is_recording() or parent.get_span_context().is_remote or not span.is_recording():
            return
        correlation = turn_correlation(parent)
        correlation.pop(catalog.SAMPLE_RATE, None)
        span.set_attributes(correlation)

    def on_end(self, span: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class CorrelationLogProcessor(LogRecordProcessor):
    """Log records emitted inside a traced turn carry its operation name, user and session; those kept only with the
    turn carry its sample rate."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        attributes: Any = record.attributes
        sampled_with_turn = bool(attributes) and SAMPLED_WITH_TURN in attributes
        if sampled_with_turn:
            del attributes[SAMPLED_WITH_TURN]
        span = trace.get_current_span()
        if attributes is None or not span.is_recording() or span.get_span_context().trace_id != record.trace_id:
            return
        correlation = turn_correlation(span)
        rate = correlation.pop(catalog.SAMPLE_RATE, None)
        if sampled_with_turn and rate is not None:
            correlation[catalog.SAMPLE_RATE] = rate
        for key, value in correlation.items():
            if key not in attributes:
                attributes[key] = value

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
