"""`python -m loadtest`: start the bot when no target is given, run a load shape with Locust, judge the run.

Exit status: 0 every objective met and the counts reconciled, 1 the verdict failed, 2 the run could not be made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from loadtest import charts, report
from loadtest.auth import TOKEN_VARIABLE, bearer_token
from loadtest.cli import PROJECT_ROOT, LoadTestPlan, make_plan, parse_args
from loadtest.localbot import LocalBot, start_bot
from loadtest.reconcile import Reconciliation, RequestLedger, Tally, prometheus_tally, reconcile
from loadtest.rig.ingestion import IngestionStandIn
from loadtest.rig.processes import terminate
from loadtest.rig.progress import LOADTEST, LOCUST
from loadtest.slo import Measured, evaluate, load_objectives
from loadtest.turnlog import TurnRecord, read_turns, slowest, summarize
from telemetry import catalog

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_TIMEOUT_SECONDS = 30  # Locust lets users finish the turn in progress for up to this long
LOCUST_GRACE_SECONDS = 60  # start-up and writing reports, beyond the run's time limit
TARGET_CHECK_TIMEOUT_SECONDS = 10.0
_PROBLEMS = ("/WARNING/", "/ERROR/", "/CRITICAL/")


def main(argv: list[str] | None = None) -> int:
    try:
        plan = make_plan(parse_args(argv))
    except ValueError as error:
        print(f"python -m loadtest: {error}", file=sys.stderr)
        return 2
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return run(plan)
    except (RuntimeError, PermissionError) as error:  # PermissionError: no token for these app credentials
        LOADTEST.line(f"the run could not be made: {error}")
        return 2


def run(plan: LoadTestPlan) -> int:
    with ExitStack() as stack:
        env = dict(os.environ)
        bot: LocalBot | None = None
        ledger: RequestLedger | None = None
        before = Tally(0)
        if plan.target is None:
            ledger = RequestLedger()
            ingestion = stack.enter_context(IngestionStandIn(keep=ledger.add))
            LOADTEST.line(
                "starting the bot on 127.0.0.1 (telemetry to a local Application Insights ingestion stand-in)"
            )
            bot = start_bot(plan.out_dir, ingestion.connection_string, PROJECT_ROOT)
            stack.callback(bot.stop)
            target = bot.messages_url
            before = prometheus_tally(bot.scrape())
        else:
            target = plan.target
            check_target(target)
            token = bearer_token(env)
            if token:
                env[TOKEN_VARIABLE] = token
        LOADTEST.line(
            f"shape {plan.shape.name}: {plan.shape.purpose} Peak {plan.shape.peak_users} users, "
            f"{min(plan.shape.duration, plan.time_limit):g} s; transport {plan.transport}; target {target}"
        )
        run_file = plan.out_dir / "run.json"
        run_file.unlink(missing_ok=True)  # a results directory may be reused
        completed = run_locust(plan, target, env)
        if not run_file.exists():
            raise RuntimeError(f"Locust wrote no results; see {plan.out_dir / 'locust.log'}")
        summary = json.loads(run_file.read_text(encoding="utf-8"))
        records = read_turns(plan.out_dir / "turns.csv")
        prometheus = None
        if bot is not None:
            try:
                prometheus = prometheus_tally(bot.scrape()) - before
            except OSError as error:
                raise RuntimeError(f"the bot stopped answering ({error}):\n{bot.log_tail()}") from None
            LOADTEST.line("stopping the bot; it flushes its telemetry to the ingestion stand-in")
            code = bot.stop()
            if code != 0:
                LOADTEST.line(f"the bot exited with code {code}; see {bot.log_path}")
        locust_posts = int(summary.get("locust_requests", {}).get("POST", 0))
        reconciliation = reconcile(records, prometheus, ledger, locust_posts)
    return judge(plan, target, summary, records, reconciliation, completed)


def check_target(url: str, timeout: float = TARGET_CHECK_TIMEOUT_SECONDS) -> None:
    """Fail in seconds, before any load, when nothing answers at the target: a dead target would otherwise run the
    whole shape (30 minutes for soak) and end in a verdict full of connection errors. GET on the messaging endpoint
    is answered 405 by a Bot Framework bot; no answer, a 404 (nothing there) or a 502/503/504 (a gateway in front of
    a stopped app) means there is no bot to load."""
    host = urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise RuntimeError(f"the target {url} does not answer ({reason}); no load was sent") from None
    if status == 404 or status in (502, 503, 504):
        raise RuntimeError(f"the target {url} answered GET with {status}: no bot there; no load was sent")
    LOADTEST.line(f"target {url} answers (GET: {status})")


def run_locust(plan: LoadTestPlan, target: str, env: dict[str, str]) -> bool:
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
            LOADTEST.line(f"Locust is still running {hard_limit:g} s after the start: stopping it")
            completed = False
            terminate(process, STOP_TIMEOUT_SECONDS + 15)  # Locust still writes its reports on SIGTERM
        echo.join(10)
    if process.returncode not in (0, None) and completed:
        LOADTEST.line(f"Locust exited with code {process.returncode}; see {plan.out_dir / 'locust.log'}")
    return completed


def _echo(stream: IO[str] | None, log: IO[str]) -> None:
    """Copy Locust's output to locust.log; show progress lines and problems as they come."""
    if stream is None:
        return
    for line in stream:
        log.write(line)
        if line.startswith(LOCUST.prefix) or any(marker in line for marker in _PROBLEMS):
            print(line, end="", flush=True)


def judge(
    plan: LoadTestPlan,
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
    started = float(summary.get("started") or 0.0) or min((record.started for record in records), default=0.0)
    history = charts.build_history(records, started, plan.out_dir / "locust_stats_history.csv")
    drawn = charts.draw(history, plan.out_dir, plan.shape.target_turns_per_second, plan.objectives.reply_p95_seconds)
    files += [path.name for path in drawn]
    if plan.shape.name == "ramp":
        levels = report.shape_levels(records, plan.shape, float(summary.get("started") or 0.0))
        # A ramp's own latency objective is usually off; the knee still says where the general one was reached.
        objective = plan.objectives.reply_p95_seconds or load_objectives(plan.slo_file, "").reply_p95_seconds
        knee = report.find_knee(levels, objective)
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
    LOADTEST.line(f"results in {plan.out_dir}")
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
