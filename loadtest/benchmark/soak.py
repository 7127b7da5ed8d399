"""The soak run: one target at half of its maximum throughput for a long time, its memory sampled throughout.

`python -m loadtest.benchmark --soak 600` (docs/performance.md): measures the maximum for a few seconds (unless
`--soak-rate` gives the rate), warms up at half of it, then keeps that pace for the soak and reports how much the
resident memory grew after the warm-up. Writes soak.json, soak.md and soak-rss.csv.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.benchmark import wrk
from loadtest.benchmark.machine import machine
from loadtest.benchmark.plan import LABELS, BenchmarkPlan
from loadtest.benchmark.processes import RssSampler
from loadtest.benchmark.run import Benchmark
from loadtest.rig.progress import BENCHMARK

TARGET_RSS_GROWTH = 0.10
PROBE_SECONDS = 10.0
PROBE_CONNECTIONS = 64
SOAK_CONNECTIONS = 32


@dataclass
class SoakResult:
    target: str
    transport: str
    rate: float
    warmup_seconds: float
    seconds: float
    requests: int
    ok: int
    turns_per_second: float
    latency_ms: dict[str, float]
    rss_after_warmup_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    rss_growth: float
    met: bool


def run_soak(plan: BenchmarkPlan, target: str, seconds: float, warmup: float, rate: float | None) -> dict[str, Any]:
    bench = Benchmark(plan)
    transport = plan.transports[0]
    with contextlib.ExitStack() as stack:
        fixtures = bench.prepare(stack)
        service, _ = bench.start(target, target, None, fixtures)
        stack.callback(service.stop)
        url = f"http://127.0.0.1:{service.port}/api/messages"

        def load(duration: float, connections: int, pace: float | None) -> wrk.WrkResult:
            return bench.load.send(url, transport, fixtures.service_url, connections, duration, pace)

        if rate is None:
            probe = load(PROBE_SECONDS, PROBE_CONNECTIONS, None)
            rate = probe.per_second / 2
            BENCHMARK.line(f"{target}: maximum {probe.per_second:.0f} turns/s; soaking at {rate:.0f} turns/s")
        if warmup >= 1:
            load(warmup, SOAK_CONNECTIONS, rate)
        baseline = service.usage().rss_bytes
        started = time.monotonic()
        sampler = RssSampler([service], interval=max(1.0, min(5.0, seconds / 60)))
        with sampler.running():
            result = load(seconds, SOAK_CONNECTIONS, rate)
        end = service.usage().rss_bytes
        BENCHMARK.line(f"soak of {time.monotonic() - started:.0f} s done")
    growth = (end - baseline) / baseline if baseline else 0.0
    ok = result.ok(200 if transport == wrk.EXPECT_REPLIES else 201)
    soak = SoakResult(
        target=target,
        transport=transport,
        rate=round(rate, 1),
        warmup_seconds=warmup,
        seconds=round(result.duration_s, 1),
        requests=result.requests,
        ok=ok,
        turns_per_second=round(ok / max(result.duration_s, 1e-9), 1),
        latency_ms={key: round(value, 2) for key, value in result.latency_ms.items()},
        rss_after_warmup_mb=round(baseline / 2**20, 1),
        rss_end_mb=round(end / 2**20, 1),
        rss_peak_mb=round(sampler.peak / 2**20, 1),
        rss_growth=round(growth, 4),
        met=growth <= TARGET_RSS_GROWTH and ok == result.requests,
    )
    rss_csv = plan.out_dir / "soak-rss.csv"
    rss_csv.write_text(
        "seconds,rss_mb\n" + "".join(f"{t:.1f},{rss / 2**20:.1f}\n" for t, rss in sampler.samples), encoding="utf-8"
    )
    return {"machine": machine(), "label": LABELS.get(target, target), "soak": asdict(soak)}


def soak_markdown(data: dict[str, Any], command: str) -> str:
    soak = data["soak"]
    latency = soak["latency_ms"]
    verdict = "met" if soak["met"] else "**not met**"
    return "\n".join(
        [
            "# otel-chatbot soak",
            "",
            f"- command: `{command}`",
            f"- machine: {data['machine']['cpu_model']}, {data['machine']['cores']} cores, Python "
            f"{data['machine']['python']}",
            f"- target: {data['label']}, {soak['transport']}, paced at {soak['rate']:g} turns/s (half of the maximum)",
            "",
            "| warm-up s | soak s | turns | failed | turns/s | p50 ms | p99 ms | RSS after warm-up MB | RSS at end MB "
            "| peak MB | growth | goal <= 10 % |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {soak['warmup_seconds']:g} | {soak['seconds']:g} | {soak['requests']} | "
            f"{soak['requests'] - soak['ok']} | {soak['turns_per_second']:g} | {latency.get('p50', 0):.1f} | "
            f"{latency.get('p99', 0):.1f} | {soak['rss_after_warmup_mb']:g} | {soak['rss_end_mb']:g} | "
            f"{soak['rss_peak_mb']:g} | {soak['rss_growth']:+.1%} | {verdict} |",
            "",
            "RSS every few seconds: soak-rss.csv.",
            "",
        ]
    )


def write(out_dir: Path, data: dict[str, Any], command: str) -> None:
    import json

    data["command"] = command
    (out_dir / "soak.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out_dir / "soak.md").write_text(soak_markdown(data, command), encoding="utf-8")
