"""A small client of the Prometheus HTTP API (instant and range queries), on the standard library."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"
REQUEST_TIMEOUT_SECONDS = 30.0


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
