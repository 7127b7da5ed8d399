"""The weekly report: traffic, errors, latency, answers, alerts and SLO attainment, read from Prometheus.

    python -m telemetry.report [--prometheus URL] [--start ISO | --days 7] [--end ISO] [--step auto]
                               [--out DIR] [--slo-p95 2.0] [--slo-error-ratio 0.01]

Writes report.md, report.html (next to its PNG charts) and report.json (every series the charts were drawn from)
into --out. Exit codes: 0 written, 1 Prometheus refused a query, 2 Prometheus unreachable or bad arguments.
Every query is listed in QUERIES; progress goes to stderr, one line per query.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from pathlib import Path
from typing import Any

from matplotlib import dates as mdates
from matplotlib.figure import Figure

from telemetry import catalog

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
DEFAULT_DAYS = 7.0
DEFAULT_SLO_P95_SECONDS = 2.0  # the monitoring guide's response-time threshold, also the ChatbotSlowResponses alert
DEFAULT_SLO_ERROR_RATIO = 0.01
DEFAULT_SLO_AVAILABILITY = 0.999  # uptime objective: share of successful scrapes
SPARSE_POINTS = 60  # a series with at most this many points is drawn with a marker on every point
REQUEST_TIMEOUT_SECONDS = 30.0
TARGET_POINTS = 400  # auto step: about this many points per series (Prometheus allows 11,000)
MIN_RATE_WINDOW_SECONDS = 300  # rates over at least 5 minutes, as the recording rules and alerts use
NICE_STEPS_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
SCRAPE_JOB = "chatbot"  # the job name in infra/prometheus/prometheus.yml; the alert rules select it too
MESSAGES_ROUTE = "/api/messages"

EXIT_OK = 0
EXIT_QUERY_FAILED = 1
EXIT_UNREACHABLE = 2


class Kind(StrEnum):
    RANGE = "range"  # /api/v1/query_range over the report's range, one point per step
    INSTANT = "instant"  # /api/v1/query at the end of the range
    SAMPLES = "samples"  # /api/v1/query of a range vector at the end: the raw samples, one per rule evaluation


@dataclass(frozen=True)
class Query:
    """One PromQL query. `$window` is replaced by the rate window, `$range` by the whole report range."""

    key: str
    kind: Kind
    expr: str
    description: str


_TURNS = catalog.TURNS.prometheus_name
_TURN_ERRORS = f'{_TURNS}{{{catalog.OUTCOME.replace(".", "_")}="{catalog.OUTCOME_ERROR}"}}'
_HTTP = catalog.HTTP_SERVER_DURATION.prometheus_name
_ROUTE = f'{catalog.HTTP_ROUTE.replace(".", "_")}="{MESSAGES_ROUTE}"'
_REQUESTS = f"{_HTTP}_count{{{_ROUTE}}}"
_REQUESTS_5XX = f'{_HTTP}_count{{{_ROUTE}, {catalog.HTTP_STATUS.replace(".", "_")}=~"5.."}}'
_BUCKETS = f"{_HTTP}_bucket{{{_ROUTE}}}"
_ANSWERS = catalog.KNOWLEDGE_ANSWERS.prometheus_name
_FALLBACKS = catalog.KNOWLEDGE_FALLBACKS.prometheus_name
_RECEIVED = catalog.MESSAGES_RECEIVED.prometheus_name
_UP = f'up{{job="{SCRAPE_JOB}"}}'
_REJECTION = catalog.REJECTION_REASON.replace(".", "_")
_AUTH_FAILURES = f'{catalog.REQUESTS_REJECTED.prometheus_name}{{{_REJECTION}="{catalog.REJECT_UNAUTHORIZED}"}}'
_AUTH_REASON = catalog.AUTH_FAILURE.replace(".", "_")


def _quantile(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({_BUCKETS}[$window])))"


QUERIES: tuple[Query, ...] = (
    Query("turns_per_second", Kind.RANGE, f"sum(rate({_TURNS}[$window]))", "Turns per second, all instances"),
    Query(
        "requests_per_second",
        Kind.RANGE,
        f"sum(rate({_REQUESTS}[$window]))",
        f"HTTP requests to {MESSAGES_ROUTE} per second",
    ),
    Query(
        "turn_error_ratio",
        Kind.RANGE,
        f"(sum(rate({_TURN_ERRORS}[$window])) or vector(0)) / sum(rate({_TURNS}[$window]))",
        "Share of turns that ended with an unhandled exception",
    ),
    Query(
        "http_5xx_ratio",
        Kind.RANGE,
        f"(sum(rate({_REQUESTS_5XX}[$window])) or vector(0)) / sum(rate({_REQUESTS}[$window]))",
        f"Share of requests to {MESSAGES_ROUTE} answered with a 5xx status",
    ),
    Query("latency_p50", Kind.RANGE, _quantile(0.5), f"Median response time of {MESSAGES_ROUTE}"),
    Query("latency_p95", Kind.RANGE, _quantile(0.95), f"95th percentile response time of {MESSAGES_ROUTE}"),
    Query("latency_p99", Kind.RANGE, _quantile(0.99), f"99th percentile response time of {MESSAGES_ROUTE}"),
    Query(
        "answers_per_second",
        Kind.RANGE,
        f"sum(rate({_ANSWERS}[$window]))",
        "Questions answered from the knowledge base per second",
    ),
    Query(
        "fallbacks_per_second",
        Kind.RANGE,
        f"sum(rate({_FALLBACKS}[$window]))",
        "Messages the bot did not understand per second",
    ),
    Query(
        "fallback_ratio",
        Kind.RANGE,
        f"(sum(rate({_FALLBACKS}[$window])) or vector(0)) / sum(rate({_RECEIVED}[$window]))",
        "Share of received messages the bot did not understand",
    ),
    Query(
        "alerts_firing",
        Kind.SAMPLES,
        'ALERTS{alertstate="firing"}[$range]',
        "Every evaluation that found an alert firing (Prometheus' own alert state)",
    ),
    Query(
        "alerts_for_state",
        Kind.SAMPLES,
        "ALERTS_FOR_STATE[$range]",
        "When each active alert became active (its value): tells one episode from the next",
    ),
    Query(
        "latency_p95_range",
        Kind.INSTANT,
        f"histogram_quantile(0.95, sum by (le) (increase({_BUCKETS}[$range])))",
        f"95th percentile response time of {MESSAGES_ROUTE} over the whole range",
    ),
    Query("total_turns", Kind.INSTANT, f"sum(increase({_TURNS}[$range]))", "Turns in the range"),
    Query("failed_turns", Kind.INSTANT, f"sum(increase({_TURN_ERRORS}[$range]))", "Failed turns in the range"),
    Query("total_requests", Kind.INSTANT, f"sum(increase({_REQUESTS}[$range]))", "Requests in the range"),
    Query("total_answers", Kind.INSTANT, f"sum(increase({_ANSWERS}[$range]))", "Knowledge answers in the range"),
    Query("total_fallbacks", Kind.INSTANT, f"sum(increase({_FALLBACKS}[$range]))", "Fallbacks in the range"),
    Query(
        "availability",
        Kind.INSTANT,
        f"avg(avg_over_time({_UP}[$range]))",
        "Share of scrapes that succeeded, averaged over the instances",
    ),
    Query(
        "auth_failures_by_reason",
        Kind.INSTANT,
        f"sum by ({_AUTH_REASON}) (increase({_AUTH_FAILURES}[$range]))",
        "Requests that failed authentication (401) in the range, by reason",
    ),
    Query("instances", Kind.INSTANT, f"count(max_over_time({_UP}[$range]))", "Bot instances scraped in the range"),
)
QUERIES_BY_KEY = {query.key: query for query in QUERIES}


# ---- Prometheus HTTP API ------------------------------------------------------------------------------------------


class PrometheusUnreachable(Exception):
    """Prometheus did not answer (connection refused, DNS failure, timeout)."""


class PrometheusQueryError(Exception):
    """Prometheus answered with an error (bad query, overload, not Prometheus at all)."""


Point = tuple[float, float]  # (unix seconds, value)


@dataclass
class Series:
    labels: dict[str, str]
    points: list[Point]


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        return [
            Series(dict(item.get("metric", {})), _finite(item.get("values", []))) for item in data.get("result", [])
        ]

    def query(self, expr: str, at: float) -> list[Series]:
        data = self._get("/api/v1/query", {"query": expr, "time": at})
        result = data.get("result", [])
        if data.get("resultType") == "scalar":
            return [Series({}, _finite([result]))]
        if data.get("resultType") == "matrix":  # a range vector: every raw sample
            return [Series(dict(item.get("metric", {})), _finite(item.get("values", []))) for item in result]
        return [Series(dict(item.get("metric", {})), _finite([item["value"]])) for item in result]

    def _get(self, path: str, params: dict[str, str | float]) -> dict[str, Any]:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise PrometheusQueryError(
                f"Prometheus at {self.base_url} answered {error.code}: {_error_text(error.read())}"
            ) from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise PrometheusUnreachable(f"cannot reach Prometheus at {self.base_url}: {reason}") from error
        try:
            payload = json.loads(body)
        except ValueError as error:
            raise PrometheusQueryError(f"{self.base_url} did not answer like Prometheus (no JSON)") from error
        if not isinstance(payload, dict) or payload.get("status") != "success":
            raise PrometheusQueryError(f"Prometheus at {self.base_url} refused the query: {_error_text(body)}")
        data = payload.get("data")
        return data if isinstance(data, dict) else {}


def _error_text(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")[:300]
    if isinstance(payload, dict):
        return f"{payload.get('errorType', 'error')}: {payload.get('error', '')}"
    return str(payload)[:300]


def _finite(values: Iterable[Sequence[Any]]) -> list[Point]:
    """Prometheus sends values as strings, NaN when a quantile or ratio has nothing to divide: keep real numbers."""
    points = []
    for timestamp, raw in values:
        value = float(raw)
        if math.isfinite(value):
            points.append((float(timestamp), value))
    return points


# ---- the report's range -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    step: float  # seconds between points
    rate_window: int  # seconds each rate looks back
    note: str = ""  # what was adjusted (an --end in the future)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def substitute(self, expr: str) -> str:
        return expr.replace("$window", f"{self.rate_window}s").replace("$range", f"{max(1, round(self.seconds))}s")


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_step(text: str, range_seconds: float) -> float:
    """`auto` (about TARGET_POINTS points, rounded up to a readable step) or a duration such as 30s, 5m, 1h."""
    if text == "auto":
        wanted = range_seconds / TARGET_POINTS
        return float(next((nice for nice in NICE_STEPS_SECONDS if nice >= wanted), math.ceil(wanted)))
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"--step: {text!r} is neither 'auto' nor a duration like 15s, 5m or 1h")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError("--step must be positive")
    return seconds


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"{text!r} is not an ISO 8601 date or time (e.g. 2025-01-06T00:00:00Z)") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_window(
    start: str | None, days: float | None, end: str | None, step: str, now: datetime | None = None
) -> Window:
    now = now or datetime.now(UTC)
    end_at = parse_time(end) if end else now
    note = ""
    if end_at > now:  # Prometheus has nothing after now: a later end would draw an empty tail and skew "per day"
        note = f"--end {end_at.isoformat()} is in the future; the range ends now ({now.isoformat(timespec='seconds')})"
        end_at = now
    start_at = parse_time(start) if start else end_at - timedelta(days=DEFAULT_DAYS if days is None else days)
    if start_at >= end_at:
        raise ValueError(f"the start ({start_at.isoformat()}) must be before the end ({end_at.isoformat()})")
    seconds = (end_at - start_at).total_seconds()
    step_seconds = parse_step(step, seconds)
    if seconds / step_seconds > 11_000:
        raise ValueError(f"--step {step} gives more than 11,000 points over {seconds:.0f} s; use a larger step")
    return Window(start_at, end_at, step_seconds, max(MIN_RATE_WINDOW_SECONDS, math.ceil(step_seconds)), note)


# ---- collecting ----------------------------------------------------------------------------------------------------


@dataclass
class Results:
    window: Window
    prometheus: str
    series: dict[str, list[Series]] = field(default_factory=dict)

    def points(self, key: str) -> list[Point]:
        """The points of a query that returns one series (sum, ratio, quantile)."""
        found = self.series.get(key, [])
        return found[0].points if found else []

    def scalar(self, key: str) -> float | None:
        points = self.points(key)
        return points[-1][1] if points else None


def collect(client: PrometheusClient, window: Window, log: Any = sys.stderr) -> Results:
    results = Results(window, client.base_url)
    start, end = window.start.timestamp(), window.end.timestamp()
    print(
        f"report: Prometheus {client.base_url}, {window.start:%Y-%m-%d %H:%M:%S} to {window.end:%Y-%m-%d %H:%M:%S} "
        f"UTC, step {window.step:g} s, rate window {window.rate_window} s",
        file=log,
    )
    for number, query in enumerate(QUERIES, 1):
        expr = window.substitute(query.expr)
        began = time.monotonic()
        if query.kind is Kind.RANGE:
            found = client.query_range(expr, start, end, window.step)
        else:  # INSTANT, or SAMPLES: a range vector evaluated at the end
            found = client.query(expr, end)
        results.series[query.key] = found
        count = sum(len(item.points) for item in found)
        print(
            f"  [{number:2}/{len(QUERIES)}] {query.key}: {len(found)} series, {count} points "
            f"({time.monotonic() - began:.2f} s)",
            file=log,
        )
    return results


# ---- analysis ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    since: float  # the first evaluation that found the alert firing (unix seconds)
    until: float  # the evaluation that found it resolved, or the end of the range while it still fires
    resolved: bool

    @property
    def seconds(self) -> float:
        return self.until - self.since


@dataclass(frozen=True)
class AlertEpisodes:
    alertname: str
    labels: dict[str, str]
    episodes: list[Episode]

    @property
    def firing_seconds(self) -> float:
        return sum(episode.seconds for episode in self.episodes)

    @property
    def mttr_seconds(self) -> float | None:
        """Mean time from firing to resolution over the resolved episodes."""
        resolved = [episode.seconds for episode in self.episodes if episode.resolved]
        return sum(resolved) / len(resolved) if resolved else None


def _alert_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in {"__name__", "alertstate"}))


def _median_spacing(series: Iterable[Series]) -> float | None:
    gaps = sorted(
        later - earlier for item in series for (earlier, _), (later, _) in pairwise(item.points) if later > earlier
    )
    return gaps[len(gaps) // 2] if gaps else None


def alert_episodes(firing: list[Series], for_state: list[Series], end: float) -> list[AlertEpisodes]:
    """Firing episodes from Prometheus' raw alert state: `firing` holds every evaluation that found an alert firing
    (ALERTS{alertstate="firing"}[range]), `for_state` the same evaluations' ALERTS_FOR_STATE, whose value is the time
    the episode became active. An episode ends when that value changes or evaluations stop finding the alert firing;
    it was resolved at the next evaluation (one evaluation interval after its last firing sample), unless that is
    past `end`: then it is still firing and counted up to `end`."""
    interval = _median_spacing(firing) or _median_spacing(for_state) or 0.0
    active_at = {_alert_key(item.labels): dict(item.points) for item in for_state}
    found = []
    for item in firing:
        if not item.points:
            continue
        started_by_time = active_at.get(_alert_key(item.labels), {})
        times = sorted(timestamp for timestamp, _ in item.points)
        runs: list[list[float]] = [[times[0]]]
        for previous, timestamp in pairwise(times):
            new_activation = started_by_time.get(timestamp) != started_by_time.get(previous)
            if timestamp - previous > interval * 1.5 or new_activation:
                runs.append([])
            runs[-1].append(timestamp)
        episodes = []
        for run in runs:
            resolved_at = run[-1] + interval
            still_firing = resolved_at >= end
            episodes.append(Episode(run[0], end if still_firing else resolved_at, not still_firing))
        labels = {k: v for k, v in item.labels.items() if k not in {"__name__", "alertname", "alertstate"}}
        found.append(AlertEpisodes(item.labels.get("alertname", "?"), labels, episodes))
    return sorted(found, key=lambda alert: (-alert.firing_seconds, alert.alertname))


def overall_mttr(alerts: Sequence[AlertEpisodes]) -> tuple[float | None, int]:
    """Mean time to resolution over every resolved episode of every alert, and how many episodes that is."""
    resolved = [episode.seconds for alert in alerts for episode in alert.episodes if episode.resolved]
    return (sum(resolved) / len(resolved) if resolved else None), len(resolved)


@dataclass(frozen=True)
class SloSummary:
    steps: int  # steps with traffic (a p95 exists)
    latency_good: int
    errors_good: int
    both_good: int
    total_turns: float | None
    failed_turns: float | None
    availability: float | None

    def share(self, good: int) -> float | None:
        return good / self.steps if self.steps else None


def slo_summary(results: Results, slo_p95: float, slo_error_ratio: float) -> SloSummary:
    p95 = dict(results.points("latency_p95"))
    errors = dict(results.points("turn_error_ratio"))
    latency_good = errors_good = both_good = 0
    for timestamp, value in p95.items():
        fast = value < slo_p95
        clean = errors.get(timestamp, 0.0) < slo_error_ratio  # no turns in the window: no failed turns either
        latency_good += fast
        errors_good += clean
        both_good += fast and clean
    return SloSummary(
        steps=len(p95),
        latency_good=latency_good,
        errors_good=errors_good,
        both_good=both_good,
        total_turns=results.scalar("total_turns"),
        failed_turns=results.scalar("failed_turns"),
        availability=results.scalar("availability"),
    )


# ---- charts --------------------------------------------------------------------------------------------------------


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
            threshold=(slo_error_ratio * 100, f"objective {_percent(slo_error_ratio, 2)}"),
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


# ---- writing -------------------------------------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: tuple[list[str], list[list[str]]] | None = None
    image: str | None = None
    code: bool = False  # table cells are code (queries)


def _number(value: float | None, digits: int = 0) -> str:
    return "no data" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None, digits: int = 2) -> str:
    return "no data" if value is None else f"{value * 100:.{digits}f} %"


def _estimate(value: float | None, digits: int = 0) -> str:
    """A count from increase(), which extrapolates to the edges of the range: close, not exact."""
    return "no data" if value is None else f"≈ {value:,.{digits}f}"


def bucket_edges(seconds: float) -> tuple[float, float] | None:
    """The histogram bucket a quantile estimate falls into: Prometheus interpolates linearly inside it."""
    lower = 0.0
    for upper in catalog.DURATION_BUCKETS:
        if seconds <= upper:
            return lower, upper
        lower = upper
    return None


def _quantile_estimate(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    edges = bucket_edges(seconds)
    where = f"between the bucket edges {edges[0]:g} s and {edges[1]:g} s" if edges else "above the last bucket"
    return f"≈ {seconds:.3f} s (histogram estimate, {where})"


def _met(value: float | None, good: bool) -> str:
    return "no data" if value is None else ("met" if good else "missed")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _range_stats(points: Sequence[Point], scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
    if not points:
        return "no data"
    values = [value * scale for _, value in points]
    return (
        f"mean {sum(values) / len(values):.{digits}f}{unit}, max {max(values):.{digits}f}{unit} "
        f"at {_utc(points[values.index(max(values))][0])} UTC"
    )


@dataclass(frozen=True)
class Kpi:
    """One of the seed's key figures against its objective."""

    name: str
    value: float | None
    shown: str
    objective: str
    met: str


