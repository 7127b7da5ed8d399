"""What simulated users say, and the activities that carry it (Bot Framework JSON, as a channel posts them).

Pure Python: the locustfile and the tests both use it.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from loadtest.rig import activities
from loadtest.rig.activities import EXPECT_REPLIES, Activity
from telemetry import catalog

__all__ = ["Activity", "Conversation", "Step"]

GREETINGS = ("hello", "hi", "hi there", "Hey!", "good morning")
# Nothing in the knowledge base looks like these, so each one is a fallback turn.
OFF_TOPIC = (
    "banana spaceship tuesday",
    "can you book me a table for two tonight?",
    "what's the score of the match",
    "translate 'cat' into Klingon",
    "asdfghjkl",
)
VALID_RATINGS = ("1", "2", "3", "4", "5")
INVALID_RATINGS = ("seven", "10", "great", "-1")
COMMENTS = ("skip", "no", "Nice bot, quick answers.", "The alerts answer helped.")


@cache
def knowledge_questions() -> tuple[str, ...]:
    """Every sample question of the bot's knowledge base (bot/knowledge/knowledge.json), as people would type them."""
    entries = json.loads((resources.files("bot.knowledge") / "knowledge.json").read_text(encoding="utf-8"))
    return tuple(f"{question[0].upper()}{question[1:]}?" for entry in entries for question in entry["questions"])


@dataclass(frozen=True)
class Step:
    """One message of a scripted exchange; `name` labels the turn in the statistics."""

    name: str
    text: str


def feedback_script(rng: random.Random) -> list[Step]:
    """The multi-turn survey: start, sometimes an invalid rating first, a rating, a comment; a fifth cancel it."""
    steps = [Step("feedback: start", rng.choice(("feedback", "survey", "rate")))]
    if rng.random() < 0.2:
        return [*steps, Step("feedback: cancel", "cancel")]
    if rng.random() < 0.25:
        steps.append(Step("feedback: invalid rating", rng.choice(INVALID_RATINGS)))
    steps.append(Step("feedback: rating", rng.choice(VALID_RATINGS)))
    if rng.random() < 0.1:
        return [*steps, Step("feedback: cancel", "cancel")]
    return [*steps, Step("feedback: comment", rng.choice(COMMENTS))]


def new_traceparent() -> tuple[str, str]:
    """A fresh W3C trace context, sampled: (trace id, `traceparent` header value)."""
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{os.urandom(8).hex()}-01"


@dataclass
class Conversation:
    """One user's conversation: its ids stay the same for every activity the user sends."""

    channel_id: str
    service_url: str
    expect_replies: bool
    conversation_id: str = field(default_factory=lambda: f"{uuid.uuid4().hex}|loadtest")
    user_id: str = field(default_factory=lambda: f"user-{uuid.uuid4().hex[:12]}")

    @property
    def address(self) -> activities.Address:
        return activities.Address(
            self.channel_id, self.service_url, self.conversation_id, {"id": self.user_id, "name": "Load test user"}
        )

    def activity(self, type: str, text: str | None = None, **fields: Any) -> Activity:
        if self.expect_replies:
            fields.setdefault("deliveryMode", EXPECT_REPLIES)
        return self.address.activity(type, text, **fields)

    def conversation_update(self) -> Activity:
        return self.activity("conversationUpdate", membersAdded=activities.members_added(self.address.user))

    def message(self, text: str) -> Activity:
        return self.activity("message", text)


def reply_problem(activities: list[Activity], trace_id: str) -> str | None:
    """Why a turn's replies are not acceptable, or None. The bot must answer with a message. On the Emulator channel
    it also reports the turn: that must be the trace the load generator sent, and the turn must not have failed
    (a failed turn still answers, with an apology)."""
    if not any(activity.get("type") == "message" for activity in activities):
        return "the bot sent no message"
    for activity in activities:
        if activity.get("type") != "trace":
            continue
        value = activity.get("value")
        if activity.get("label") == "TurnError":
            return f"the turn failed in the bot: {value}"
        if activity.get("name") == catalog.TRACE_ACTIVITY_NAME and isinstance(value, dict):
            if value.get("traceId") != trace_id:
                return f"the bot reported trace id {value.get('traceId')!r}, not the {trace_id} it was sent"
            if value.get("outcome") == catalog.OUTCOME_ERROR:
                return "the turn failed in the bot"
    return None
