"""`python -m loadtest.benchmark`: the whole side-by-side benchmark in one command (docs/performance.md).

Exit status: 0 the run was made (whether the targets were met is in the results), 2 it could not be made.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from loadtest.benchmark import wrk
from loadtest.benchmark.plan import PROJECT_ROOT, TARGETS, BenchmarkPlan, ensure_subset, parse_levels
from loadtest.benchmark.run import Benchmark
from loadtest.benchmark.summary import markdown
from loadtest.rig.progress import BENCHMARK


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.benchmark",
        description="Measure the bare aiohttp ceiling, the stock botbuilder echo bot and otel-chatbot with telemetry "
        "off and on, on both transports, in one run; write results.json and results.md.",
    )
    parser.add_argument("--out", type=Path, help="results directory (default var/benchmark/<time>)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--transports", default=",".join(wrk.TRANSPORTS), help="expectReplies, channel")
    parser.add_argument("--connections", default="1,16,64", help="concurrency levels (wrk connections)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measurement (0: none)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run (1-600)")
    parser.add_argument("--no-half-load", action="store_true", help="skip the runs paced at half the maximum")
    parser.add_argument("--workers", default="1,2", help="python -m bot --workers counts to run ('' to skip)")
    parser.add_argument("--worker-connections", type=int, default=64, help="connections for the worker runs")
    parser.add_argument("--text", default=wrk.DEFAULT_TEXT, help="the message every request sends (ASCII)")
    parser.add_argument("--channel-id", default=wrk.DEFAULT_CHANNEL_ID, help="channelId of the activities")
    parser.add_argument(
        "--traces-per-second",
        type=float,
        default=100.0,
        help="traces per second the ours-sampled target keeps (the bot's default sampler, microsoft.rate_limited)",
    )
    soak = parser.add_argument_group("soak", "instead of the benchmark, one target at half of its maximum for long")
    soak.add_argument("--soak", type=float, metavar="SECONDS", help="soak for SECONDS (e.g. 600) and exit")
    soak.add_argument("--soak-target", default="ours-on", help="the target to soak (default ours-on)")
    soak.add_argument("--soak-rate", type=float, help="turns/s (default: half of a 10 s maximum measured first)")
    soak.add_argument("--soak-warmup", type=float, default=60.0, help="seconds at the soak pace before measuring")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> BenchmarkPlan:
    if not 1 <= args.duration <= 600:
        raise ValueError("--duration must be between 1 and 600 seconds")
    if not 0 <= args.warmup <= 120:
        raise ValueError("--warmup must be between 0 and 120 seconds")
    if not 0 <= args.traces_per_second <= 1e6:
        raise ValueError("--traces-per-second must be between 0 and 1000000")
    if not args.text.isascii() or not args.text.strip():
        raise ValueError("--text must be non-empty ASCII")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return BenchmarkPlan(
        out_dir=args.out or PROJECT_ROOT / "var" / "benchmark" / stamp,
        targets=ensure_subset([t for t in args.targets.split(",") if t], TARGETS, "target"),
        transports=ensure_subset([t for t in args.transports.split(",") if t], wrk.TRANSPORTS, "transport"),
        connections=parse_levels(args.connections),
        warmup=args.warmup,
        duration=args.duration,
        half_load=not args.no_half_load,
        workers=tuple(int(n) for n in args.workers.split(",") if n.strip()),
        worker_connections=args.worker_connections,
        text=args.text,
        channel_id=args.channel_id,
        traces_per_second=args.traces_per_second,
    )


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(arguments)
        plan = make_plan(args)
        if args.soak is not None:
            if not 1 <= args.soak <= 24 * 3600:
                raise ValueError("--soak must be between 1 and 86400 seconds")
            ensure_subset([args.soak_target], TARGETS, "soak target")
    except ValueError as error:
        print(f"python -m loadtest.benchmark: {error}", file=sys.stderr)
        return 2
    if args.soak is not None:
        return _soak(plan, args, arguments)
    if any(count < 1 or count > 16 for count in plan.workers):
        print("python -m loadtest.benchmark: --workers counts must be between 1 and 16", file=sys.stderr)
        return 2
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "loadtest.benchmark", *arguments])
    try:
        data = Benchmark(plan).run()
    except (RuntimeError, OSError) as error:
        BENCHMARK.line(f"the run could not be made: {error}")
        return 2
    data["command"] = command
    (plan.out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (plan.out_dir / "results.md").write_text(markdown(data, command), encoding="utf-8")
    for goal in data["summary"]["targets"]:
        state = {True: "met", False: "NOT MET", None: "not measured"}[goal["met"]]
        BENCHMARK.line(f"{goal['name']}: {goal['value']} (goal {goal['goal']}): {state}")
    BENCHMARK.line(f"results: {plan.out_dir / 'results.md'}")
    return 0


def _soak(plan: BenchmarkPlan, args: argparse.Namespace, arguments: list[str]) -> int:
    from loadtest.benchmark import soak

    plan.out_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "loadtest.benchmark", *arguments])
    try:
        data = soak.run_soak(plan, args.soak_target, args.soak, args.soak_warmup, args.soak_rate)
    except (RuntimeError, OSError) as error:
        BENCHMARK.line(f"the soak could not be made: {error}")
        return 2
    soak.write(plan.out_dir, data, command)
    result = data["soak"]
    BENCHMARK.line(
        f"RSS {result['rss_after_warmup_mb']} MB after warm-up, {result['rss_end_mb']} MB at the end "
        f"({result['rss_growth']:+.1%}; goal <= 10 %): {'met' if result['met'] else 'NOT MET'}"
    )
    BENCHMARK.line(f"results: {plan.out_dir / 'soak.md'}")
    return 0
