"""The model load shape: conversations whose questions the knowledge base cannot answer, so every one goes to the
language model (the OpenAI-compatible stand-in), against the real bot process, then a reconciliation of tokens:
what the stand-in served = what the bot's Prometheus exposition counts = what Application Insights received.

    python -m loadtest.model_load --users 8 --turns 400 --seconds 30 [--results DIR]

Bounded in turns and in time (whichever ends first). Each user holds one conversation and asks with
`deliveryMode: expectReplies` (the answer in the response: no channel needed). The bot runs as `python -m bot` on
free 127.0.0.1 ports with every turn traced; its SIGTERM flushes every exporter, so what reached the ingestion
stand-in by then is everything it will send. Exit status 0 when the three token counts agree and every turn was
answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.localbot import LocalBot, start_bot
from loadtest.model_standin import ModelStandIn
from loadtest.rig import activities
from loadtest.rig.activities import EXPECT_REPLIES
from loadtest.rig.exposition import total
from loadtest.rig.ingestion import Envelope, IngestionStandIn
from telemetry import catalog

QUESTIONS = (
    "Can you book me a table for two tonight?",
    "What's the score of the match?",
    "Translate 'cat' into Klingon.",
    "Which colour is the sky on Mars?",
    "How far is Jupiter from the sun?",
    "Write me a haiku about dashboards.",
)
MODEL = "gpt-4o-mini"
REQUEST_TIMEOUT_SECONDS = 30.0
MAX_TURNS = 100_000
MAX_SECONDS = 600.0


@dataclass
class Outcome:
    turns: int
    unanswered: int
    seconds: float
    turns_per_second: float
    latency_p50_ms: float
    latency_p95_ms: float
    served: dict[str, int]
    prometheus: dict[str, float]
    application_insights: dict[str, float]
    model_answers: float

    @property
    def problems(self) -> list[str]:
        found = []
        if self.unanswered:
            found.append(f"{self.unanswered} turns got no 200 answer")
        if not self.served["input"] or not self.served["output"]:
            found.append("the model served no tokens")
        served = {kind: float(count) for kind, count in self.served.items()}
        if self.prometheus != served:
            found.append(f"Prometheus counts {self.prometheus} tokens, the model served {served}")
        if self.application_insights != served:
            found.append(f"Application Insights received {self.application_insights} tokens, the model served {served}")
        if self.model_answers != self.turns - self.unanswered:
            found.append(f"{self.model_answers:g} model answers counted for {self.turns - self.unanswered} turns")
        return found


def _percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def application_insights_tokens(envelopes: Sequence[Envelope]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for envelope in envelopes:
        data = envelope.get("data", {}).get("baseData", {})
        for point in data.get("metrics", []) if isinstance(data, dict) else []:
            if point.get("name") == catalog.GENAI_TOKEN_USAGE.name:
                kind = str((data.get("properties") or {}).get(catalog.GEN_AI_TOKEN_TYPE))
                sums[kind] = sums.get(kind, 0.0) + float(point["value"])
    return sums


async def _user(
    session: aiohttp.ClientSession, bot: LocalBot, number: int, state: dict[str, Any], deadline: float, turns: int
) -> None:
    user = {"id": f"load-user-{number}", "name": f"User {number}"}
    conversation = f"model-load-{uuid.uuid4().hex}"
    index = number
    while state["sent"] < turns and time.monotonic() < deadline:
        state["sent"] += 1
        text = QUESTIONS[index % len(QUESTIONS)]
        index += 1
        body = activities.activity(
            "message",
            channel_id="test",
            service_url="http://127.0.0.1:9",  # never called: the replies travel in the response
            conversation_id=conversation,
            user=user,
            text=text,
            deliveryMode=EXPECT_REPLIES,
        )
        started = time.perf_counter()
        try:
            async with session.post(bot.messages_url, json=body) as response:
                await response.read()
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            state["latencies"].append(time.perf_counter() - started)
        else:
            state["unanswered"] += 1


async def drive(bot: LocalBot, users: int, turns: int, seconds: float) -> tuple[int, int, float, list[float]]:
    state: dict[str, Any] = {"sent": 0, "unanswered": 0, "latencies": []}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": catalog.LOADTEST_USER_AGENT}) as session:
        await asyncio.gather(*(_user(session, bot, n, state, started + seconds, turns) for n in range(users)))
    return state["sent"], state["unanswered"], time.monotonic() - started, state["latencies"]


def run(users: int, turns: int, seconds: float, results: Path, project_root: Path) -> Outcome:
    turns = max(1, min(turns, MAX_TURNS))
    seconds = max(1.0, min(seconds, MAX_SECONDS))
    with ModelStandIn() as model, IngestionStandIn() as ingestion:
        overrides = model.bot_env(MODEL, BOT_MAX_CONCURRENT_TURNS=str(max(256, users * 2)))
        previous = {name: os.environ.get(name) for name in overrides}
        os.environ.update(overrides)  # start_bot gives the bot this process's environment
        try:
            bot = start_bot(results, ingestion.connection_string, project_root)
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        try:
            sent, unanswered, elapsed, latencies = asyncio.run(drive(bot, users, turns, seconds))
            exposition = bot.scrape()
        finally:
            bot.stop()
        served_in, served_out = model.served_tokens()
        tokens = catalog.GENAI_TOKEN_USAGE.prometheus_name + "_sum"
        prometheus = {
            kind: total(exposition, tokens, gen_ai_token_type=kind)
            for kind in (catalog.TOKEN_INPUT, catalog.TOKEN_OUTPUT)
        }
        return Outcome(
            turns=sent,
            unanswered=unanswered,
            seconds=round(elapsed, 2),
            turns_per_second=round(sent / elapsed, 1) if elapsed else 0.0,
            latency_p50_ms=round(_percentile(latencies, 0.5) * 1000, 1),
            latency_p95_ms=round(_percentile(latencies, 0.95) * 1000, 1),
            served={catalog.TOKEN_INPUT: served_in, catalog.TOKEN_OUTPUT: served_out},
            prometheus=prometheus,
            application_insights=application_insights_tokens(ingestion.envelopes),
            model_answers=total(exposition, catalog.ANSWERS, bot_answer_source=catalog.SOURCE_MODEL),
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.model_load", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8, help="concurrent conversations (default 8)")
    parser.add_argument("--turns", type=int, default=400, help=f"most turns in all (default 400, at most {MAX_TURNS})")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help=f"longest run (default 30, at most {MAX_SECONDS:g})"
    )
    parser.add_argument("--results", type=Path, help="folder for the bot's log and outcome.json (default: a temp dir)")
    arguments = parser.parse_args(argv)
    if arguments.users < 1:
        parser.error("--users must be at least 1")
    results = arguments.results or Path(tempfile.mkdtemp(prefix="model-load-"))
    results.mkdir(parents=True, exist_ok=True)
    project_root = Path(__file__).resolve().parents[1]
    outcome = run(arguments.users, arguments.turns, arguments.seconds, results, project_root)
    report = {**asdict(outcome), "problems": outcome.problems}
    (results / "outcome.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 1 if outcome.problems else 0


if __name__ == "__main__":
    sys.exit(main())
