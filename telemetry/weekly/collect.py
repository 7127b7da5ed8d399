"""Running every query of the catalogue over the report's range: the Results the rest of the report reads."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from telemetry.weekly.client import Point, PrometheusClient, Series
from telemetry.weekly.queries import QUERIES, Kind
from telemetry.weekly.windows import Window


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
