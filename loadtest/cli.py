"""The command line of `python -m loadtest`, turned into a plan for the run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from loadtest.shapes import CHANNEL, EXPECT_REPLIES, SHAPES, TRANSPORTS, Shape, get_shape
from loadtest.slo import DEFAULT_FILE, Objectives, load_objectives

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class LoadTestPlan:
    """One `python -m loadtest` run, as the command line asked for it."""

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


def make_plan(args: argparse.Namespace) -> LoadTestPlan:
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
    return LoadTestPlan(
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
