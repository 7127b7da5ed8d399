"""`python -m loadtest`: start the bot when no target is given, run a load shape with Locust, judge the run.

Exit status: 0 every objective met and the counts reconciled, 1 the verdict failed, 2 the run could not be made.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from loadtest import charts, report
from loadtest.auth import TOKEN_VARIABLE, bearer_token
from loadtest.localbot import LocalBot, start_bot
from loadtest.reconcile import LedgerStandIn, Reconciliation, Tally, prometheus_tally, reconcile
from loadtest.shapes import CHANNEL, EXPECT_REPLIES, SHAPES, TRANSPORTS, Shape, get_shape
from loadtest.slo import DEFAULT_FILE, Measured, Objectives, evaluate, load_objectives
from loadtest.turnlog import TurnRecord, read_turns, slowest, summarize
from telemetry import catalog

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_TIMEOUT_SECONDS = 30  # Locust lets users finish the turn in progress for up to this long
LOCUST_GRACE_SECONDS = 60  # start-up and writing reports, beyond the run's time limit
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_ECHOED = ("[progress]", "/WARNING/", "/ERROR/", "/CRITICAL/")


@dataclass(frozen=True)
class Plan:
    shape: Shape
    transport: str
    target: str | None  # the messaging endpoint; None: start the bot here
    time_limit: float
    objectives: Objectives
    slo_file: Path
    out_dir: Path
    channel_id: str
    users: int | None
    duration: float | None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="Load-test otel-chatbot: Locust report and CSVs, charts, SLO verdict and reconciliation.",
    )
    parser.add_argument("--shape", choices=list(SHAPES), default="smoke", help="load shape (default: smoke)")
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        help="channel: replies POSTed to a local receiver (default for a local bot); "
        "expectReplies: replies in the HTTP response (default with --target)",
    )
    parser.add_argument(
        "--target",
        help="messaging endpoint of a running bot, e.g. https://mybot.azurewebsites.net/api/messages "
        "(default: start the bot on 127.0.0.1 with an Application Insights stand-in)",
    )
    parser.add_argument("--users", type=int, help="peak users (scales the shape and its throughput target)")
    parser.add_argument("--duration", type=float, help="seconds the shape lasts (stretches its stages)")
    parser.add_argument("--time-limit", type=float, help="stop the run after this many seconds (default: the shape's)")
    parser.add_argument("--slo", type=Path, default=DEFAULT_FILE, help=f"SLO file (default: {DEFAULT_FILE.name})")
    parser.add_argument("--out", type=Path, help="results directory (default: var/loadtest/<shape>-<transport>-<time>)")
    parser.add_argument("--channel-id", default="emulator", help="channelId the users claim (default: emulator)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """The run to make; ValueError for a contradictory or invalid request."""
    if args.users is not None and args.users < 1:
        raise ValueError("--users must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    shape = get_shape(args.shape).scaled(args.users, args.duration)
    time_limit = shape.duration if args.time_limit is None else args.time_limit
    if time_limit <= 0:
        raise ValueError("--time-limit must be positive")
    transport = args.transport or (EXPECT_REPLIES if args.target else CHANNEL)
    if args.target:
        parts = urlsplit(args.target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--target must be an http(s) URL, got {args.target!r}")
        if transport == CHANNEL and parts.hostname not in LOCAL_HOSTS:
            raise ValueError(
                "the channel transport needs a bot on this machine (it replies to 127.0.0.1); "
                "use --transport expectReplies for a deployed bot"
            )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or PROJECT_ROOT / "var" / "loadtest" / f"{shape.name}-{transport}-{stamp}"
    return Plan(
        shape=shape,
        transport=transport,
        target=args.target,
        time_limit=time_limit,
        objectives=load_objectives(args.slo, shape.name),
        slo_file=args.slo,
        out_dir=out_dir,
        channel_id=args.channel_id,
        users=args.users,
        duration=args.duration,
    )


def say(message: str) -> None:
    print(f"[loadtest] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        plan = make_plan(parse_args(argv))
    except ValueError as error:
        print(f"python -m loadtest: {error}", file=sys.stderr)
        return 2
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return run(plan)
    except RuntimeError as error:
        say(f"the run could not be made: {error}")
        return 2


def run(plan: Plan) -> int:
    with ExitStack() as stack:
        env = dict(os.environ)
        if plan.target is None:
            ingestion = stack.enter_context(LedgerStandIn())
            say("starting the bot on 127.0.0.1 (telemetry to a local Application Insights ingestion stand-in)")
            bot: LocalBot | None = start_bot(plan.out_dir, ingestion.connection_string, PROJECT_ROOT)
            stack.callback(bot.stop)
            target = bot.messages_url
            before = prometheus_tally(bot.scrape())
        else:
            bot, ingestion, target, before = None, None, plan.target, Tally(0)
            token = bearer_token(env)
            if token:
                env[TOKEN_VARIABLE] = token
        say(
            f"shape {plan.shape.name}: {plan.shape.purpose} Peak {plan.shape.peak_users} users, "
            f"{min(plan.shape.duration, plan.time_limit):g} s; transport {plan.transport}; target {target}"
        )
        completed = run_locust(plan, target, env)
        run_file = plan.out_dir / "run.json"
        if not run_file.exists():
            raise RuntimeError(f"Locust wrote no results; see {plan.out_dir / 'locust.log'}")
        summary = json.loads(run_file.read_text(encoding="utf-8"))
        records = read_turns(plan.out_dir / "turns.csv")
        prometheus = ledger = None
        if bot is not None and ingestion is not None:
            prometheus = prometheus_tally(bot.scrape()) - before
            say("stopping the bot; it flushes its telemetry to the ingestion stand-in")
            code = bot.stop()
            if code != 0:
                say(f"the bot exited with code {code}; see {bot.log_path}")
            ledger = ingestion.ledger
        reconciliation = reconcile(records, prometheus, ledger, locust_posts(plan.out_dir / "locust_stats.csv"))
    return judge(plan, target, summary, records, reconciliation, completed)


def run_locust(plan: Plan, target: str, env: dict[str, str]) -> bool:
    """Run Locust to the end of the shape; False when it had to be stopped at the hard limit."""
    parts = urlsplit(target)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--host", f"{parts.scheme}://{parts.netloc}", "--messages-path", parts.path or "/api/messages",
        "--csv", str(plan.out_dir / "locust"), "--csv-full-history", "--html", str(plan.out_dir / "report.html"),
        "--stop-timeout", str(STOP_TIMEOUT_SECONDS), "--exit-code-on-error", "0",
        "--shape", plan.shape.name, "--run-limit", f"{plan.time_limit:g}", "--transport", plan.transport,
        "--channel-id", plan.channel_id, "--results-dir", str(plan.out_dir),
    ]  # fmt: skip
    if plan.users is not None:
        command += ["--shape-users", str(plan.users)]
    if plan.duration is not None:
        command += ["--shape-duration", f"{plan.duration:g}"]
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))}
    hard_limit = min(plan.shape.duration, plan.time_limit) + STOP_TIMEOUT_SECONDS + LOCUST_GRACE_SECONDS
    with (plan.out_dir / "locust.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        echo = threading.Thread(target=_echo, args=(process.stdout, log), daemon=True)
        echo.start()
        try:
            process.wait(hard_limit)
            completed = True
        except subprocess.TimeoutExpired:
            say(f"Locust is still running {hard_limit:g} s after the start: stopping it")
            completed = False
            _stop(process)
        echo.join(10)
    if process.returncode not in (0, None) and completed:
        say(f"Locust exited with code {process.returncode}; see {plan.out_dir / 'locust.log'}")
    return completed


def _echo(stream: IO[str] | None, log: IO[str]) -> None:
    """Copy Locust's output to locust.log; show progress lines and problems as they come."""
    if stream is None:
        return
    for line in stream:
        log.write(line)
        if line.startswith(_ECHOED[0]) or any(marker in line for marker in _ECHOED[1:]):
            print(line, end="", flush=True)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)  # Locust still writes its reports on SIGTERM
    try:
        process.wait(STOP_TIMEOUT_SECONDS + 15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def locust_posts(stats_file: Path) -> int | None:
    """How many POSTs Locust's own statistics counted (written when it exits)."""
    if not stats_file.exists():
        return None
    with stats_file.open(newline="", encoding="utf-8") as file:
        return sum(int(row["Request Count"]) for row in csv.DictReader(file) if row["Type"] == "POST")


def judge(
    plan: Plan,
    target: str,
    summary: dict[str, Any],
    records: list[TurnRecord],
    reconciliation: Reconciliation,
    completed: bool,
) -> int:
    turns = summarize(records)
    duration = float(summary.get("duration_s") or 0.0)
    measured = Measured(turns.turns, turns.failed, duration, turns.reply_p95_s)
    checks = evaluate(plan.objectives, measured, plan.shape.target_turns_per_second)
    files = ["report.html", "locust_stats.csv", "locust_stats_history.csv", "locust_failures.csv", "turns.csv"]
    knee = None
    history_file = plan.out_dir / "locust_stats_history.csv"
    if history_file.exists():
        history = charts.read_history(history_file, plan.transport)
        drawn = charts.draw(
            history, plan.out_dir, plan.shape.target_turns_per_second, plan.objectives.reply_p95_seconds
        )
        files += [path.name for path in drawn]
        if plan.shape.name == "ramp":
            knee = report.find_knee(history, plan.objectives.reply_p95_seconds)
    notes = [f"SLOs from {plan.slo_file}"]
    if plan.target is not None:
        notes.append(remote_reconciliation_hint(float(summary.get("started") or 0.0), duration))
    verdict = report.Verdict(
        shape=plan.shape.name,
        transport=plan.transport,
        target=target,
        started=float(summary.get("started") or 0.0),
        duration_s=duration,
        peak_users=int(summary.get("peak_users") or 0),
        turns=turns,
        turns_per_second=measured.turns_per_second,
        checks=checks,
        reconciliation=reconciliation,
        slowest=slowest(records),
        knee=knee,
        notes=tuple(notes),
        completed=completed,
    )
    text = report.write(verdict, plan.out_dir, [*files, "summary.txt", "verdict.json"])
    print(text, end="", flush=True)
    say(f"results in {plan.out_dir}")
    return 0 if verdict.passed else 1


def remote_reconciliation_hint(started: float, duration: float) -> str:
    begin = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = datetime.fromtimestamp(started + duration + 600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rejection = f'customDimensions["{catalog.REJECTION_REASON}"]'
    return (
        "to reconcile with Application Insights, compare the load generator's counts with: "
        f"requests | where timestamp between (datetime({begin}) .. datetime({end})) "
        f'| where name == "{catalog.SPAN_MESSAGES_REQUEST}" '
        f"| summarize turns = countif(isempty({rejection})), refused = countif(isnotempty({rejection}))"
    )


if __name__ == "__main__":
    sys.exit(main())
