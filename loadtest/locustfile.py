"""Locust users that chat with the bot the way people do.

Each user opens its own conversation (conversationUpdate), greets, then with think time in between asks knowledge
questions, says things the bot does not understand, asks for help and takes the feedback survey (sometimes
cancelling it). Every POST carries a fresh sampled W3C `traceparent` and is written to the turn log.

`python -m loadtest` runs this file (docs/load-testing.md). By hand, from the project root:
    python -m locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:3978 --shape smoke
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, events, task
from locust.env import Environment

from loadtest.auth import TOKEN_VARIABLE
from loadtest.conversation import (
    GREETINGS,
    OFF_TOPIC,
    Activity,
    Conversation,
    feedback_script,
    knowledge_questions,
    new_traceparent,
    reply_problem,
)
from loadtest.receiver import PendingTurn, ReplyBoard, start_receiver
from loadtest.rig.progress import LOCUST
from loadtest.shapes import CHANNEL, SHAPES, TRANSPORTS, Shape, get_shape
from loadtest.turnlog import NO_RESPONSE, TurnRecord, TurnWriter, percentile
from telemetry.catalog import LOADTEST_USER_AGENT

# The bot marks requests with this User-Agent as synthetic (user_agent.synthetic.type = test), so a load test against
# a deployed bot is not counted as real users (docs/load-testing.md, "Load tests are synthetic traffic").
USER_AGENT = f"{LOADTEST_USER_AGENT}/1 (synthetic load test; Locust)"

REPLY_TYPE = "REPLY"
REPLY_NAME = "bot reply"
REPLY_TIMEOUT_SECONDS = 10.0
PROGRESS_INTERVAL_SECONDS = 5.0

TURNS_FILE = "turns.csv"
RUN_FILE = "run.json"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("otel-chatbot")
    group.add_argument("--transport", choices=TRANSPORTS, default=CHANNEL, help="how replies come back")
    group.add_argument("--shape", choices=sorted(SHAPES), default="smoke", help="load shape (loadtest/shapes.py)")
    group.add_argument("--shape-users", type=int, default=0, help="peak users (default: the shape's)")
    group.add_argument("--shape-duration", type=float, default=0, help="shape length in seconds (default: its own)")
    group.add_argument("--run-limit", type=float, default=0, help="stop after this many seconds (0: shape's end)")
    group.add_argument("--channel-id", default="emulator", help="channelId of the activities")
    group.add_argument("--messages-path", default="/api/messages", help="path of the bot's messaging endpoint")
    group.add_argument("--results-dir", default="", help="where to write turns.csv and run.json")


@dataclass
class RunState:
    transport: str
    shape: Shape
    channel_id: str
    messages_path: str
    run_limit: float | None
    token: str
    results_dir: Path | None
    board: ReplyBoard = field(default_factory=ReplyBoard)
    service_url: str = "http://127.0.0.1:9"  # expectReplies: nothing is ever posted there
    server: Any = None
    writer: TurnWriter | None = None
    started: float | None = None
    stopping: float | None = None
    peak_users: int = 0
    turns: int = 0
    failed: int = 0
    recent_replies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    requests: Counter[str] = field(default_factory=Counter)  # request events by type, as Locust counts them
    progress: Any = None

    def record(self, turn: TurnRecord) -> None:
        self.turns += 1
        self.failed += 0 if turn.ok else 1
        if turn.reply_ms is not None:
            self.recent_replies.append(turn.reply_ms / 1000)
        if self.writer is not None:
            self.writer.write(turn)


_state: RunState | None = None


def state() -> RunState:
    if _state is None:
        raise RuntimeError("the load test was not initialised (events.init did not run)")
    return _state


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    global _state
    options = environment.parsed_options
    if options is None:
        raise RuntimeError("run this locustfile with the locust command (it reads its options)")
    shape = get_shape(options.shape).scaled(options.shape_users or None, options.shape_duration or None)
    results_dir = Path(options.results_dir) if options.results_dir else None
    run = RunState(
        transport=options.transport,
        shape=shape,
        channel_id=options.channel_id,
        messages_path=options.messages_path,
        run_limit=options.run_limit or None,
        token=os.environ.get(TOKEN_VARIABLE, "").strip().removeprefix("Bearer ").strip(),
        results_dir=results_dir,
    )
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        run.writer = TurnWriter(results_dir / TURNS_FILE)
    if run.transport == CHANNEL:
        run.server, run.service_url = start_receiver(run.board)
    _state = run


@events.test_start.add_listener
def _test_start(environment: Environment, **_: Any) -> None:
    run = state()
    run.started = time.time()
    run.progress = gevent.spawn(_report_progress, environment, run)


@events.request.add_listener
def _count_request(request_type: str, **_: Any) -> None:
    state().requests[request_type] += 1


@events.test_stopping.add_listener
def _test_stopping(**_: Any) -> None:
    state().stopping = time.time()


@events.quit.add_listener
def _quit(**_: Any) -> None:
    run = state()
    if run.progress is not None:
        run.progress.kill(block=False)
    if run.server is not None:
        run.server.stop(timeout=1)
    if run.writer is not None:
        run.writer.close()
    if run.results_dir is not None:
        (run.results_dir / RUN_FILE).write_text(json.dumps(_run_summary(run), indent=2) + "\n", encoding="utf-8")


def _run_summary(run: RunState) -> dict[str, Any]:
    stopping = run.stopping or time.time()
    return {
        "shape": run.shape.name,
        "transport": run.transport,
        "channel_id": run.channel_id,
        "service_url": run.service_url,
        "started": run.started,
        "stopping": stopping,
        "duration_s": (stopping - run.started) if run.started else 0.0,
        "peak_users": run.peak_users,
        "turns": run.turns,
        "failed": run.failed,
        "replies_received": run.board.received,
        "replies_unmatched": run.board.unmatched,
        "locust_requests": dict(run.requests),
    }


def _report_progress(environment: Environment, run: RunState) -> None:
    last_turns, last_time = 0, time.monotonic()
    while True:
        gevent.sleep(PROGRESS_INTERVAL_SECONDS)
        now = time.monotonic()
        users = environment.runner.user_count if environment.runner is not None else 0
        run.peak_users = max(run.peak_users, users)
        rate = (run.turns - last_turns) / (now - last_time)
        last_turns, last_time = run.turns, now
        p95 = percentile(list(run.recent_replies), 0.95)
        shown = "-" if p95 is None else f"{p95:.3f}s"
        elapsed = time.time() - (run.started or time.time())
        LOCUST.line(
            f"{elapsed:5.0f}s  users {users:4d}  turns {run.turns:6d}  failed {run.failed:4d}  "
            f"{rate:6.1f} turns/s  reply p95 {shown}"
        )


class NamedShape(LoadTestShape):
    """The shape chosen with --shape, cut short by --run-limit."""

    def tick(self) -> tuple[int, float] | None:
        run = state()
        current = run.shape.tick(self.get_run_time(), run.run_limit)
        if current is not None:
            run.peak_users = max(run.peak_users, self.get_current_user_count())
        return current


class ChatUser(FastHttpUser):
    network_timeout = 20.0
    connection_timeout = 5.0

    conversation: Conversation
    rng: random.Random

    def wait_time(self) -> float:
        low, high = state().shape.think_time
        return self.rng.uniform(low, high)

    def on_start(self) -> None:
        run = state()
        self.rng = random.Random()
        self.conversation = Conversation(run.channel_id, run.service_url, run.transport != CHANNEL)
        self.turn("conversationUpdate", self.conversation.conversation_update())
        self.wait()
        self.chat("greeting", self.rng.choice(GREETINGS))

    @task(6)
    def ask_the_knowledge_base(self) -> None:
        self.chat("knowledge", self.rng.choice(knowledge_questions()))

    @task(2)
    def say_something_off_topic(self) -> None:
        self.chat("fallback", self.rng.choice(OFF_TOPIC))

    @task(1)
    def greet_again(self) -> None:
        self.chat("greeting", self.rng.choice(GREETINGS))

    @task(1)
    def ask_for_help(self) -> None:
        self.chat("help", "help")

    @task(2)
    def take_the_survey(self) -> None:
        for index, step in enumerate(feedback_script(self.rng)):
            if index:
                self.wait()  # thinking about the answer; Locust may stop the user here
            self.chat(step.name, step.text)

    def chat(self, name: str, text: str) -> None:
        """One message turn, labelled `name` in the statistics."""
        self.turn(name, self.conversation.message(text))

    def turn(self, name: str, activity: Activity) -> None:
        """POST one activity and, on the channel transport, wait for the bot's reply; record the turn either way."""
        # Locust kills a user it finds thinking; if the think time ended at that very moment, the kill is already
        # queued. Yielding once takes it here, before the turn starts, rather than halfway through the POST.
        gevent.sleep(0)
        run = state()
        trace_id, traceparent = new_traceparent()
        headers = {"traceparent": traceparent, "User-Agent": USER_AGENT}
        if run.token:
            headers["Authorization"] = f"Bearer {run.token}"
        record = TurnRecord(started=time.time(), name=name, trace_id=trace_id)
        pending = run.board.expect(self.conversation.conversation_id, activity["id"], time.perf_counter())
        try:
            with self.client.post(
                run.messages_path, json=activity, headers=headers, name=name, catch_response=True
            ) as response:
                record.status = response.status_code or NO_RESPONSE
                record.post_ms = response.request_meta["response_time"]
                record.error = self._post_problem(response, trace_id, run.transport)
                if record.error:
                    response.failure(record.error)
                else:
                    response.success()
            if not record.error:
                if run.transport == CHANNEL:
                    self._await_reply(pending, record)
                else:
                    record.reply_ms = record.post_ms
            record.ok = not record.error
        except BaseException:  # GreenletExit: Locust stopped this user in the middle of the turn
            record.error = record.error or "abandoned: the load generator stopped during the turn"
            raise
        finally:
            run.board.forget(pending)
            run.record(record)

    @staticmethod
    def _post_problem(response: Any, trace_id: str, transport: str) -> str:
        status = response.status_code or NO_RESPONSE
        if status == NO_RESPONSE:
            return f"no response: {type(response.error).__name__}: {response.error}"
        if transport == CHANNEL:
            return "" if 200 <= status < 300 else f"HTTP {status}"
        if status != 200:
            return f"HTTP {status}"
        try:
            body = response.json()
        except ValueError:
            return "the expectReplies response is not JSON"
        activities = body.get("activities") if isinstance(body, dict) else None
        if not isinstance(activities, list):
            return "the expectReplies response has no activities"
        return reply_problem(activities, trace_id) or ""

    def _await_reply(self, pending: PendingTurn, record: TurnRecord) -> None:
        arrived = pending.wait(REPLY_TIMEOUT_SECONDS)
        seconds = pending.reply_seconds
        if not arrived or seconds is None:
            record.error = f"no reply within {REPLY_TIMEOUT_SECONDS:g}s"
            elapsed_ms = (time.perf_counter() - pending.sent_at) * 1000
            self._fire_reply(record, elapsed_ms, record.error)
            return
        record.reply_ms = seconds * 1000
        record.error = reply_problem(pending.activities, record.trace_id) or ""
        self._fire_reply(record, record.reply_ms, record.error)

    def _fire_reply(self, record: TurnRecord, response_time_ms: float, error: str) -> None:
        self.environment.events.request.fire(
            request_type=REPLY_TYPE,
            name=REPLY_NAME,
            response_time=response_time_ms,
            response_length=0,
            response=None,
            context={"trace_id": record.trace_id, "turn": record.name},
            exception=AssertionError(error) if error else None,
            start_time=record.started,
            url=None,
        )
