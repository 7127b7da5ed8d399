"""The command line: arguments, exit codes and progress on stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from telemetry.weekly.analysis import DEFAULT_SLO_AVAILABILITY, DEFAULT_SLO_ERROR_RATIO, DEFAULT_SLO_P95_SECONDS
from telemetry.weekly.client import (
    DEFAULT_PROMETHEUS,
    REQUEST_TIMEOUT_SECONDS,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnreachable,
)
from telemetry.weekly.collect import collect
from telemetry.weekly.windows import DEFAULT_DAYS, make_window
from telemetry.weekly.write import write_report

EXIT_OK = 0
EXIT_QUERY_FAILED = 1
EXIT_UNREACHABLE = 2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.weekly",
        description="Write the weekly chatbot report (Markdown, HTML, PNG charts, JSON) from Prometheus.",
    )
    parser.add_argument("--prometheus", default=DEFAULT_PROMETHEUS, help=f"base URL (default {DEFAULT_PROMETHEUS})")
    since = parser.add_mutually_exclusive_group()
    since.add_argument("--start", help="start of the range, ISO 8601 (UTC unless an offset is given)")
    since.add_argument("--days", type=float, help=f"range length in days before --end (default {DEFAULT_DAYS:g})")
    parser.add_argument("--end", help="end of the range, ISO 8601 (default: now)")
    parser.add_argument("--step", default="auto", help="resolution: auto or a duration like 30s, 5m, 1h")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory (default ./report)")
    parser.add_argument(
        "--slo-p95", type=float, default=DEFAULT_SLO_P95_SECONDS, help="p95 response time objective, seconds"
    )
    parser.add_argument(
        "--slo-error-ratio", type=float, default=DEFAULT_SLO_ERROR_RATIO, help="turn error ratio objective (0..1)"
    )
    parser.add_argument(
        "--slo-availability",
        type=float,
        default=DEFAULT_SLO_AVAILABILITY,
        help="uptime objective: share of successful scrapes (0..1)",
    )
    parser.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT_SECONDS, help="seconds to wait for each query")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        window = make_window(args.start, args.days, args.end, args.step)
    except ValueError as error:
        print(f"report: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if window.note:
        print(f"report: {window.note}", file=sys.stderr)
    client = PrometheusClient(args.prometheus, args.timeout)
    try:
        results = collect(client, window)
    except PrometheusUnreachable as error:
        print(f"report: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except PrometheusQueryError as error:
        print(f"report: {error}", file=sys.stderr)
        return EXIT_QUERY_FAILED
    summary = write_report(results, args.out, args.slo_p95, args.slo_error_ratio, args.slo_availability)
    if not summary["charts"]:
        print("report: no chatbot data in this range; is this the right Prometheus and range?", file=sys.stderr)
    print(
        f"report: wrote {args.out / 'report.md'}, {args.out / 'report.html'} and {len(summary['charts'])} charts",
        file=sys.stderr,
    )
    return EXIT_OK
