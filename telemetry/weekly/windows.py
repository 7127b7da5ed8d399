"""The report's time range: start, end, step between points and the window each rate looks back over."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_DAYS = 7.0
TARGET_POINTS = 400  # auto step: about this many points per series (Prometheus allows 11,000)
MIN_RATE_WINDOW_SECONDS = 300  # rates over at least 5 minutes, as the recording rules and alerts use
NICE_STEPS_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


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
