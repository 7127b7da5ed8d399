"""The turn middleware: every turn described on its span, counted, timed and logged, and every activity it sends."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import Middleware, TurnContext
from botbuilder.schema import Activity, ActivityTypes
from opentelemetry import trace

from bot.vocabulary import is_known_intent
from telemetry import catalog
from telemetry.botframework.activity import activity_type_label, bounded_activity_id, channel_label, locale_tag
from telemetry.botframework.masking import masked_exception
from telemetry.botframework.turn import TurnInProgress, current_turn
from telemetry.correlation import SAMPLED_WITH_TURN, qualified_type, turn_failed
from telemetry.privacy import redact
from telemetry.setup import Telemetry

log = logging.getLogger("telemetry.turn")
# The turn's own log lines are written for traced turns only: they are kept (and weighted) as the turn's trace is.
_PER_TURN = {SAMPLED_WITH_TURN: True}


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
        channel = channel_label(activity)
        activity_type = activity_type_label(activity)
        conversation = self._hash(activity.conversation.id if activity.conversation else None)
        record = TurnInProgress(channel=channel, span=span)
        token = current_turn.set(record)
        context.on_send_activities(self._on_send)
        start = time.perf_counter()
        outcome = catalog.OUTCOME_SUCCESS
        # Events and the turn's log line describe a traced turn and go where its trace goes: with traces sampled
        # (OTEL_TRACES_SAMPLER) they are kept for the sampled turns only. Metrics count every turn.
        traced = span.is_recording()
        if traced:
            self._describe_received(span, activity, channel, activity_type, conversation)
        if conversation:
            self._instruments.active_conversations.touch(conversation)
        if activity_type == ActivityTypes.message:
            self._instruments.count_message_received(1, ((catalog.CHANNEL, channel),))
        try:
            await logic()
        except Exception as error:
            outcome = catalog.OUTCOME_ERROR
            self._record_failure(span, activity, channel, error)
            handler = context.adapter.on_turn_error
            if handler is None:
                raise
            # The adapter's error handler (the apology) runs here rather than after the middleware has returned, as
            # botbuilder would run it: its replies and its time then belong to the turn that failed.
            await handler(context, error)
        finally:
            self._record_turn(context, record, activity_type, outcome, time.perf_counter() - start, traced)
            if channel == "emulator":
                await self._send_trace_activity(context, span, outcome)
            current_turn.reset(token)

    def _describe_received(
        self, span: trace.Span, activity: Activity, channel: str, activity_type: str, conversation: str
    ) -> None:
        """A traced turn's attributes, its BotMessageReceived event and, with text export on, the user's message."""
        user = self._hash(activity.from_property.id if activity.from_property else None)
        attributes = {
            catalog.CHANNEL: channel,
            catalog.ACTIVITY_TYPE: activity_type,
            catalog.LOCALE: locale_tag(activity),
            catalog.CONVERSATION_HASH: conversation,
            catalog.USER_HASH: user,
            catalog.ENDUSER_PSEUDO_ID: user,
            catalog.SESSION_ID: conversation,
            catalog.ACTIVITY_ID: bounded_activity_id(activity),
        }
        received = {
            "channelId": channel,
            "activityId": bounded_activity_id(activity),
            "activityType": activity_type,
            "conversationId": conversation,
            "fromId": user,
            "locale": locale_tag(activity),
        }
        if self._text and activity.text:
            attributes[catalog.MESSAGE_TEXT] = received["text"] = redact(activity.text)
            log.info("UserMessage: %s", received["text"], extra=_PER_TURN)
        span.set_attributes(attributes)
        self._telemetry.emit_event(catalog.EVENT_MESSAGE_RECEIVED.name, received)

    def _record_failure(self, span: trace.Span, activity: Activity, channel: str, error: Exception) -> None:
        """The exception on the turn's span (the ids in it masked), its error.type, and the error counter."""
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

    def _record_turn(
        self,
        context: TurnContext,
        record: TurnInProgress,
        activity_type: str,
        outcome: str,
        elapsed: float,
        traced: bool,
    ) -> None:
        """The turn counted and timed by intent and outcome; a traced turn's span and log line say how it ended."""
        channel = record.channel
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
        if not traced:
            return
        ending: dict[str, str | int] = {catalog.INTENT: intent, catalog.OUTCOME: outcome}
        dialog_id = record.dialog_id or context.turn_state.get(catalog.TURN_STATE_DIALOG)
        if dialog_id:
            ending[catalog.DIALOG_ID] = str(dialog_id)
        if record.replies:
            ending[catalog.REPLIES] = record.replies
        record.span.set_attributes(ending)
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
        self._count_sent(context, activities, channel_label(context.activity), current_turn.get())
        await next_send()

    def _count_sent(
        self, context: TurnContext, activities: list[Activity], channel: str, record: TurnInProgress | None
    ) -> None:
        traced = record.span.is_recording() if record is not None else trace.get_current_span().is_recording()
        conversation: str | None = None
        for activity in activities:
            activity_type = activity_type_label(activity)
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
                "replyActivityId": bounded_activity_id(context.activity),
                "activityType": activity_type,
                "conversationId": conversation,
                "recipientId": self._hash(activity.recipient.id if activity.recipient else None),
                "locale": locale_tag(activity) or locale_tag(context.activity),
            }
            if self._text and activity.text:
                properties["text"] = redact(activity.text)
                log.info("BotResponse: %s", properties["text"], extra=_PER_TURN)
            self._telemetry.emit_event(catalog.EVENT_MESSAGE_SEND.name, properties)
