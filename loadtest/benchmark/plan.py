"""What a benchmark run measures (docs/performance.md): its targets and the plan the command line makes.

Targets:

- `ceiling`: a bare aiohttp handler that parses the activity and answers it (loadtest/benchmark/bare.py);
- `stock`: botbuilder 4.17.1's echo bot as its sample writes it (loadtest/benchmark/stock.py);
- `ours-off`: otel-chatbot with no telemetry at all (`create_app(settings)`: no providers, no middleware);
- `ours-on`: otel-chatbot as it runs in production (`python -m bot`, its start-up settings on), every turn traced
  (100 % sampling), exported to a local Application Insights ingestion stand-in, Prometheus metrics served and
  scraped;
- `ours-untuned`: `ours-on` without the start-up settings (`BOT_TUNE_RUNTIME=false`: no `gc.freeze()`, the
  default thread switch interval), to measure what they bring;
- `ours-sampled`: `ours-on` with the bot's default sampler, traces capped by rate (`microsoft.rate_limited`, 100
  traces/s): every turn traced up to that rate, beyond it (overload) only so many a second (metrics still count
  every turn);
- worker runs: `python -m bot --workers N`, full telemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtest.benchmark import wrk

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("ceiling", "stock", "ours-off", "ours-on", "ours-untuned", "ours-sampled")
TELEMETRY_TARGETS = ("ours-on", "ours-untuned", "ours-sampled", "ours-workers")
LABELS = {
    "ceiling": "bare aiohttp handler (ceiling)",
    "stock": "stock botbuilder 4.17.1 echo bot",
    "ours-off": "otel-chatbot, telemetry off",
    "ours-on": "otel-chatbot, full telemetry",
    "ours-untuned": "otel-chatbot, full telemetry, start-up settings off (BOT_TUNE_RUNTIME=false)",
    "ours-sampled": "otel-chatbot, full telemetry, traces sampled",
    "ours-workers": "otel-chatbot, full telemetry, worker processes (python -m bot --workers N)",
}


@dataclass
class BenchmarkPlan:
    out_dir: Path
    targets: tuple[str, ...] = TARGETS
    transports: tuple[str, ...] = wrk.TRANSPORTS
    connections: tuple[int, ...] = (1, 16, 64)
    warmup: float = 3.0
    duration: float = 10.0
    half_load: bool = True
    workers: tuple[int, ...] = (1, 2)
    worker_connections: int = 64
    conversations: int = 1024
    text: str = wrk.DEFAULT_TEXT
    channel_id: str = wrk.DEFAULT_CHANNEL_ID
    traces_per_second: float = 100.0


def parse_levels(text: str) -> tuple[int, ...]:
    levels = tuple(int(part) for part in text.split(",") if part.strip())
    if any(level < 1 or level > 1024 for level in levels):
        raise ValueError("connection counts must be between 1 and 1024")
    return levels


def ensure_subset(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return tuple(values)
