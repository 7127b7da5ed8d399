"""The model's part of a turn: ask, answer in time or later, remember the exchange, and let a rating find its answer.

Answers past the channel's timeout: Teams, Direct Line and the other channels wait about 15 s for the bot's HTTP
answer. When the model has not answered within `proactive_after_seconds`, the turn sends a typing indicator and ends
(the channel gets its 201), and the answer is sent later as a proactive message (`continue_conversation`) from a
background task. Those tasks are bounded (`max_pending_answers`; past it the user gets the fallback at once),
cancelled when the bot shuts down, and counted by outcome.

`deliveryMode: expectReplies` turns have no later: their replies travel in the HTTP response itself, so the turn
waits for the model up to `timeout_seconds` and answers in the response; a caller that gives up sooner loses it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any

from botbuilder.core import ConversationState, MessageFactory, TurnContext
from botbuilder.schema import Activity, ActivityTypes, DeliveryModes

from bot.answers.engine import MAX_MESSAGE_CHARACTERS, AnswerEngine, ModelFailure
from bot.answers.observer import (
    CANCELLED,
    DELIVERED,
    DELIVERY_FAILED,
    REFUSED,
    SOURCE_FALLBACK,
    SOURCE_MODEL,
    AnswerReference,
    ModelReply,
)

log = logging.getLogger("bot.answers")

HISTORY_PROPERTY = "ModelHistory"
LAST_ANSWER_PROPERTY = "LastAnswer"
UNAVAILABLE_TEXT = "Sorry, I can't answer that right now. Type `help` to see what I can do."


class PendingAnswers:
    """Background deliveries of late answers: at most `limit` at once, cancelled by `close()` (at shutdown)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def has_room(self) -> bool:
        return not self.closed and len(self._tasks) < self.limit

    def start(self, delivery: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # A fresh context: the task outlives the turn, so it must not inherit the turn's span or request state.
        task = asyncio.get_running_loop().create_task(delivery, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ModelAnswers:
    def __init__(self, engine: AnswerEngine, conversation_state: ConversationState, app_id: str) -> None:
        self.engine = engine
        self.observer = engine.observer
        self.pending = PendingAnswers(engine.settings.max_pending_answers)
        self._conversation_state = conversation_state
        self._app_id = app_id
        self._history = conversation_state.create_property(HISTORY_PROPERTY)
        self._last_answer = conversation_state.create_property(LAST_ANSWER_PROPERTY)

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> None:
        await self.pending.close()
        await self.engine.close()

    async def record(
        self, context: TurnContext, source: str, reference: AnswerReference | None = None, **facts: str
    ) -> None:
        """The answer a later rating refers to, and its source on the turn's telemetry."""
        self.observer.answered(source, context.activity.channel_id)
        last = {"source": source, **(reference if reference is not None else self.observer.turn_reference()), **facts}
        await self._last_answer.set(context, last)

    async def rated(self, context: TurnContext, rating: int, has_comment: bool) -> None:
        last = await self._last_answer.get(context, dict)
        self.observer.rated(rating, has_comment, last if isinstance(last, dict) else {})

    async def answer(self, context: TurnContext) -> bool:
        """Ask the model. True when it answered or will answer later; False when the caller must fall back."""
        activity = context.activity
        question = activity.text or ""
        history = await self._history.get(context, list)
        conversation_id = activity.conversation.id if activity.conversation else ""
        task = asyncio.ensure_future(self.engine.answer(question, list(history or []), conversation_id))
        expect_replies = activity.delivery_mode == DeliveryModes.expect_replies
        wait = None if expect_replies else self.engine.settings.proactive_after_seconds
        done, _ = await asyncio.wait({task}, timeout=wait)
        if task in done:
            try:
                reply = task.result()
            except ModelFailure:
                return False  # the call's failure is on its span; the caller sends the fallback
            await self._send(context, question, reply)
            return True
        if not self.pending.has_room():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with self.observer.deferred(self.observer.turn_reference()) as delivery:
                delivery.ended(REFUSED)
            return False
        await context.send_activity(Activity(type=ActivityTypes.typing))
        reference = TurnContext.get_conversation_reference(activity)
        self.pending.start(
            self._deliver_later(context.adapter, reference, question, task, self.observer.turn_reference())
        )
        return True

    async def _send(self, context: TurnContext, question: str, reply: ModelReply) -> None:
        await context.send_activity(MessageFactory.text(reply.text))
        history = list(await self._history.get(context, list) or [])
        history += [
            {"role": "user", "content": question[:MAX_MESSAGE_CHARACTERS]},
            {"role": "assistant", "content": reply.text[:MAX_MESSAGE_CHARACTERS]},
        ]
        await self._history.set(
            context, history[-self.engine.settings.history_messages :] if self.engine.settings.history_messages else []
        )
        facts = {"model": reply.response_model or self.engine.settings.model, "response_id": reply.response_id or ""}
        await self.record(context, SOURCE_MODEL, reply.reference or None, **facts)

    async def _deliver_later(
        self, adapter: Any, conversation: Any, question: str, task: asyncio.Future[ModelReply], turn: AnswerReference
    ) -> None:
        with self.observer.deferred(turn) as delivery:
            outcome = DELIVERY_FAILED
            sent = False
            try:
                try:
                    reply: ModelReply | None = await task
                except ModelFailure:
                    reply = None

                async def send(context: TurnContext) -> None:
                    nonlocal sent
                    await self._conversation_state.load(context)
                    if reply is not None:
                        await self._send(context, question, reply)
                    else:
                        await context.send_activity(MessageFactory.text(UNAVAILABLE_TEXT))
                        await self.record(context, SOURCE_FALLBACK)
                    sent = True
                    try:
                        await self._conversation_state.save_changes(context)
                    except Exception:
                        # The user's next turn may have saved the conversation meanwhile (e-tag conflict): the answer
                        # was delivered; only its place in the history (and for a rating) is lost.
                        log.warning("could not keep a late answer in conversation state", exc_info=True)

                try:
                    await adapter.continue_conversation(conversation, send, self._app_id)
                finally:
                    outcome = DELIVERED if sent else DELIVERY_FAILED
            except asyncio.CancelledError:
                outcome = DELIVERED if sent else CANCELLED
                if not task.done():
                    task.cancel()
                raise
            except Exception:
                log.warning("could not deliver a late answer to the channel", exc_info=True)
            finally:
                delivery.ended(outcome)
