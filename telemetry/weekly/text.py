"""How the report writes numbers: counts, percentages, estimates, durations, times and a series' summary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from telemetry.weekly.analysis import bucket_edges
from telemetry.weekly.client import Point


def number(value: float | None, digits: int = 0) -> str:
    return "no data" if value is None else f"{value:,.{digits}f}"


def percent(value: float | None, digits: int = 2) -> str:
    return "no data" if value is None else f"{value * 100:.{digits}f} %"


def estimate(value: float | None, digits: int = 0) -> str:
    """A count from increase(), which extrapolates to the edges of the range: close, not exact."""
    return "no data" if value is None else f"≈ {value:,.{digits}f}"


def quantile_estimate(seconds: float | None) -> str:
    if seconds is None:
        return "no data"
    edges = bucket_edges(seconds)
    where = f"between the bucket edges {edges[0]:g} s and {edges[1]:g} s" if edges else "above the last bucket"
    return f"≈ {seconds:.3f} s (histogram estimate, {where})"


def met(value: float | None, good: bool) -> str:
    return "no data" if value is None else ("met" if good else "missed")


def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def range_stats(points: Sequence[Point], scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
    if not points:
        return "no data"
    values = [value * scale for _, value in points]
    return (
        f"mean {sum(values) / len(values):.{digits}f}{unit}, max {max(values):.{digits}f}{unit} "
        f"at {utc(points[values.index(max(values))][0])} UTC"
    )
