"""What the numbers mean: alert episodes and MTTR, SLO attainment per step, failed authentication by reason."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from telemetry import catalog
from telemetry.weekly.client import Series
from telemetry.weekly.collect import Results
from telemetry.weekly.queries import AUTH_REASON_LABEL

DEFAULT_SLO_P95_SECONDS = 2.0  # the monitoring guide's response-time threshold, also the ChatbotSlowResponses alert
DEFAULT_SLO_ERROR_RATIO = 0.01
DEFAULT_SLO_AVAILABILITY = 0.999  # uptime objective: share of successful scrapes


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
    the episode became active. An episode ends when that value changes or, where it is unknown, when evaluations stop
    finding the alert firing;
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
            before, now = started_by_time.get(previous), started_by_time.get(timestamp)
            if before is not None and now is not None:
                # The activation time tells episodes apart; a gap with the same one is a late evaluation of a busy
                # Prometheus, not a resolution.
                split = before != now
            else:
                split = timestamp - previous > interval * 1.5 or before != now
            if split:
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


def auth_failures(results: Results) -> tuple[float | None, list[tuple[str, float]]]:
    """Requests that failed authentication in the range (None: no such series), and the count of each reason."""
    found = [
        (item.labels.get(AUTH_REASON_LABEL, catalog.AUTH_OTHER), item.points[-1][1])
        for item in results.series.get("auth_failures_by_reason", [])
        if item.points
    ]
    if not found:
        return None, []
    by_reason = sorted(found, key=lambda pair: (-pair[1], pair[0]))
    return sum(count for _, count in by_reason), by_reason


def bucket_edges(seconds: float) -> tuple[float, float] | None:
    """The histogram bucket a quantile estimate falls into: Prometheus interpolates linearly inside it."""
    lower = 0.0
    for upper in catalog.DURATION_BUCKETS:
        if seconds <= upper:
            return lower, upper
        lower = upper
    return None
