"""One conversation, several instances: turns that lose no update and redeliveries that are not answered twice.

Channels deliver a conversation's activities to whichever instance the balancer picks, and retry an activity whose
request timed out (the same activity id again). `ConversationTurnGuard`, a turn middleware, makes each turn behave
as if the conversation's turns ran one after another:

- **In one process** a conversation's turns take turns (a lock per conversation id, dropped when idle).
- **Across instances, optimistic turns.** The turn runs on the state it read. Its replies are held back
  (`HeldReplies` stands in for the adapter during the turn) until its state is saved; the save carries the e-tag
  read (If-Match). If another turn of the conversation saved first, the save fails with a conflict (HTTP 412): the
  held replies are dropped, the state is read again and the turn runs again on it, so the user only ever sees the
  replies of the run that was saved. A turn that had already saved one state object (conversation) when the other
  (user) conflicted cannot be rerun without running it twice: it fails with the usual apology (rare: one user in two
  conversations at once).
- **Redeliveries.** Except for invokes (whose answer is the HTTP response itself), the ids of the last
  `PROCESSED_WINDOW` activities of a conversation are saved with its state, in the same write as the dialog stack.
  An activity whose id is among them is acknowledged and not answered. A redelivery racing its original loses the
  save to it, reruns, finds its id and stays silent.

With a store private to the process (`MemoryStorage`) the ids are kept in the process instead, in a bounded table of
recent conversations, recorded once the turn succeeded: the state is then written only when the turn changed it
(saving the ids with the state made every turn a write, a deep copy of the state: about 15 % of a turn's CPU).

The window is by count per conversation: a redelivery arriving after `PROCESSED_WINDOW` newer activities of the
same conversation would be answered again (channels retry within seconds). A turn that failed saves nothing, so its
redelivery is answered: that is the retry the user needs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from botbuilder.core import BotState, ConversationState, Middleware, TurnContext
from botbuilder.schema import Activity, ActivityEventNames, ActivityTypes, ResourceResponse

from bot.storage import ABSENT_IN_TURN, NoObserver, StorageObserver, is_conflict

log = logging.getLogger("bot.storage.turns")

PROCESSED_PROPERTY = "ProcessedActivityIds"
PROCESSED_WINDOW = 64
# In-process record (a store private to the process): this many conversations, least recently active dropped first.
RECENT_CONVERSATIONS = 10_000
# A turn runs again until it saves, within these bounds: a busy conversation on busy instances may take several
# runs (each loses to a turn saved elsewhere meanwhile), and the channel waits 15 s for the HTTP answer.
MAX_TURN_RUNS = 30
RERUN_BUDGET_SECONDS = 8.0
# Between reruns: jittered and doubling (10 ms, 20 ms, ... 640 ms at most), so that a turn on a slow instance is not
# starved by a quick series of turns of the same conversation on another.
RERUN_BACKOFF_SECONDS = 0.01


def _conversation_key(activity: Activity) -> str:
    """As botbuilder keys conversation state: conversation ids are unique within a channel only."""
    return f"{activity.channel_id}/{activity.conversation.id if activity.conversation else ''}"


def is_proactive(activity: Activity) -> bool:
    return activity.type == ActivityTypes.event and activity.name == ActivityEventNames.continue_conversation


class HeldReplies:
    """The turn's adapter, except that what the turn sends is kept (in `replies`) instead of sent."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.replies: list[Activity] = []

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        self.replies.extend(activities)
        return [ResourceResponse(id="") for _ in activities]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.adapter, name)


class StateConflictError(RuntimeError):
    """The conversation kept changing under this turn, or changed after part of the turn's state was saved."""


