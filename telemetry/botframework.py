"""Bot Framework instrumentation: turn middleware, channel replies and a BotTelemetryClient for dialogs.

It knows botbuilder's types and the turn-state keys of the catalog; it never imports the bot's own logic.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlparse

import aiohttp
from botbuilder.core import BotTelemetryClient, Middleware, Severity, TurnContext
from botbuilder.core.bot_telemetry_client import TelemetryDataPointType
from botbuilder.schema import Activity, ActivityTypes
from botframework.connector import Channels
from opentelemetry import trace
from opentelemetry.instrumentation.utils import http_status_to_status_code
from opentelemetry.propagate import inject
from opentelemetry.util.http import redact_url, sanitize_method
from yarl import URL

from bot.vocabulary import is_known_intent
from telemetry import catalog
from telemetry.correlation import SAMPLED_WITH_TURN, qualified_type, turn_failed
from telemetry.instruments import Instruments, Labels
from telemetry.privacy import redact
from telemetry.setup import Telemetry

log = logging.getLogger("telemetry.turn")
# The turn's own log lines are written for traced turns only: they are kept (and weighted) as the turn's trace is.
_PER_TURN = {SAMPLED_WITH_TURN: True}


@dataclass
class TurnRecord:
    """What the instrumentation knows about the turn in progress (reachable from dialogs through a ContextVar)."""

    channel: str
    span: trace.Span
    replies: int = 0
    dialog_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


_current_turn: ContextVar[TurnRecord | None] = ContextVar("otel_chatbot_turn", default=None)


_CHANNELS = frozenset(channel.value for channel in Channels)
_ACTIVITY_TYPES = frozenset(kind.value for kind in ActivityTypes)


def _bounded(value: object, known: frozenset[str]) -> str:
    """A metric label from request data: one of the known Bot Framework values, else `other` (or `unknown`), so
    a client cannot create new series by sending made-up channel ids or activity types."""
    if type(value) is str and value in known:
        return value
    if value is None or value == "":
        return "unknown"
    text = str(getattr(value, "value", value))  # botbuilder's enums by value: `message`, not `ActivityTypes.message`
    return text if text in known else "other"


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8}){0,6}")
MAX_ACTIVITY_ID_LENGTH = 128


def _locale(activity: Activity) -> str:
    """The activity's locale when it has the shape of a language tag (BCP 47), else `invalid`: a client can send any
    text there."""
    locale = activity.locale
    if not locale:
        return ""
    return locale if isinstance(locale, str) and _LANGUAGE_TAG.fullmatch(locale) else "invalid"


def _activity_id(activity: Activity) -> str:
    """The activity id, at most 128 characters (redacted like all values before export)."""
    return str(activity.id or "")[:MAX_ACTIVITY_ID_LENGTH]


def _channel(activity: Activity) -> str:
    return _bounded(activity.channel_id, _CHANNELS)


def _activity_type(activity: Activity) -> str:
    return _bounded(activity.type or ActivityTypes.message, _ACTIVITY_TYPES)


def _hex_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def operation_query(trace_id: str) -> str:
    return f'union requests, dependencies, traces, exceptions | where operation_Id == "{trace_id}"'


class TurnTelemetryMiddleware(Middleware):
    """Describes every turn on the current span (the HTTP request's SERVER span when there is one), counts it and
    times it, reports every activity sent, and on the emulator channel tells the developer the turn's trace id."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._instruments = telemetry.instruments
        self._hash = telemetry.hasher
        self._tracer = telemetry.tracer
        self._text = telemetry.config.log_personal_information

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[Any]]) -> None:
        current = trace.get_current_span()
        if current.get_span_context().is_valid:
            await self._run(context, logic, current)
        else:
            with self._tracer.start_as_current_span(
                catalog.SPAN_TURN, record_exception=False, set_status_on_exception=False
            ) as span:
                await self._run(context, logic, span)

    async def _run(self, context: TurnContext, logic: Callable[[], Awaitable[Any]], span: trace.Span) -> None:
        activity = context.activity
        channel = _channel(activity)
        activity_type = _activity_type(activity)
        conversation = self._hash(activity.conversation.id if activity.conversation else None)
        record = TurnRecord(channel=channel, span=span)
        token = _current_turn.set(record)
        context.on_send_activities(self._on_send)
        start = time.perf_counter()
        outcome = catalog.OUTCOME_SUCCESS
        # Events and the turn's log line describe a traced turn and go where its trace goes: with traces sampled
        # (OTEL_TRACES_SAMPLER) they are kept for the sampled turns only. Metrics count every turn.
        traced = span.is_recording()
        if traced:
            user = self._hash(activity.from_property.id if activity.from_property else None)
            attributes = {
                catalog.CHANNEL: channel,
                catalog.ACTIVITY_TYPE: activity_type,
                catalog.LOCALE: _locale(activity),
                catalog.CONVERSATION_HASH: conversation,
                catalog.USER_HASH: user,
                catalog.ENDUSER_PSEUDO_ID: user,
                catalog.SESSION_ID: conversation,
                catalog.ACTIVITY_ID: _activity_id(activity),
            }
            received = {
                "channelId": channel,
                "activityId": _activity_id(activity),
                "activityType": activity_type,
                "conversationId": conversation,
                "fromId": user,
                "locale": _locale(activity),
            }
            if self._text and activity.text:
                attributes[catalog.MESSAGE_TEXT] = received["text"] = redact(activity.text)
                log.info("UserMessage: %s", received["text"], extra=_PER_TURN)
            span.set_attributes(attributes)
            self._telemetry.emit_event(catalog.EVENT_MESSAGE_RECEIVED.name, received)
        if conversation:
            self._instruments.active_conversations.touch(conversation)
        if activity_type == ActivityTypes.message:
            self._instruments.count_message_received(1, ((catalog.CHANNEL, channel),))
        try:
            await logic()
        except Exception as error:
            outcome = catalog.OUTCOME_ERROR
            error_type = qualified_type(error)
            ids = (
                activity.conversation.id if activity.conversation else None,
                activity.from_property.id if activity.from_property else None,
                activity.id,
                activity.reply_to_id,
            )
            span.record_exception(error, attributes=masked_exception(error, ids, self._hash))
            span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
            span.set_attribute(catalog.ERROR_TYPE, error_type)
            self._instruments.errors.add(1, {catalog.CHANNEL: channel, catalog.ERROR_TYPE: error_type})
            turn_failed(error_type)
            handler = context.adapter.on_turn_error
            if handler is None:
                raise
            # The adapter's error handler (the apology) runs here rather than after the middleware has returned, as
            # botbuilder would run it: its replies and its time then belong to the turn that failed.
            await handler(context, error)
        finally:
            elapsed = time.perf_counter() - start
            intent = context.turn_state.get(catalog.TURN_STATE_INTENT) or catalog.INTENT_NONE
            if not is_known_intent(intent):  # the bot registers its intents (bot/routing.py): bounded labels
                intent = catalog.INTENT_NONE
            labels = (
                (catalog.CHANNEL, channel),
                (catalog.ACTIVITY_TYPE, activity_type),
                (catalog.INTENT, intent),
                (catalog.OUTCOME, outcome),
            )
            self._instruments.count_turn(1, labels)
            self._instruments.record_turn_duration(elapsed, labels)
            if traced:
                ending: dict[str, str | int] = {catalog.INTENT: intent, catalog.OUTCOME: outcome}
                dialog_id = record.dialog_id or context.turn_state.get(catalog.TURN_STATE_DIALOG)
                if dialog_id:
                    ending[catalog.DIALOG_ID] = str(dialog_id)
                if record.replies:
                    ending[catalog.REPLIES] = record.replies
                span.set_attributes(ending)
                log.info(
                    "turn %s on %s: intent=%s outcome=%s replies=%d in %.1f ms",
                    activity_type,
                    channel,
                    intent,
                    outcome,
                    record.replies,
                    elapsed * 1000,
                    extra=_PER_TURN,
                )
            if channel == "emulator":
                await self._send_trace_activity(context, span, outcome)
            _current_turn.reset(token)

    async def _send_trace_activity(self, context: TurnContext, span: trace.Span, outcome: str) -> None:
        trace_id, span_id = _hex_ids(span)
        # An untraced turn's ids lead nowhere: the sampler dropped its trace (OTEL_TRACES_SAMPLER).
        value: dict[str, object] = {"traceId": trace_id, "spanId": span_id, "operationId": trace_id}
        value.update(outcome=outcome, sampled=span.is_recording(), query=operation_query(trace_id))
        activity = Activity(
            type=ActivityTypes.trace,
            name=catalog.TRACE_ACTIVITY_NAME,
            label="OpenTelemetry trace of this turn",
            value_type=catalog.TRACE_ACTIVITY_VALUE_TYPE,
            value=value,
        )
        try:
            await context.send_activity(activity)
        except Exception:  # the channel failing must not turn a finished turn into a failed one
            log.warning("could not send the trace activity to the emulator", exc_info=True)

    async def _on_send(
        self,
        context: TurnContext,
        activities: list[Activity],
        next_send: Callable[[], Awaitable[None]],
    ) -> None:
        # botbuilder runs these handlers before the send itself (it cannot be wrapped from here), so this counts
        # what the bot hands over; delivery time and failures are measured on the reply requests themselves.
        self._count_sent(context, activities, _channel(context.activity), _current_turn.get())
        await next_send()

    def _count_sent(
        self, context: TurnContext, activities: list[Activity], channel: str, record: TurnRecord | None
    ) -> None:
        traced = record.span.is_recording() if record is not None else trace.get_current_span().is_recording()
        conversation: str | None = None
        for activity in activities:
            activity_type = _activity_type(activity)
            labels = ((catalog.CHANNEL, channel), (catalog.ACTIVITY_TYPE, activity_type))
            self._instruments.count_message_sent(1, labels)
            if activity_type == ActivityTypes.trace:
                continue
            if record is not None:
                record.replies += 1  # on the turn's span when it ends
            if not traced:
                continue
            if conversation is None:
                conversation = self._hash(context.activity.conversation.id if context.activity.conversation else None)
            properties = {
                "channelId": channel,
                "replyActivityId": _activity_id(context.activity),
                "activityType": activity_type,
                "conversationId": conversation,
                "recipientId": self._hash(activity.recipient.id if activity.recipient else None),
                "locale": _locale(activity) or _locale(context.activity),
            }
            if self._text and activity.text:
                properties["text"] = redact(activity.text)
                log.info("BotResponse: %s", properties["text"], extra=_PER_TURN)
            self._telemetry.emit_event(catalog.EVENT_MESSAGE_SEND.name, properties)