def kpis(
    results: Results, alerts: Sequence[AlertEpisodes], slo_p95: float, slo_error_ratio: float, slo_availability: float
) -> list[Kpi]:
    uptime = results.scalar("availability")
    total, failed = results.scalar("total_turns"), results.scalar("failed_turns")
    error_rate = (failed or 0.0) / total if total else None
    p95 = results.scalar("latency_p95_range")
    mttr, resolved = overall_mttr(alerts)
    return [
        Kpi(
            "Uptime (successful scrapes)",
            uptime,
            _percent(uptime, 3),
            f"≥ {_percent(slo_availability, 1)}",
            _met(uptime, uptime is not None and uptime >= slo_availability),
        ),
        Kpi(
            "Error rate (failed turns / turns)",
            error_rate,
            _percent(error_rate),
            f"< {_percent(slo_error_ratio, 2)}",
            _met(error_rate, error_rate is not None and error_rate < slo_error_ratio),
        ),
        Kpi(
            f"p95 response time of {MESSAGES_ROUTE}",
            p95,
            _quantile_estimate(p95),
            f"< {slo_p95:g} s",
            _met(p95, p95 is not None and p95 < slo_p95),
        ),
        Kpi(
            "MTTR (alert firing → resolved)",
            mttr,
            "no alert resolved" if mttr is None else f"{_duration(mttr)} over {resolved} resolved episodes",
            "as short as possible",
            "",
        ),
    ]


