"""Telemetry of the answer engine by the OpenTelemetry GenAI semantic conventions (status Development).

- One CLIENT span `chat {model}` per model call, child of the turn: operation, provider, request/response model,
  response id, finish reasons, token usage, the conversation as a keyed hash (`gen_ai.conversation.id`, the same
  value as `bot.conversation.hash`), `error.type` and an error status when the call failed (429: `error.type=429`).
- Metrics `gen_ai.client.operation.duration`, `gen_ai.client.token.usage` (by `gen_ai.token.type`) and
  `gen_ai.client.operation.time_to_first_chunk`: the conventions' client-side time to first token
  (`gen_ai.server.time_to_first_token` is for model servers measuring themselves). Labels are bounded: the provider
  and models come from the bot's settings and the server's model name, error.type from a closed list or a status.
- Prompt and answer text (`gen_ai.input.messages`, `gen_ai.output.messages`) only when the operator opted in
  (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT); like every span attribute they are redacted by the privacy
  scanner before any exporter sees them (telemetry/privacy.py).
- A rating from the feedback dialog is a `gen_ai.evaluation.result` event in the trace of the answer it rates (the
  log record carries that answer's trace and span ids): in Application Insights a customEvent with the answer's
  operation_Id; and `bot.answer.rating` by answer source and model in Prometheus.
- A late answer is delivered from a `bot.answer.deferred` span linked to the turn that asked; its outcome is counted.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from botframework.connector import Channels
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags

from telemetry import catalog
from telemetry.privacy import MAX_REDACTED_LENGTH
from telemetry.setup import EVENT_ATTRIBUTE, Telemetry

_CHANNELS = frozenset(channel.value for channel in Channels)

AnswerReference = Mapping[str, str]


# What the answer engine hands over (bot/answers/observer.py defines them; telemetry does not import the bot).
class CallRequest(Protocol):
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def server_address(self) -> str: ...
    @property
    def server_port(self) -> int | None: ...
    @property
    def conversation_id(self) -> str: ...
    @property
    def messages(self) -> Sequence[Mapping[str, str]]: ...
    @property
    def max_output_tokens(self) -> int: ...
    @property
    def capture_content(self) -> bool: ...


class ModelReply(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def response_model(self) -> str | None: ...
    @property
    def response_id(self) -> str | None: ...
    @property
    def finish_reasons(self) -> tuple[str, ...]: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...


def _instrument(meter: Any, metric: catalog.Metric) -> Any:
    if metric.instrument is catalog.Instrument.COUNTER:
        return meter.create_counter(metric.name, unit=metric.unit, description=metric.description)
    return meter.create_histogram(
        metric.name,
        unit=metric.unit,
        description=metric.description,
        explicit_bucket_boundaries_advisory=list(metric.buckets),
    )


def reference_of(span: trace.Span) -> dict[str, str]:
    context = span.get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def span_context_of(reference: Mapping[str, str]) -> SpanContext | None:
    try:
        trace_id, span_id = int(reference["trace_id"], 16), int(reference["span_id"], 16)
    except (KeyError, TypeError, ValueError):
        return None
    context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return context if context.is_valid else None


def score_label(rating: int) -> str:
    negative, neutral, positive = catalog.SCORE_LABELS
    return negative if rating <= 2 else neutral if rating == 3 else positive


# The redaction truncates any value longer than this (telemetry/privacy.py): recorded content stays within it, so the
# JSON stays valid.
MAX_CONTENT_JSON = MAX_REDACTED_LENGTH - 96
MAX_PART_CHARACTERS = 1000


def messages_json(messages: Sequence[Mapping[str, str]], finish_reason: str | None = None) -> str:
    """Messages in the shape of the conventions' gen_ai.input/output.messages (role and text parts). The system
    prompt (fixed: the instructions and the knowledge base) is left out; of the others the newest that fit in
    MAX_CONTENT_JSON are kept, each part cut at MAX_PART_CHARACTERS."""
    shaped: list[dict[str, Any]] = []
    for message in reversed([m for m in messages if m.get("role") != "system"]):
        item: dict[str, Any] = {
            "role": message["role"],
            "parts": [{"type": "text", "content": message["content"][:MAX_PART_CHARACTERS]}],
        }
        if finish_reason is not None:
            item["finish_reason"] = finish_reason
        if len(json.dumps([item, *shaped], ensure_ascii=False)) > MAX_CONTENT_JSON:
            break
        shaped.insert(0, item)
    return json.dumps(shaped, ensure_ascii=False)


class _Call:
    def __init__(self, owner: GenAITelemetry, span: trace.Span, request: CallRequest) -> None:
        self._owner = owner
        self._span = span
        self._request = request
        self._started = time.perf_counter()
        self._labels: dict[str, str] = {
            catalog.GEN_AI_OPERATION_NAME: catalog.GEN_AI_OPERATION_CHAT,
            catalog.GEN_AI_PROVIDER_NAME: request.provider,
            catalog.GEN_AI_REQUEST_MODEL: request.model,
        }
        self.reference: AnswerReference = reference_of(span)

    def first_chunk(self) -> None:
        elapsed = time.perf_counter() - self._started
        self._owner.time_to_first_chunk.record(elapsed, self._labels)
        if self._span.is_recording():
            self._span.set_attribute(catalog.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)

    def succeeded(self, reply: ModelReply) -> None:
        elapsed = time.perf_counter() - self._started
        labels = dict(self._labels)
        if reply.response_model:
            labels[catalog.GEN_AI_RESPONSE_MODEL] = reply.response_model
        owner = self._owner
        owner.duration.record(elapsed, labels)
        # The conventions: report usage only as the server reported it, never estimated.
        for kind, tokens in ((catalog.TOKEN_INPUT, reply.input_tokens), (catalog.TOKEN_OUTPUT, reply.output_tokens)):
            if tokens is not None:
                owner.token_usage.record(tokens, {**labels, catalog.GEN_AI_TOKEN_TYPE: kind})
        span = self._span
        if span.is_recording():
            attributes: dict[str, Any] = {catalog.GEN_AI_RESPONSE_FINISH_REASONS: list(reply.finish_reasons)}
            for key, value in (
                (catalog.GEN_AI_RESPONSE_MODEL, reply.response_model),
                (catalog.GEN_AI_RESPONSE_ID, reply.response_id),
                (catalog.GEN_AI_USAGE_INPUT_TOKENS, reply.input_tokens),
                (catalog.GEN_AI_USAGE_OUTPUT_TOKENS, reply.output_tokens),
            ):
                if value is not None:
                    attributes[key] = value
            if self._request.capture_content:
                finish = reply.finish_reasons[0] if reply.finish_reasons else "stop"
                answer = [{"role": "assistant", "content": reply.text}]
                attributes[catalog.GEN_AI_OUTPUT_MESSAGES] = messages_json(answer, finish)
            span.set_attributes(attributes)
        span.end()

    def failed(self, error_type: str, description: str) -> None:
        elapsed = time.perf_counter() - self._started
        self._owner.duration.record(elapsed, {**self._labels, catalog.ERROR_TYPE: error_type})
        span = self._span
        if span.is_recording():
            span.set_attribute(catalog.ERROR_TYPE, error_type)
            span.set_status(trace.Status(trace.StatusCode.ERROR, description[:300]))
        span.end()


class _Delivery:
    def __init__(self, owner: GenAITelemetry, span: trace.Span) -> None:
        self._owner = owner
        self._span = span

    def ended(self, outcome: str) -> None:
        self._owner.deferred_answers.add(1, {catalog.ANSWER_DELIVERY: outcome})
        if self._span.is_recording():
            self._span.set_attribute(catalog.ANSWER_DELIVERY, outcome)
            if outcome == catalog.DELIVERY_FAILED:
                self._span.set_status(trace.Status(trace.StatusCode.ERROR, "the late answer was not delivered"))


class GenAITelemetry:
    """The answer engine's observer (bot.answers.observer.AnswerObserver), recording through `telemetry`."""

    def __init__(self, telemetry: Telemetry) -> None:
        meter = telemetry.meter_provider.get_meter(catalog.INSTRUMENTATION_SCOPE, telemetry.config.service_version)
        self.duration = _instrument(meter, catalog.GENAI_OPERATION_DURATION)
        self.token_usage = _instrument(meter, catalog.GENAI_TOKEN_USAGE)
        self.time_to_first_chunk = _instrument(meter, catalog.GENAI_TIME_TO_FIRST_CHUNK)
        self.answers = _instrument(meter, catalog.ANSWERS)
        self.ratings = _instrument(meter, catalog.ANSWER_RATINGS)
        self.deferred_answers = _instrument(meter, catalog.DEFERRED_ANSWERS)
        self._tracer = telemetry.tracer
        self._hash = telemetry.hasher
        self._logger = telemetry.logger_provider.get_logger(catalog.INSTRUMENTATION_SCOPE)

    def start_call(self, request: CallRequest) -> _Call:
        attributes: dict[str, Any] = {
            catalog.GEN_AI_OPERATION_NAME: catalog.GEN_AI_OPERATION_CHAT,
            catalog.GEN_AI_PROVIDER_NAME: request.provider,
            catalog.GEN_AI_REQUEST_MODEL: request.model,
            catalog.GEN_AI_REQUEST_MAX_TOKENS: request.max_output_tokens,
            catalog.GEN_AI_CONVERSATION_ID: self._hash(request.conversation_id),
            catalog.SERVER_ADDRESS: request.server_address,
        }
        if request.server_port is not None:
            attributes[catalog.SERVER_PORT] = request.server_port
        if request.capture_content:
            attributes[catalog.GEN_AI_INPUT_MESSAGES] = messages_json(request.messages)
        span = self._tracer.start_span(
            f"{catalog.GEN_AI_OPERATION_CHAT} {request.model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        return _Call(self, span, request)

    def turn_reference(self) -> AnswerReference:
        return reference_of(trace.get_current_span())

    def answered(self, source: str, channel: str | None) -> None:
        bounded = channel if channel in _CHANNELS else "other" if channel else "unknown"
        self.answers.add(1, {catalog.CHANNEL: bounded, catalog.ANSWER_SOURCE: source})
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(catalog.ANSWER_SOURCE, source)

    def rated(self, rating: int, has_comment: bool, rated: Mapping[str, str]) -> None:
        # No answer before the survey (rated is empty): the rating counts without a source.
        source = rated.get("source", "")
        labels = {catalog.ANSWER_SOURCE: source} if source in catalog.ANSWER_SOURCES else {}
        model = rated.get("model")
        if model:
            labels[catalog.GEN_AI_REQUEST_MODEL] = model
        self.ratings.record(rating, labels)
        attributes: dict[str, Any] = {
            EVENT_ATTRIBUTE: catalog.EVENT_EVALUATION.name,  # Application Insights customEvents
            catalog.GEN_AI_EVALUATION_NAME: catalog.EVALUATION_USER_RATING,
            catalog.GEN_AI_EVALUATION_SCORE_VALUE: float(rating),
            catalog.GEN_AI_EVALUATION_SCORE_LABEL: score_label(rating),
            catalog.FEEDBACK_HAS_COMMENT: has_comment,
            **labels,
        }
        if rated.get("response_id"):
            attributes[catalog.GEN_AI_RESPONSE_ID] = rated["response_id"]
        if model:
            attributes[catalog.GEN_AI_REQUEST_MODEL] = model
        # The record is placed in the rated answer's trace (parented to its chat span), as the conventions ask.
        rated_context = span_context_of(rated)
        context = trace.set_span_in_context(trace.NonRecordingSpan(rated_context)) if rated_context else None
        self._logger.emit(
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=catalog.EVENT_EVALUATION.name,
            attributes=attributes,
            event_name=catalog.EVENT_EVALUATION.name,
            context=context,
        )

    @contextlib.contextmanager
    def deferred(self, turn: AnswerReference) -> Iterator[_Delivery]:
        turn_context = span_context_of(turn)
        links = [Link(turn_context)] if turn_context else []
        with self._tracer.start_as_current_span(
            catalog.GENAI_SPAN_DEFERRED, kind=SpanKind.INTERNAL, links=links, record_exception=False
        ) as span:
            yield _Delivery(self, span)
