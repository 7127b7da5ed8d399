"""What simulated users say, and the activities that carry it (Bot Framework JSON, as a channel posts them).

Pure Python: the locustfile and the tests both use it.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from telemetry import catalog

Activity = dict[str, Any]

BOT_ACCOUNT = {"id": "bot", "name": "Bot", "role": "bot"}
EXPECT_REPLIES = "expectReplies"

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


def _now() -> tuple[str, str]:
    now = datetime.now(UTC)
    return (
        now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        now.astimezone().isoformat(timespec="milliseconds"),
    )


@dataclass
class Conversation:
    """One user's conversation: its ids stay the same for every activity the user sends."""

    channel_id: str
    service_url: str
    expect_replies: bool
    conversation_id: str = field(default_factory=lambda: f"{uuid.uuid4().hex}|loadtest")
    user_id: str = field(default_factory=lambda: f"user-{uuid.uuid4().hex[:12]}")

    def activity(self, type: str, text: str | None = None, **fields: Any) -> Activity:
        timestamp, local_timestamp = _now()
        activity: Activity = {
            "type": type,
            "id": uuid.uuid4().hex,
            "timestamp": timestamp,
            "localTimestamp": local_timestamp,
            "channelId": self.channel_id,
            "serviceUrl": self.service_url,
            "from": {"id": self.user_id, "name": "Load test user", "role": "user"},
            "recipient": dict(BOT_ACCOUNT),
            "conversation": {"id": self.conversation_id},
            "locale": "en-US",
        }
        if text is not None:
            activity["text"] = text
            activity["textFormat"] = "plain"
        if self.expect_replies:
            activity["deliveryMode"] = EXPECT_REPLIES
        activity.update(fields)
        return activity

    def conversation_update(self) -> Activity:
        user = {"id": self.user_id, "name": "Load test user"}
        return self.activity("conversationUpdate", membersAdded=[{"id": BOT_ACCOUNT["id"]}, user])

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