def auth_failures(results: Results) -> tuple[float | None, list[tuple[str, float]]]:
    """Requests that failed authentication in the range (None: no such series), and the count of each reason."""
    found = [
        (item.labels.get(_AUTH_REASON, catalog.AUTH_OTHER), item.points[-1][1])
        for item in results.series.get("auth_failures_by_reason", [])
        if item.points
    ]
    if not found:
        return None, []
    by_reason = sorted(found, key=lambda pair: (-pair[1], pair[0]))
    return sum(count for _, count in by_reason), by_reason


def security_lines(results: Results) -> list[str]:
    total, by_reason = auth_failures(results)
    if total is None or round(total) == 0:
        return ["No request failed authentication in this range."]
    reasons = ", ".join(f"{reason} {_estimate(count)}" for reason, count in by_reason if round(count) > 0)
    return [
        f"Requests that failed authentication (401): {_estimate(total)} (estimated); by reason: {reasons}.",
        "A real channel's tokens do not fail: see the runbook ChatbotAuthFailureSurge for what each reason means.",
    ]


def build_sections(
    results: Results,
    slo: SloSummary,
    alerts: list[AlertEpisodes],
    charts: dict[str, list[str]],
    slo_p95: float,
    slo_error_ratio: float,
    key_figures: Sequence[Kpi] = (),
) -> list[Section]:
    window = results.window
    figures = Section(
        "Key figures against objectives",
        [
            "Over the whole range. Counts from `increase()` are estimates (marked ≈: Prometheus extrapolates to the "
            "edges of the range), and percentiles are estimated from histogram buckets."
        ],
        table=(
            ["Measure", "Value", "Objective", "Result"],
            [[kpi.name, kpi.shown, kpi.objective, kpi.met] for kpi in key_figures],
        ),
    )
    failed_share = (
        slo.failed_turns / slo.total_turns
        if slo.total_turns and slo.failed_turns is not None and slo.total_turns > 0
        else None
    )
    summary = Section(
        "SLO attainment",
        [
            f"Objectives: p95 response time of `{MESSAGES_ROUTE}` below {slo_p95:g} s and turn error ratio below "
            f"{_percent(slo_error_ratio, 2)}, checked at each of the {slo.steps} evaluation steps that had traffic "
            f"(step {window.step:g} s, rates over {window.rate_window} s)."
        ],
        table=(
            ["Measure", "Value"],
            [
                ["Steps meeting both objectives", _percent(slo.share(slo.both_good))],
                [f"Steps with p95 < {slo_p95:g} s", _percent(slo.share(slo.latency_good))],
                [f"Steps with error ratio < {_percent(slo_error_ratio, 2)}", _percent(slo.share(slo.errors_good))],
                ["Turns (estimated)", _estimate(slo.total_turns)],
                ["Failed turns (estimated)", f"{_estimate(slo.failed_turns)} ({_percent(failed_share)})"],
                ["Availability (successful scrapes of the bot)", _percent(slo.availability, 3)],
                ["Instances seen", _number(results.scalar("instances"))],
                ["Alerts fired", str(len(alerts))],
            ],
        ),
    )
    sections = [figures, summary] if key_figures else [summary]

    def chart_section(title: str, file: str, lines: list[str]) -> None:
        section = Section(title, lines)
        if charts.get(file):
            section.image = file
        else:
            section.paragraphs.append("No data in this range.")
        sections.append(section)

    chart_section(
        "Traffic",
        "traffic.png",
        [
            f"Turns per second: {_range_stats(results.points('turns_per_second'))}.",
            f"Requests per second: {_range_stats(results.points('requests_per_second'))}.",
            f"Requests in the range: {_estimate(results.scalar('total_requests'))} (estimated).",
        ],
    )
    chart_section(
        "Error ratio",
        "errors.png",
        [
            f"Failed turns: {_range_stats(results.points('turn_error_ratio'), 100, ' %', 2)}.",
            f"HTTP 5xx: {_range_stats(results.points('http_5xx_ratio'), 100, ' %', 2)}.",
        ],
    )
    chart_section(
        "Latency",
        "latency.png",
        [
            "Percentiles are estimated from the histogram's buckets (linear inside a bucket).",
            *(f"p{q}: {_range_stats(results.points(f'latency_p{q}'), 1, ' s')}." for q in ("50", "95", "99")),
            f"p95 over the whole range: {_quantile_estimate(results.scalar('latency_p95_range'))}.",
        ],
    )
    chart_section(
        "Answers and fallbacks",
        "knowledge.png",
        [
            f"Knowledge answers: {_estimate(results.scalar('total_answers'))}; "
            f"fallbacks: {_estimate(results.scalar('total_fallbacks'))} (estimated).",
            f"Fallback ratio: {_range_stats(results.points('fallback_ratio'), 100, ' %', 1)}.",
        ],
    )
    sections.append(Section("Security", security_lines(results)))
    alert_section = Section("Alerts fired")
    if alerts:
        alert_section.image = "alerts.png" if charts.get("alerts.png") else None
        alert_section.paragraphs.append(
            "From Prometheus' own alert state: every rule evaluation that found the alert firing "
            "(`ALERTS`), episodes told apart by `ALERTS_FOR_STATE`. An episode resolves at the first evaluation "
            "that no longer finds it firing; MTTR is the mean firing time of the resolved episodes."
        )
        alert_section.table = (
            ["Alert", "Severity", "Instance", "Times fired", "First fired (UTC)", "Firing in total", "MTTR", "Open"],
            [
                [
                    alert.alertname,
                    alert.labels.get("severity", ""),
                    alert.labels.get("instance", alert.labels.get("otel_component_name", "")),
                    str(len(alert.episodes)),
                    _utc(alert.episodes[0].since),
                    _duration(alert.firing_seconds),
                    "not resolved" if alert.mttr_seconds is None else _duration(alert.mttr_seconds),
                    "still firing" if not alert.episodes[-1].resolved else "",
                ]
                for alert in alerts
            ],
        )
    else:
        alert_section.paragraphs.append("No alert fired in this range.")
    sections.append(alert_section)
    sections.append(
        Section(
            "Queries",
            ["Every number above comes from these PromQL queries (`$window` and `$range` filled in)."],
            table=(["Key", "PromQL"], [[query.key, window.substitute(query.expr)] for query in QUERIES]),
            code=True,
        )
    )
    return sections


