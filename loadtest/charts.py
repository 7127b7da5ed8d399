"""PNG charts of a run from Locust's `*_stats_history.csv` (written with --csv-full-history, one row per request
name and second): throughput, reply latency percentiles over time, errors."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtest.shapes import CHANNEL

REPLY_TYPE = "REPLY"  # the locustfile's request type for the channel transport's replies
TURN_TYPE = "POST"


@dataclass
class History:
    seconds: list[float] = field(default_factory=list)  # since the first row
    users: list[int] = field(default_factory=list)
    turns_per_s: list[float] = field(default_factory=list)
    replies_per_s: list[float] = field(default_factory=list)
    failures_per_s: list[float] = field(default_factory=list)
    failures_total: list[int] = field(default_factory=list)
    p50_s: list[float | None] = field(default_factory=list)  # over Locust's sliding 10 s window
    p95_s: list[float | None] = field(default_factory=list)
    p99_s: list[float | None] = field(default_factory=list)


def _float(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def _seconds(value: str | None) -> float | None:
    """A percentile cell (milliseconds, or N/A before the first request) in seconds."""
    try:
        return float(value or "") / 1000
    except ValueError:
        return None


def read_history(path: Path, transport: str) -> History:
    """The run second by second. Latency is the reply's: REPLY rows on the channel transport, else all turns."""
    by_second: dict[int, list[dict[str, str]]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            by_second[int(row["Timestamp"])].append(row)
    history = History()
    if not by_second:
        return history
    first = min(by_second)
    for second in sorted(by_second):
        rows = by_second[second]
        turns = [r for r in rows if r["Type"] == TURN_TYPE]
        replies = [r for r in rows if r["Type"] == REPLY_TYPE]
        aggregated = [r for r in rows if r["Name"] == "Aggregated"]
        latency = replies if transport == CHANNEL else aggregated
        counted = turns + replies
        history.seconds.append(second - first)
        history.users.append(int(_float(rows[0]["User Count"])))
        history.turns_per_s.append(sum(_float(r["Requests/s"]) for r in turns))
        history.replies_per_s.append(sum(_float(r["Requests/s"]) for r in replies))
        history.failures_per_s.append(sum(_float(r["Failures/s"]) for r in counted))
        history.failures_total.append(int(sum(_float(r["Total Failure Count"]) for r in counted)))
        for column, series in (("50%", history.p50_s), ("95%", history.p95_s), ("99%", history.p99_s)):
            series.append(_seconds(latency[0].get(column)) if latency else None)
    return history


def draw(history: History, out_dir: Path, target_turns_per_second: float, p95_objective_s: float | None) -> list[Path]:
    return [
        _throughput(history, out_dir / "throughput.png", target_turns_per_second),
        _latency(history, out_dir / "latency.png", p95_objective_s),
        _errors(history, out_dir / "errors.png"),
    ]


def _axes(title: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title(title)
    axes.set_xlabel("seconds since start")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _throughput(history: History, path: Path, target: float) -> Path:
    figure, axes = _axes("Throughput", "per second")
    if any(history.replies_per_s):
        axes.plot(history.seconds, history.replies_per_s, label="replies/s", color="tab:green", linewidth=4, alpha=0.35)
    axes.plot(history.seconds, history.turns_per_s, label="turns/s (POST /api/messages)", color="tab:blue")
    axes.axhline(target, color="tab:blue", linestyle="--", linewidth=1, label=f"target {target:g} turns/s")
    axes.set_ylim(bottom=0)
    users = axes.twinx()
    users.plot(history.seconds, history.users, color="tab:gray", linestyle=":", label="users")
    users.set_ylabel("users")
    users.set_ylim(bottom=0)
    _legend(axes, users)
    figure.savefig(path, dpi=100)
    return path


def _latency(history: History, path: Path, objective: float | None) -> Path:
    figure, axes = _axes("Reply latency percentiles (10 s sliding window)", "seconds")
    for label, series, color in (
        ("p50", history.p50_s, "tab:green"),
        ("p95", history.p95_s, "tab:orange"),
        ("p99", history.p99_s, "tab:red"),
    ):
        axes.plot(history.seconds, [float("nan") if v is None else v for v in series], label=label, color=color)
    highest = max((v for v in history.p99_s if v is not None), default=0.0)
    top = max(highest * 1.25, 0.01)
    if objective is not None and objective <= top * 2:
        axes.axhline(objective, color="tab:orange", linestyle="--", linewidth=1, label=f"p95 objective {objective:g} s")
        top = max(top, objective * 1.1)
    elif objective is not None:
        axes.plot([], [], " ", label=f"p95 objective {objective:g} s (far above)")
    axes.set_ylim(bottom=0, top=top)
    figure.legend(loc="outside lower center", ncols=5)
    figure.savefig(path, dpi=100)
    return path


def _errors(history: History, path: Path) -> Path:
    figure, axes = _axes("Errors", "failures per second")
    axes.bar(history.seconds, history.failures_per_s, width=1.0, color="tab:red", alpha=0.6, label="failures/s")
    axes.set_ylim(bottom=0, top=max([1.0, *history.failures_per_s]) * 1.1)
    total = axes.twinx()
    total.plot(history.seconds, history.failures_total, color="black", label="failures so far")
    total.set_ylabel("failures so far")
    total.set_ylim(bottom=0, top=max([1, *history.failures_total]) * 1.1)
    _legend(axes, total)
    figure.savefig(path, dpi=100)
    return path


def _legend(first: Axes, second: Axes) -> None:
    handles, labels = first.get_legend_handles_labels()
    more_handles, more_labels = second.get_legend_handles_labels()
    first.figure.legend(handles + more_handles, labels + more_labels, loc="outside lower center", ncols=5)