def reply_error_type(status: int) -> str:
    """`error.type` of a failed reply: the status code when it is one the Bot Connector documents or HTTP commonly
    uses, else `_OTHER` (OpenTelemetry's value for the unknown): a channel must not create a series per status."""
    return str(status) if status in catalog.KNOWN_REPLY_STATUSES else catalog.ERROR_TYPE_OTHER


def masked_exception(
    error: BaseException, ids: Iterable[str | None], mask: Callable[[str], str] | Mapping[str, str]
) -> dict[str, str]:
    """`exception.message` and `exception.stacktrace` of `error` with every id in them (as it is, and
    percent-encoded as in a URL) replaced by its keyed hash, or with the given replacements."""
    replacements = dict(mask) if isinstance(mask, Mapping) else {}
    if callable(mask):
        for value in ids:
            if value and len(value) >= 3:  # shorter ids would mask ordinary words
                hashed = mask(value)
                replacements[value] = hashed
                replacements[quote(value.encode("utf-8", "surrogatepass"), safe="")] = hashed
    message = str(error)
    stacktrace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for raw in sorted((key for key in replacements if key), key=len, reverse=True):
        message = message.replace(raw, replacements[raw])
        stacktrace = stacktrace.replace(raw, replacements[raw])
    return {"exception.message": message, "exception.stacktrace": stacktrace}