class ConversationTurnGuard(Middleware):
    def __init__(
        self,
        conversation_state: ConversationState,
        other_states: Sequence[BotState] = (),
        observer: StorageObserver | None = None,
        *,
        private_store: bool = False,
    ) -> None:
        self._conversation_state = conversation_state
        # Only this process reads a private store: its ids need not travel with the state.
        self._recent: OrderedDict[str, deque[str]] | None = OrderedDict() if private_store else None
        self._states: tuple[BotState, ...] = (conversation_state, *other_states)
        self._processed = conversation_state.create_property(PROCESSED_PROPERTY)
        self._observer = observer or NoObserver()
        self._local: dict[str, list[Any]] = {}  # conversation id -> [lock, turns holding or awaiting it]

    async def on_turn(self, context: TurnContext, logic: Callable[[], Awaitable[Any]]) -> None:
        if is_proactive(context.activity):
            # A turn the bot starts itself (continue_conversation: a late answer) is no delivery a channel repeats;
            # its code sends and saves on its own terms and must see its sends fail (bot/answers/turn.py). Its task
            # was started by a turn and inherited that turn's record of absent keys: not valid now.
            ABSENT_IN_TURN.set(None)
            await logic()
            return
        conversation = context.activity.conversation.id if context.activity.conversation else None
        adapter = context.adapter
        held = HeldReplies(adapter)
        context.adapter = held  # a public attribute of TurnContext; restored before anything else sends
        try:
            if not conversation:
                await self._run(context, logic, held)
            else:
                # One turn of a conversation at a time in this process: only turns on other instances conflict.
                entry = self._local.setdefault(conversation, [asyncio.Lock(), 0])
                entry[1] += 1
                try:
                    async with entry[0]:
                        await self._run(context, logic, held)
                finally:
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._local[conversation]
        finally:
            context.adapter = adapter
        # Sent once the state is saved, outside the lock: a slow channel holds up no other turn of the conversation.
        if held.replies:
            await adapter.send_activities(context, held.replies)

    async def _run(self, context: TurnContext, logic: Callable[[], Awaitable[Any]], held: HeldReplies) -> None:
        """Runs the turn until its state is saved, its replies held in `held` (or, for expectReplies, botbuilder's
        own buffer); a turn that failed leaves none."""
        activity = context.activity
        started = time.monotonic()
        for run in range(1, MAX_TURN_RUNS + 1):
            ABSENT_IN_TURN.set(set())  # each run reads afresh
            for state in self._states:
                await state.load(context, force=run > 1)
            # An invoke's answer is its HTTP response: a repeated invoke needs one, so invokes are not deduplicated.
            deduplicated = bool(activity.id) and activity.type != ActivityTypes.invoke
            if deduplicated and await self._answered_before(context):
                log.info("activity delivered again; answered before, so not again")
                self._observer.redelivery(context)
                return
            saved_before = self._fingerprints(context)
            try:
                await logic()
            except Exception as error:
                held.replies.clear()  # the run failed or is rerun: none of its replies are sent
                context.buffered_reply_activities.clear()
                if not is_conflict(error):
                    raise
                if self._fingerprints(context) != saved_before:
                    raise StateConflictError(
                        "the conversation changed after part of this turn's state was saved"
                    ) from error  # (its conversation state saved, its user state stale)
                if run == MAX_TURN_RUNS or time.monotonic() - started > RERUN_BUDGET_SECONDS:
                    raise StateConflictError(f"the conversation changed under this turn {run} times") from error
                self._observer.rerun(context)
                await asyncio.sleep(random.uniform(0, RERUN_BACKOFF_SECONDS * 2 ** min(run, 6)))
                continue
            if deduplicated and self._recent is not None:
                self._remember(context)
            return

    async def _answered_before(self, context: TurnContext) -> bool:
        """Whether the activity's id was processed in its conversation; if not, it is recorded with the state (a
        shared store: saved in the same write as the dialog) or, for a private store, once the turn succeeded."""
        activity_id = context.activity.id
        if self._recent is not None:
            recent = self._recent.get(_conversation_key(context.activity))
            return recent is not None and activity_id in recent
        processed: list[str] = await self._processed.get(context, list)
        if activity_id in processed:
            return True
        processed.append(activity_id)
        del processed[:-PROCESSED_WINDOW]
        await self._processed.set(context, processed)
        return False

    def _remember(self, context: TurnContext) -> None:
        assert self._recent is not None
        conversation = _conversation_key(context.activity)
        recent = self._recent.pop(conversation, None) or deque(maxlen=PROCESSED_WINDOW)
        recent.append(context.activity.id)
        self._recent[conversation] = recent  # most recently active last
        if len(self._recent) > RECENT_CONVERSATIONS:
            self._recent.popitem(last=False)

    def _fingerprints(self, context: TurnContext) -> list[str | None]:
        """Each state's last saved fingerprint: it changes exactly when botbuilder saved that state."""
        fingerprints = []
        for state in self._states:
            cached = state.get_cached_state(context)
            fingerprints.append(cached.hash if cached is not None else None)
        return fingerprints
