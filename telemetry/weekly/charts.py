"""The report's PNG charts, drawn with matplotlib (the `report` extra) from the collected series."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib import dates as mdates
from matplotlib.figure import Figure

from telemetry.weekly.analysis import AlertEpisodes
from telemetry.weekly.client import Point
from telemetry.weekly.collect import Results
from telemetry.weekly.queries import MESSAGES_ROUTE
from telemetry.weekly.text import percent
from telemetry.weekly.windows import Window

SPARSE_POINTS = 60  # a series with at most this many points is drawn with a marker on every point


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    scale: float = 1.0
    secondary: bool = False  # drawn on the right-hand axis


@dataclass(frozen=True)
class Chart:
    file: str
    title: str
    ylabel: str
    lines: tuple[Line, ...]
    threshold: tuple[float, str] | None = None
    log_scale: bool = False
    secondary_label: str = ""


def chart_specs(slo_p95: float, slo_error_ratio: float) -> tuple[Chart, ...]:
    return (
        Chart(
            "traffic.png",
            "Traffic",
            "per second",
            (Line("turns_per_second", "turns/s"), Line("requests_per_second", f"requests/s ({MESSAGES_ROUTE})")),
        ),
        Chart(
            "errors.png",
            "Error ratio",
            "%",
            (Line("turn_error_ratio", "failed turns", 100), Line("http_5xx_ratio", "HTTP 5xx", 100)),
            threshold=(slo_error_ratio * 100, f"objective {percent(slo_error_ratio, 2)}"),
        ),
        Chart(
            "latency.png",
            f"Response time of {MESSAGES_ROUTE}",
            "seconds (log scale)",
            (Line("latency_p50", "p50"), Line("latency_p95", "p95"), Line("latency_p99", "p99")),
            threshold=(slo_p95, f"{slo_p95:g} s threshold"),
            log_scale=True,
        ),
        Chart(
            "knowledge.png",
            "Knowledge answers and fallbacks",
            "per second",
            (
                Line("answers_per_second", "answers/s"),
                Line("fallbacks_per_second", "fallbacks/s"),
                Line("fallback_ratio", "fallback ratio", 100, secondary=True),
            ),
            secondary_label="fallback ratio %",
        ),
    )


def _dates(points: Sequence[Point]) -> list[datetime]:
    return [datetime.fromtimestamp(timestamp, UTC) for timestamp, _ in points]


def _new_figure(title: str) -> tuple[Figure, Any]:
    figure = Figure(figsize=(10, 3.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontweight="bold")
    axes.grid(True, alpha=0.3)
    locator = mdates.AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return figure, axes


def _marked(points: Sequence[Point], step: float) -> list[int] | None:
    """Which points get a marker: all of a sparse series, else those with no neighbour one step away (a line needs
    two points, so a lone point would not be drawn at all)."""
    if len(points) <= SPARSE_POINTS:
        return None  # matplotlib: every point
    near = step * 1.5
    return [
        index
        for index, (timestamp, _) in enumerate(points)
        if (index == 0 or timestamp - points[index - 1][0] > near)
        and (index == len(points) - 1 or points[index + 1][0] - timestamp > near)
    ]


def chart_figure(chart: Chart, results: Results) -> tuple[Figure, list[str]] | None:
    """The chart as a Figure and the query keys it plotted; None when no line has data."""
    plotted = [line.key for line in chart.lines if results.points(line.key)]
    if not plotted:
        return None
    figure, axes = _new_figure(chart.title)
    secondary = axes.twinx() if any(line.secondary for line in chart.lines) else None
    handles = []
    for number, line in enumerate(chart.lines):
        points = results.points(line.key)
        if chart.log_scale:
            points = [(t, v) for t, v in points if v > 0]
        if not points:
            continue
        target = secondary if line.secondary and secondary is not None else axes
        (handle,) = target.plot(
            _dates(points),
            [value * line.scale for _, value in points],
            label=line.label,
            color=f"C{number}",  # one colour cycle across both axes
            linewidth=1.4,
            linestyle=":" if line.secondary else ("-", "--")[number % 2],  # coinciding lines stay visible
            marker="o",
            markersize=3,
            markevery=_marked(points, results.window.step),
        )
        handles.append(handle)
    if chart.threshold is not None:
        value, label = chart.threshold
        handles.append(axes.axhline(value, color="tab:red", linestyle="--", linewidth=1.2, label=label))
    if chart.log_scale:
        axes.set_yscale("log")
    else:
        axes.set_ylim(bottom=0)
    axes.set_ylabel(chart.ylabel)
    if secondary is not None:
        secondary.set_ylabel(chart.secondary_label)
        secondary.set_ylim(bottom=0)
    axes.set_xlim(results.window.start, results.window.end)
    axes.legend(handles=handles, loc="upper left", fontsize="small")
    return figure, plotted


def draw_chart(chart: Chart, results: Results, out: Path) -> list[str]:
    """Draw one chart; returns the query keys it plotted (empty: no data, nothing written)."""
    drawn = chart_figure(chart, results)
    if drawn is None:
        return []
    figure, plotted = drawn
    figure.savefig(out / chart.file)
    return plotted


def draw_alerts(alerts: list[AlertEpisodes], window: Window, out: Path, file: str = "alerts.png") -> bool:
    if not alerts:
        return False
    figure, axes = _new_figure("Alerts firing")
    figure.set_figheight(max(2.2, 1.2 + 0.45 * len(alerts)))
    names = []
    for row, alert in enumerate(alerts):
        bars = [
            (mdates.date2num(datetime.fromtimestamp(episode.since, UTC)), episode.seconds / 86400)
            for episode in alert.episodes
        ]
        color = "tab:red" if alert.labels.get("severity") == "critical" else "tab:orange"
        axes.broken_barh(bars, (row - 0.35, 0.7), color=color)
        # A few minutes in a week is narrower than a pixel: a marker at each start keeps every episode visible.
        axes.plot([start for start, _ in bars], [row] * len(bars), linestyle="none", marker="o", color=color)
        names.append(_alert_title(alert))
    axes.set_yticks(range(len(alerts)), names, fontsize="small")
    axes.set_ylim(-0.7, len(alerts) - 0.3)
    axes.invert_yaxis()
    axes.set_xlim(window.start, window.end)
    figure.savefig(out / file)
    return True


def _alert_title(alert: AlertEpisodes) -> str:
    where = alert.labels.get("instance") or alert.labels.get("otel_component_name") or ""
    return f"{alert.alertname} {where}".strip()