def _md_cell(text: str, code: bool) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if code else text


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", subtitle, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.image:
            lines += [f"![{section.title}]({section.image})", ""]
        if section.table:
            headers, rows = section.table
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            for row in rows:
                cells = [row[0], *(_md_cell(cell, section.code) for cell in row[1:])]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


_INLINE_CODE = re.compile(r"`([^`]+)`")

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1040px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f4f4f4; text-align: left; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 1px 3px; font-size: 0.9em; }
"""


def _html_text(text: str) -> str:
    return _INLINE_CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{_html_text(subtitle)}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{_html_text(paragraph)}</p>" for paragraph in section.paragraphs]
        if section.image:
            parts.append(f'<p><img src="{html.escape(section.image)}" alt="{html.escape(section.title)}"></p>')
        if section.table:
            headers, rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>")
            for row in rows:
                cells = [html.escape(row[0])] + [
                    f"<code>{html.escape(cell)}</code>" if section.code else html.escape(cell) for cell in row[1:]
                ]
                parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    results: Results,
    out: Path,
    slo_p95: float,
    slo_error_ratio: float,
    slo_availability: float = DEFAULT_SLO_AVAILABILITY,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    window = results.window
    charts: dict[str, list[str]] = {}
    for chart in chart_specs(slo_p95, slo_error_ratio):
        plotted = draw_chart(chart, results, out)
        if plotted:
            charts[chart.file] = plotted
    alerts = alert_episodes(
        results.series.get("alerts_firing", []), results.series.get("alerts_for_state", []), window.end.timestamp()
    )
    if draw_alerts(alerts, window, out):
        charts["alerts.png"] = ["alerts_firing"]
    slo = slo_summary(results, slo_p95, slo_error_ratio)

    title = "Chatbot weekly report"
    subtitle = (
        f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC, from Prometheus at `{results.prometheus}`."
    )
    key_figures = kpis(results, alerts, slo_p95, slo_error_ratio, slo_availability)
    if window.note:
        subtitle += f" Note: {window.note}."
    sections = build_sections(results, slo, alerts, charts, slo_p95, slo_error_ratio, key_figures)
    (out / "report.md").write_text(render_markdown(title, subtitle, sections), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, subtitle, sections), encoding="utf-8")

    summary: dict[str, Any] = {
        "prometheus": results.prometheus,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "step_seconds": window.step,
        "rate_window_seconds": window.rate_window,
        "slo": {
            "p95_seconds": slo_p95,
            "error_ratio": slo_error_ratio,
            "steps_with_traffic": slo.steps,
            "steps_meeting_both": slo.both_good,
            "attainment": slo.share(slo.both_good),
            "total_turns": slo.total_turns,
            "failed_turns": slo.failed_turns,
            "availability": slo.availability,
        },
        "charts": charts,
        "kpis": {
            kpi.name: {"value": kpi.value, "shown": kpi.shown, "objective": kpi.objective, "result": kpi.met}
            for kpi in key_figures
        },
        "mttr_seconds": overall_mttr(alerts)[0],
        "auth_failures": dict(auth_failures(results)[1]),
        "alerts": [
            {
                "alertname": alert.alertname,
                "labels": alert.labels,
                "mttr_seconds": alert.mttr_seconds,
                "episodes": [
                    {"since": episode.since, "until": episode.until, "resolved": episode.resolved}
                    for episode in alert.episodes
                ],
            }
            for alert in alerts
        ],
        "queries": {query.key: window.substitute(query.expr) for query in QUERIES},
        "series": {
            key: [{"labels": item.labels, "points": item.points} for item in found]
            for key, found in results.series.items()
        },
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


# ---- command line --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.report",
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


if __name__ == "__main__":
    sys.exit(main())