def channel_reply_telemetry(
    tracer: trace.Tracer, instruments: Instruments, url_filter: Callable[[URL], str]
) -> aiohttp.TraceConfig:
    """Telemetry of every request to a channel, as one aiohttp trace config.

    - `bot.channel.reply.duration` for every request. The sender labels each request with its channel through
      `trace_request_ctx={"channel": ...}`; a retried reply also names its `resend_count` (1, 2, ...) and
      `resend_reason` (what failed before), which count in `bot.channel.reply.retries` and set
      `http.request.resend_count` on the retry's CLIENT span (one span per attempt, as the HTTP conventions ask).
    - For the requests of a traced turn, the CLIENT span the aiohttp client instrumentation makes (its name,
      attributes under the current HTTP conventions, status and exception event; `url_filter` templates the URL) and
      the W3C headers. A request of an untraced turn gets neither: the instrumentation spent ~0.2 ms on each such
      reply preparing a span that would not be recorded.
    """
    config = aiohttp.TraceConfig()

    def record(context: SimpleNamespace, error_type: str | None) -> None:
        channel = (context.trace_request_ctx or {}).get("channel")
        labels: Labels = ((catalog.CHANNEL, _bounded(channel, _CHANNELS)),)
        if error_type:
            labels += ((catalog.ERROR_TYPE, error_type),)
        instruments.record_channel_reply_duration(time.perf_counter() - context.reply_started, labels)

    async def on_start(
        _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        context.reply_started = time.perf_counter()
        context.reply_span = None
        request = context.trace_request_ctx or {}
        resend = request.get("resend_count")
        if resend:
            labels: Labels = ((catalog.CHANNEL, _bounded(request.get("channel"), _CHANNELS)),)
            labels += ((catalog.ERROR_TYPE, str(request.get("resend_reason") or "unknown")),)
            instruments.count_channel_reply_retry(1, labels)
        if not trace.get_current_span().is_recording():
            return
        method = sanitize_method(params.method.strip())
        url = redact_url(url_filter(params.url))
        attributes: dict[str, Any] = {catalog.HTTP_METHOD: method, "url.full": url}
        if resend:
            attributes[catalog.HTTP_RESEND_COUNT] = int(resend)
        try:
            parsed = urlparse(url)
            if parsed.hostname:
                attributes["server.address"] = parsed.hostname
            if parsed.port:
                attributes["server.port"] = parsed.port
        except ValueError:
            pass
        span = tracer.start_span(
            "HTTP" if method == "_OTHER" else method, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        context.reply_span = span
        inject(params.headers, context=trace.set_span_in_context(span))

    async def on_end(_: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        record(context, reply_error_type(status) if status >= 400 else None)
        span: trace.Span | None = context.reply_span
        if span is not None:
            span.set_attribute(catalog.HTTP_STATUS, status)
            code = http_status_to_status_code(status, server_span=False)
            if code is trace.StatusCode.ERROR:
                span.set_attribute(catalog.ERROR_TYPE, reply_error_type(status))
            span.set_status(trace.Status(code))
            span.end()

    async def on_exception(
        _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        error_type = type(params.exception).__qualname__
        record(context, error_type)
        span: trace.Span | None = context.reply_span
        if span is not None:
            span.set_attribute(catalog.ERROR_TYPE, error_type)
            span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
            # aiohttp's messages may quote the URL, with the conversation and activity ids in it
            filtered = url_filter(params.url)
            replacements = {str(params.url): filtered}
            if len(params.url.raw_path) > 1:
                replacements[params.url.raw_path] = URL(filtered).raw_path
                replacements[params.url.path] = URL(filtered).raw_path
            span.record_exception(params.exception, attributes=masked_exception(params.exception, (), replacements))
            span.end()

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    return config


class OpenTelemetryBotTelemetryClient(BotTelemetryClient):
    """botbuilder's telemetry interface, fed into OpenTelemetry: dialogs and the bot report through it."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._instruments = telemetry.instruments

    def track_event(
        self, name: str, properties: dict[str, object] | None = None, measurements: dict[str, object] | None = None
    ) -> None:
        properties = properties or {}
        record = _current_turn.get()
        channel = record.channel if record else "unknown"
        dialog_id = str(properties.get("DialogId", ""))
        span = trace.get_current_span()
        traced = span.is_recording()
        if name == catalog.EVENT_WATERFALL_START.name:
            self._instruments.count_dialog_started(1, ((catalog.DIALOG_ID, dialog_id),))
            if record is not None:
                record.dialog_id = record.dialog_id or dialog_id
        elif name == catalog.EVENT_WATERFALL_STEP.name:
            if traced:
                step = str(properties.get("StepName", ""))
                span.add_event(
                    catalog.SPAN_EVENT_DIALOG_STEP, {catalog.DIALOG_ID: dialog_id, catalog.DIALOG_STEP: step}
                )
            if record is not None:
                record.dialog_id = record.dialog_id or dialog_id
        elif name == catalog.EVENT_WATERFALL_COMPLETE.name:
            self._instruments.count_dialog_completed(1, ((catalog.DIALOG_ID, dialog_id),))
        elif name == catalog.EVENT_WATERFALL_CANCEL.name:
            self._instruments.count_dialog_cancelled(1, ((catalog.DIALOG_ID, dialog_id),))
        elif name == catalog.EVENT_KNOWLEDGE_ANSWER.name:
            topic = str(properties.get("topic", ""))
            self._instruments.count_knowledge_answer(1, ((catalog.CHANNEL, channel), (catalog.KNOWLEDGE_TOPIC, topic)))
            if traced:
                span.set_attribute(catalog.KNOWLEDGE_TOPIC, topic)
        elif name == catalog.EVENT_KNOWLEDGE_FALLBACK.name:
            self._instruments.count_knowledge_fallback(1, ((catalog.CHANNEL, channel),))
        if traced:  # events go where the turn's trace goes (see TurnTelemetryMiddleware)
            # InstanceId is a random id per dialog run: useful to join steps, useless as a dimension, so it stays.
            event = {key: str(value) for key, value in properties.items()}
            self._telemetry.emit_event(name, event)

    def track_exception(
        self,
        exception_type: type | None = None,
        value: Exception | None = None,
        trace_back: object = None,
        properties: dict[str, object] | None = None,
        measurements: dict[str, object] | None = None,
    ) -> None:
        if isinstance(value, BaseException):
            trace.get_current_span().record_exception(value)

    def track_trace(self, name: str, properties: dict[str, object] | None = None, severity: Severity = None) -> None:
        level = {
            Severity.verbose: logging.DEBUG,
            Severity.information: logging.INFO,
            Severity.warning: logging.WARNING,
            Severity.error: logging.ERROR,
            Severity.critical: logging.CRITICAL,
        }.get(severity, logging.INFO)
        logging.getLogger("bot.trace").log(level, "%s", name, extra={"properties": str(properties or {})})

    def track_metric(
        self,
        name: str,
        value: float,
        tel_type: TelemetryDataPointType = None,
        count: int | None = None,
        min_val: float | None = None,
        max_val: float | None = None,
        std_dev: float | None = None,
        properties: dict[str, object] | None = None,
    ) -> None:
        if name in self._instruments.reported:
            self._instruments.reported[name] = float(value)
        else:
            log.debug("track_metric %s is not exported; define the metric in telemetry/catalog.py", name)

    def track_pageview(self, name: str, url: str, duration: int = 0, properties=None, measurements=None) -> None:
        return None

    def track_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # requests are traced by the HTTP server instrumentation

    def track_dependency(self, *args: Any, **kwargs: Any) -> None:
        return None  # outgoing calls are traced by the HTTP client instrumentation

    def flush(self) -> None:
        self._telemetry.force_flush()
