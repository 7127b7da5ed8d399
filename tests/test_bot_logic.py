"""The bot's conversation logic, driven through botbuilder's TestAdapter, and the knowledge-base matcher."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from botbuilder.core import ConversationState, MemoryStorage, NullTelemetryClient, TurnContext, UserState
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount, ConversationAccount

from bot.bot import WELCOME_TEXT, ChatBot, SimulatedFailure
from bot.dialogs import FEEDBACK_DIALOG_ID, FeedbackDialog
from bot.dialogs.feedback_dialog import (
    COMMENT_PROMPT,
    FEEDBACK_WATERFALL_ID,
    RATING_PROMPT,
    RATING_RETRY_PROMPT,
    parse_rating,
)
from bot.knowledge import KnowledgeBase, KnowledgeEntry
from bot.routes import CANCELLED_TEXT, FALLBACK_TEXT, HELP_TEXT, NOTHING_TO_CANCEL_TEXT, shipped_routes
from bot.routing import Route, Router, Turn, commands, dialog_route
from bot.state import FEEDBACK_PROFILE_PROPERTY, FeedbackProfile
from telemetry.catalog import (
    EVENT_KNOWLEDGE_ANSWER,
    EVENT_KNOWLEDGE_FALLBACK,
    EVENT_WATERFALL_CANCEL,
    EVENT_WATERFALL_COMPLETE,
    EVENT_WATERFALL_START,
    EVENT_WATERFALL_STEP,
    INTENT_CANCEL,
    INTENT_DIALOG,
    INTENT_FALLBACK,
    INTENT_HELP,
    INTENT_KNOWLEDGE,
    INTENT_NONE,
    INTENT_WELCOME,
    INTENTS,
    TURN_STATE_DIALOG,
    TURN_STATE_INTENT,
)

KNOWLEDGE = KnowledgeBase.load()
WATERFALL_EVENTS = {
    EVENT_WATERFALL_START.name,
    EVENT_WATERFALL_STEP.name,
    EVENT_WATERFALL_COMPLETE.name,
    EVENT_WATERFALL_CANCEL.name,
}


class RecordingTelemetryClient(NullTelemetryClient):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def track_event(self, name: str, properties: dict[str, Any] | None = None, measurements: Any = None) -> None:
        self.events.append((name, dict(properties or {})))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def waterfall(self) -> list[str]:
        return [name for name, _ in self.events if name in WATERFALL_EVENTS]


class Conversation:
    """A bot over in-memory storage, and a user talking to it on one channel."""

    def __init__(self, channel_id: str = "test", dialog_telemetry: bool = True) -> None:
        self.storage = MemoryStorage()
        self.conversation_state = ConversationState(self.storage)
        self.user_state = UserState(self.storage)
        self.telemetry = RecordingTelemetryClient()
        routes = shipped_routes(
            self.user_state, self.telemetry if dialog_telemetry else NullTelemetryClient(), KNOWLEDGE
        )
        self.router = Router(routes)
        (self.dialog,) = self.router.dialogs
        self.bot = ChatBot(self.conversation_state, self.user_state, self.router, self.telemetry)
        self.template = Activity(
            channel_id=channel_id,
            service_url="https://channel.invalid",
            from_property=ChannelAccount(id="user-1", name="User"),
            recipient=ChannelAccount(id="bot-1", name="Bot"),
            conversation=ConversationAccount(id="conversation-1"),
        )
        self.adapter = TestAdapter(self._logic, self.template)
        self.turn_states: list[dict[str, Any]] = []

    async def _logic(self, turn_context: TurnContext) -> None:
        try:
            await self.bot.on_turn(turn_context)
        finally:
            self.turn_states.append(dict(turn_context.turn_state))

    async def send(self, activity: str | Activity) -> list[str]:
        """Deliver one activity and return the text of every reply of the turn."""
        await self.adapter.receive_activity(activity)
        replies = [reply.text for reply in self.adapter.activity_buffer]
        self.adapter.activity_buffer.clear()
        return replies

    @property
    def intent(self) -> str:
        return str(self.turn_states[-1][TURN_STATE_INTENT])

    @property
    def dialog_id(self) -> str | None:
        return self.turn_states[-1].get(TURN_STATE_DIALOG)

    async def profile(self) -> FeedbackProfile:
        """The feedback profile as persisted in storage (a fresh turn context reads it back)."""
        context = TurnContext(self.adapter, Activity(type=ActivityTypes.message, **_route(self.template)))
        state = UserState(self.storage)
        await state.load(context)
        return FeedbackProfile.from_dict(await state.create_property(FEEDBACK_PROFILE_PROPERTY).get(context))


def _route(template: Activity) -> dict[str, Any]:
    return {
        "channel_id": template.channel_id,
        "from_property": template.from_property,
        "recipient": template.recipient,
        "conversation": template.conversation,
    }


def members_added(*ids: str) -> Activity:
    return Activity(type=ActivityTypes.conversation_update, members_added=[ChannelAccount(id=i) for i in ids])


# ---- turns ---------------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_welcomes_the_user_but_not_the_bot() -> None:
    conversation = Conversation()
    assert await conversation.send(members_added("bot-1", "user-1")) == [WELCOME_TEXT]
    assert conversation.intent == INTENT_WELCOME
    assert "help" in WELCOME_TEXT
    assert "feedback" in WELCOME_TEXT

    assert await conversation.send(members_added("bot-1")) == []


@pytest.mark.asyncio
async def test_web_chat_join_event_is_welcomed_with_suggested_actions_that_work() -> None:
    conversation = Conversation()
    await conversation.adapter.receive_activity(Activity(type=ActivityTypes.event, name="webchat/join"))
    (welcome,) = conversation.adapter.activity_buffer
    conversation.adapter.activity_buffer.clear()
    assert welcome.text == WELCOME_TEXT
    assert conversation.intent == INTENT_WELCOME
    values = [action.value for action in welcome.suggested_actions.actions]
    assert [action.type for action in welcome.suggested_actions.actions] == ["imBack"] * len(values)
    for value in values:  # each one, sent back as the user's message, gets an answer other than the fallback
        assert FALLBACK_TEXT not in await conversation.send(value)
        await conversation.send("cancel")
    assert await conversation.send(Activity(type=ActivityTypes.event, name="something/else")) == []
    assert conversation.intent == INTENT_NONE


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["help", "  HELP ", "Help!"])
async def test_help_lists_what_the_bot_can_do(text: str) -> None:
    conversation = Conversation()
    assert await conversation.send(text) == [HELP_TEXT]
    assert conversation.intent == INTENT_HELP
    for command in ("`feedback`", "`cancel`", "metrics"):
        assert command in HELP_TEXT
    assert conversation.telemetry.events == []


@pytest.mark.asyncio
async def test_paraphrase_gets_the_knowledge_answer_and_an_event_without_the_text() -> None:
    conversation = Conversation()
    question = "Where can I find the Prometheus metrics, please?"
    replies = await conversation.send(question)
    assert replies == [KNOWLEDGE.get("metrics_endpoint").answer]  # type: ignore[union-attr]
    assert "http://localhost:8000/metrics" in replies[0]
    assert conversation.intent == INTENT_KNOWLEDGE
    assert conversation.telemetry.events == [(EVENT_KNOWLEDGE_ANSWER.name, {"topic": "metrics_endpoint"})]


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["banana spaceship tuesday", "asdf", "", "/unknown"])
async def test_nonsense_falls_back_and_suggests_help(text: str) -> None:
    conversation = Conversation()
    assert await conversation.send(Activity(type=ActivityTypes.message, text=text)) == [FALLBACK_TEXT]
    assert "help" in FALLBACK_TEXT
    assert conversation.intent == INTENT_FALLBACK
    assert conversation.telemetry.events == [(EVENT_KNOWLEDGE_FALLBACK.name, {})]


@pytest.mark.asyncio
async def test_other_activity_types_do_nothing() -> None:
    conversation = Conversation()
    assert await conversation.send(Activity(type=ActivityTypes.typing)) == []
    assert conversation.intent == INTENT_NONE
    assert conversation.telemetry.events == []


@pytest.mark.asyncio
async def test_full_feedback_dialog() -> None:
    conversation = Conversation()
    assert await conversation.send("Feedback") == [RATING_PROMPT]
    assert (conversation.intent, conversation.dialog_id) == (INTENT_DIALOG, FEEDBACK_DIALOG_ID)

    for invalid in ("abc", "7", "0", "3.5"):
        assert await conversation.send(invalid) == [RATING_RETRY_PROMPT], invalid
        assert conversation.intent == INTENT_DIALOG
    assert "1 to 5" in RATING_RETRY_PROMPT

    assert await conversation.send("4") == [COMMENT_PROMPT]
    replies = await conversation.send("secret words about the bot")
    assert len(replies) == 1
    assert "4/5" in replies[0]
    assert "Thank" in replies[0]
    assert (conversation.intent, conversation.dialog_id) == (INTENT_DIALOG, FEEDBACK_DIALOG_ID)
    assert await conversation.profile() == FeedbackProfile(count=1, last_rating=4, last_had_comment=True)

    # The dialog is over: the next message is a question again, and "help" is not taken as a rating.
    assert await conversation.send("help") == [HELP_TEXT]

    await conversation.send("survey")
    await conversation.send("2")
    assert "2/5" in (await conversation.send("skip"))[0]
    assert await conversation.profile() == FeedbackProfile(count=2, last_rating=2, last_had_comment=False)

    assert (
        conversation.telemetry.waterfall()
        == [
            EVENT_WATERFALL_START.name,
            *[EVENT_WATERFALL_STEP.name] * 3,
            EVENT_WATERFALL_COMPLETE.name,
        ]
        * 2
    )
    for name, properties in conversation.telemetry.events:
        assert properties["DialogId"] == FEEDBACK_WATERFALL_ID, name
        assert all("secret" not in str(value) for value in properties.values())
    steps = [p["StepName"] for n, p in conversation.telemetry.events if n == EVENT_WATERFALL_STEP.name][:3]
    assert steps == ["FeedbackDialog.ask_rating_step", "FeedbackDialog.ask_comment_step", "FeedbackDialog.finish_step"]


@pytest.mark.asyncio
async def test_cancel_in_the_middle_of_the_dialog() -> None:
    conversation = Conversation()
    await conversation.send("rate")
    assert await conversation.send("  Cancel ") == [CANCELLED_TEXT]
    assert conversation.intent == INTENT_CANCEL
    assert conversation.telemetry.waterfall() == [
        EVENT_WATERFALL_START.name,
        EVENT_WATERFALL_STEP.name,
        EVENT_WATERFALL_CANCEL.name,
    ]
    cancel = conversation.telemetry.events[-1][1]
    assert cancel["DialogId"] == FEEDBACK_WATERFALL_ID
    assert cancel["StepName"] == "FeedbackDialog.ask_rating_step"

    # "5" would have been a valid rating; with the dialog gone it is just an unknown message.
    assert await conversation.send("5") == [FALLBACK_TEXT]
    assert conversation.intent == INTENT_FALLBACK
    assert TURN_STATE_DIALOG not in conversation.turn_states[-1]
    assert await conversation.profile() == FeedbackProfile()

    assert await conversation.send("cancel") == [NOTHING_TO_CANCEL_TEXT]
    assert conversation.intent == INTENT_CANCEL


@pytest.mark.asyncio
async def test_dialog_telemetry_client_set_after_construction_reaches_the_waterfall() -> None:
    conversation = Conversation(dialog_telemetry=False)
    await conversation.send("feedback")
    assert conversation.telemetry.waterfall() == []

    late = RecordingTelemetryClient()
    conversation.dialog.telemetry_client = late
    assert conversation.dialog.telemetry_client is late
    await conversation.send("5")
    await conversation.send("no")
    assert late.waterfall() == [EVENT_WATERFALL_STEP.name, EVENT_WATERFALL_STEP.name, EVENT_WATERFALL_COMPLETE.name]

    conversation.dialog.telemetry_client = None
    assert isinstance(conversation.dialog.telemetry_client, NullTelemetryClient)


@pytest.mark.asyncio
@pytest.mark.parametrize("channel", ["test", "emulator"])
async def test_fail_drill_raises_on_developer_channels(channel: str) -> None:
    conversation = Conversation(channel)
    with pytest.raises(SimulatedFailure):
        await conversation.send("/fail")
    assert issubclass(SimulatedFailure, RuntimeError)
    assert conversation.adapter.activity_buffer == []


@pytest.mark.asyncio
async def test_fail_drill_is_a_fallback_elsewhere() -> None:
    conversation = Conversation("msteams")
    assert await conversation.send("/fail") == [FALLBACK_TEXT]
    assert conversation.intent == INTENT_FALLBACK


@pytest.mark.asyncio
async def test_state_is_saved_every_turn_but_not_after_a_failure() -> None:
    conversation = Conversation()
    await conversation.send("feedback")
    with pytest.raises(SimulatedFailure):
        await conversation.send("/fail")
    # The dialog survived the failed turn and still expects a rating.
    assert await conversation.send("3") == [COMMENT_PROMPT]
    assert all(state[TURN_STATE_INTENT] in INTENTS for state in conversation.turn_states)


# ---- feedback dialog pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rating"), [("1", 1), (" 5 ", 5), ("3.", 3), ("0", None), ("6", None), ("3.5", None)])
def test_parse_rating(text: str, rating: int | None) -> None:
    assert parse_rating(text) == rating


# ---- knowledge base ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "entry_id"),
    [
        ("What are you?", "about_bot"),
        ("who are you", "about_bot"),
        ("what can you do for me", "capabilities"),
        ("Who created you?", "creator"),
        ("how can I leave feedback", "give_feedback"),
        ("how do I look up a turn in App Insights", "find_turn"),
        ("where are metrics exposed", "metrics_endpoint"),
        ("what alert thresholds are configured", "alerts"),
        ("KQL to find failed requests", "failed_requests"),
        ("do you store my messages?", "logging_privacy"),
        ("how long do you keep logs", "log_retention"),
        ("do you have a dashboard", "grafana"),
        ("how are traces sampled", "sampling"),
        ("what is the operation id", "operation_id"),
        ("what's the throughput", "requests_per_second"),
        ("what's the p95 latency", "latency"),
        ("what is the error ratio", "error_rate"),
        ("how much memory do you use", "resource_usage"),
    ],
)
def test_paraphrases_match_the_intended_entry(question: str, entry_id: str) -> None:
    entry = KNOWLEDGE.match(question)
    assert entry is not None, KNOWLEDGE.best(question)
    assert entry.id == entry_id, KNOWLEDGE.best(question)


@pytest.mark.parametrize(
    "text",
    [
        "banana spaceship tuesday",
        "asdf",
        "what is the weather",
        "what time is it",
        "who is the president",
        "how do I cook pasta",
        "what is the meaning of life",
        "lorem ipsum dolor sit amet",
        "12345",
        "",
        "?!",
        "x" * 10_000,
    ],
)
def test_nonsense_does_not_match(text: str) -> None:
    assert KNOWLEDGE.match(text) is None, KNOWLEDGE.best(text)


def test_shipped_knowledge_covers_the_bot_and_its_monitoring() -> None:
    assert 20 <= len(KNOWLEDGE) <= 30
    answers = {entry.id: entry.answer for entry in KNOWLEDGE.entries}
    assert "reference bot template" in answers["creator"]
    assert 'union requests, dependencies, traces, exceptions | where operation_Id == "<id>"' in answers["find_turn"]
    assert "requests | where success == false | summarize count() by resultCode" in answers["failed_requests"]
    assert "`chatbot`" in answers["metrics_endpoint"]
    assert all(threshold in answers["alerts"] for threshold in ("2 s", "5 %", "80 %"))
    assert "BOT_LOG_PERSONAL_INFORMATION=true" in answers["logging_privacy"]
    assert "30 days" in answers["log_retention"]


def test_matching_is_fast() -> None:
    questions = ["how do I find a turn in application insights", "banana spaceship tuesday", "what can you do"]
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        for question in questions:
            KNOWLEDGE.match(question)
    per_match = (time.perf_counter() - start) / (rounds * len(questions))
    # The budget is ~50 µs; the bound leaves room for slow CI machines.
    assert per_match < 250e-6


def _write(tmp_path: Path, entries: object) -> Path:
    path = tmp_path / "knowledge.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def _entry(entry_id: str, answer: str = "An answer.", questions: object = ("what is it about",)) -> dict[str, Any]:
    return {
        "id": entry_id,
        "questions": list(questions) if isinstance(questions, tuple) else questions,
        "answer": answer,
    }


def test_load_from_a_path(tmp_path: Path) -> None:
    knowledge = KnowledgeBase.load(_write(tmp_path, [_entry("zebra", questions=("do zebras have stripes",))]))
    assert knowledge.match("Do zebras have stripes?") == KnowledgeEntry(
        "zebra", ("do zebras have stripes",), "An answer."
    )


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([_entry("twin"), _entry("twin")], "'twin': duplicate id"),
        ([_entry("mute", answer="  ")], "'mute': empty answer"),
        ([_entry("lost", questions=[])], "'lost': no questions"),
        ([_entry("vague", questions=["is it the"])], "'vague': question 'is it the'"),
        ([_entry("typed", questions="not a list")], "'typed': questions must be a list"),
        ([{"questions": ["hello there"], "answer": "hi"}], "#0: missing or empty id"),
        ({"id": "not a list"}, "JSON list"),
    ],
)
def test_load_rejects_invalid_files(tmp_path: Path, entries: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        KnowledgeBase.load(_write(tmp_path, entries))


def test_an_intent_must_be_a_short_word_so_that_its_label_stays_bounded() -> None:
    async def nothing(turn: Turn) -> None:
        return None

    with pytest.raises(ValueError, match="intent"):
        Route("Weather Today!", commands("weather"), nothing)


async def test_a_handler_cannot_record_an_intent_no_route_registered() -> None:
    async def stray(turn: Turn) -> str:
        return "never-registered"

    conversation = Conversation()
    conversation.bot._router = Router([Route(INTENT_HELP, commands("help"), stray)])
    with pytest.raises(ValueError, match="unregistered intent"):
        await conversation.send("help")


def test_two_dialogs_with_one_id_are_refused() -> None:
    user_state = UserState(MemoryStorage())
    first, second = (FeedbackDialog(user_state) for _ in range(2))
    with pytest.raises(ValueError, match="share an id"):
        Router([dialog_route(first, "a"), dialog_route(second, "b")])
