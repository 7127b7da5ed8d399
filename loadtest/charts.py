"""PNG charts of a run: throughput, reply latency percentiles and failures, second by second.

Every turn is put in the second it was sent, from the load generator's own turn log (turns.csv): the counts are
exact and on the run's real time. Locust's `Requests/s` and percentile columns are sliding-window figures that lag
a few seconds behind and read 0 where nothing was measured, so only the user count comes from its history CSV.
A second without any reply has no latency (a gap, not 0), and a chart with nothing to show says so in its middle.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtest.turnlog import TurnRecord, percentile

SPARSE_POINTS = 60  # a series with at most this many points gets a marker on each


@dataclass
class History:
    seconds: list[int] = field(default_factory=list)  # start of each second, counted from the start of the run
    turns: list[int] = field(default_factory=list)  # turns sent in that second
    replies: list[int] = field(default_factory=list)  # of those, turns whose reply arrived
    failures: list[int] = field(default_factory=list)  # of those, turns that failed
    p50_s: list[float | None] = field(default_factory=list)  # reply latency of the second's turns; None: no reply
    p95_s: list[float | None] = field(default_factory=list)
    p99_s: list[float | None] = field(default_factory=list)
    user_seconds: list[float] = field(default_factory=list)  # Locust's own timestamps, since the start of the run
    users: list[int] = field(default_factory=list)

    @property
    def failures_total(self) -> list[int]:
        running, totals = 0, []
        for count in self.failures:
            running += count
            totals.append(running)
        return totals


def build_history(records: Sequence[TurnRecord], started: float, locust_history: Path | None = None) -> History:
    """Buckets the turn log by the second each turn was sent, `started` (unix seconds) being second 0."""
    by_second: dict[int, list[TurnRecord]] = defaultdict(list)
    for record in records:
        by_second[max(0, math.floor(record.started - started))].append(record)
    history = History()
    if by_second:
        for second in range(max(by_second) + 1):
            turns = by_second.get(second, [])
            latencies = [r.reply_ms / 1000 for r in turns if r.ok and r.reply_ms is not None]
            history.seconds.append(second)
            history.turns.append(len(turns))
            history.replies.append(len(latencies))
            history.failures.append(sum(not r.ok for r in turns))
            history.p50_s.append(percentile(latencies, 0.50))
            history.p95_s.append(percentile(latencies, 0.95))
            history.p99_s.append(percentile(latencies, 0.99))
    if locust_history is not None and locust_history.exists():
        history.user_seconds, history.users = read_users(locust_history, started)
    return history


def read_users(path: Path, started: float) -> tuple[list[float], list[int]]:
    """The user count over time from Locust's `*_stats_history.csv` (its Aggregated rows)."""
    seconds, users = [], []
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row.get("Name") == "Aggregated":
                seconds.append(float(row["Timestamp"]) - started)
                users.append(int(float(row["User Count"] or 0)))
    return seconds, users


def draw(history: History, out_dir: Path, target_turns_per_second: float, p95_objective_s: float | None) -> list[Path]:
    drawn = []
    for name, figure in (
        ("throughput.png", throughput_figure(history, target_turns_per_second)),
        ("latency.png", latency_figure(history, p95_objective_s)),
        ("errors.png", errors_figure(history)),
    ):
        figure.savefig(out_dir / name, dpi=100)
        drawn.append(out_dir / name)
    return drawn


def _axes(title: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.set_title(title)
    axes.set_xlabel("seconds since start (the second each turn was sent)")
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _empty(axes: Axes, label: str) -> None:
    axes.text(0.5, 0.5, label, transform=axes.transAxes, ha="center", va="center", fontsize="large", color="0.35")


def _markevery(values: Sequence[float | None]) -> list[int] | None:
    """Markers on every point of a sparse series; in a dense one, on the points with no neighbour to join."""
    present = [index for index, value in enumerate(values) if value is not None]
    if len(present) <= SPARSE_POINTS:
        return None
    known = set(present)
    return [index for index in present if index - 1 not in known and index + 1 not in known]


def throughput_figure(history: History, target: float) -> Figure:
    figure, axes = _axes("Throughput", "per second")
    if not any(history.turns):
        _empty(axes, "no turn was sent")
    else:
        axes.plot(history.seconds, history.turns, label="turns sent/s", color="tab:blue", marker="o", markersize=3)
        axes.plot(
            history.seconds,
            history.replies,
            label="of which answered/s",
            color="tab:green",
            linewidth=4,
            alpha=0.35,
        )
    axes.axhline(target, color="tab:blue", linestyle="--", linewidth=1, label=f"target {target:g} turns/s")
    axes.set_ylim(bottom=0)
    users = axes.twinx()
    if history.users:
        users.plot(history.user_seconds, history.users, color="tab:gray", linestyle=":", label="users")
    users.set_ylabel("users")
    users.set_ylim(bottom=0)
    _legend(axes, users)
    return figure


def latency_figure(history: History, objective: float | None) -> Figure:
    figure, axes = _axes("Reply latency percentiles of the turns sent each second", "seconds")
    highest = max((v for v in history.p99_s if v is not None), default=None)
    if highest is None:
        _empty(axes, "no reply arrived: no latency to show")
        highest = 0.0
    else:
        for label, series, color in (
            ("p50", history.p50_s, "tab:green"),
            ("p95", history.p95_s, "tab:orange"),
            ("p99", history.p99_s, "tab:red"),
        ):
            axes.plot(
                history.seconds,
                [math.nan if v is None else v for v in series],  # no reply that second: a gap, not 0
                label=label,
                color=color,
                marker="o",
                markersize=3,
                markevery=_markevery(series),
            )
    top = max(highest * 1.25, 0.01)
    if objective is not None and objective <= top * 2:
        axes.axhline(objective, color="tab:orange", linestyle="--", linewidth=1, label=f"p95 objective {objective:g} s")
        top = max(top, objective * 1.1)
    elif objective is not None:
        axes.plot([], [], " ", label=f"p95 objective {objective:g} s (far above)")
    axes.set_ylim(bottom=0, top=top)
    figure.legend(loc="outside lower center", ncols=5)
    return figure


def errors_figure(history: History) -> Figure:
    figure, axes = _axes("Failed turns", "failed turns per second")
    total = axes.twinx()
    total.set_ylabel("failed turns so far")
    if not any(history.failures):
        _empty(axes, f"no failed turn ({sum(history.turns)} sent)")
        axes.set_ylim(bottom=0, top=1)
        total.set_ylim(bottom=0, top=1)
    else:
        axes.bar(
            history.seconds, history.failures, width=1.0, align="edge", color="tab:red", alpha=0.6, label="failed/s"
        )
        axes.set_ylim(bottom=0, top=max(history.failures) * 1.1)
        totals = history.failures_total
        total.plot(history.seconds, totals, color="black", label="failed so far")
        total.set_ylim(bottom=0, top=max(totals) * 1.1)
    _legend(axes, total)
    return figure


def _legend(first: Axes, second: Axes) -> None:
    handles, labels = first.get_legend_handles_labels()
    more_handles, more_labels = second.get_legend_handles_labels()
    if handles or more_handles:
        first.figure.legend(handles + more_handles, labels + more_labels, loc="outside lower center", ncols=5)
