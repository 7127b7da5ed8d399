"""One measurement: wrk's load against one target for the plan's duration, with the CPU and memory the target, the
load side and the rest of the machine used meanwhile."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.benchmark import wrk
from loadtest.benchmark.plan import TELEMETRY_TARGETS, BenchmarkPlan
from loadtest.benchmark.processes import CpuWindow, RssSampler, Service
from loadtest.rig.progress import BENCHMARK

EXPECTED_STATUS = {wrk.EXPECT_REPLIES: 200, wrk.CHANNEL: 201}
# No proxy may sit between the harness and 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class RunResult:
    target: str
    transport: str
    connections: int
    workers: int | None
    rate: float | None  # requested turns/s (paced), None: as fast as answered
    seconds: float
    requests: int
    ok: int
    failed: int
    turns_per_second: float
    latency_ms: dict[str, float]
    cpu_seconds: float
    cpu_ms_per_turn: float
    peak_rss_mb: float
    load_generator_cpu: float  # cores used by wrk, the receiver and the ingestion stand-in
    background_cpu: float  # cores used by anything else on the machine during the run
    replies_received: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    thread_cpu_ms_per_turn: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadGenerator:
    """wrk as the plan runs it: its text, channel id and conversations, on the load side's cores."""

    plan: BenchmarkPlan
    work_dir: Path
    cpus: Sequence[int] | None

    def send(
        self, url: str, transport: str, service_url: str, connections: int, seconds: float, rate: float | None
    ) -> wrk.WrkResult:
        return wrk.run_wrk(
            url,
            transport,
            service_url,
            self.work_dir,
            connections=connections,
            seconds=seconds,
            rate=rate,
            conversations=self.plan.conversations,
            channel_id=self.plan.channel_id,
            text=self.plan.text,
            cpus=self.cpus,
        )


@dataclass(frozen=True)
class Measurement:
    """What one measurement sends where: the target's process, the channel that receives its replies, the load."""

    service: Service
    receiver: Service
    service_url: str  # the receiver's, as the activities' serviceUrl
    target: str
    transport: str
    connections: int
    rate: float | None = None  # turns/s; None: as fast as answered
    workers: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.port}/api/messages"

    def describe(self) -> str:
        workers = f" {self.workers}w" if self.workers else ""
        pace = f" paced at {self.rate:.0f}/s" if self.rate else ""
        return f"{self.target}{workers} {self.transport} c={self.connections}{pace}"


def measure(load: LoadGenerator, what: Measurement) -> tuple[RunResult, int]:
    """Warm up (when the plan says so), then measure; the result and the requests sent, warm-up included."""
    plan = load.plan

    def send(seconds: float) -> wrk.WrkResult:
        return load.send(what.url, what.transport, what.service_url, what.connections, seconds, what.rate)

    sent = 0
    if plan.warmup >= 1:
        sent += send(plan.warmup).requests
    service, receiver = what.service, what.receiver
    replies_before = replies_received(receiver)
    usage_before, receiver_before = service.usage(), receiver.usage()
    threads_before = service.threads_cpu()
    window_before = CpuWindow.now()
    with RssSampler([service]).running() as rss:
        result = send(plan.duration)
    window_after = CpuWindow.now()
    usage_after, receiver_after = service.usage(), receiver.usage()
    threads_after = service.threads_cpu()
    replies = replies_received(receiver) - replies_before
    sent += result.requests
    wall = max(result.duration_s, 1e-9)
    cpu = max(usage_after.cpu_seconds - usage_before.cpu_seconds, 0.0)
    load_cpu = (window_after.own_seconds - window_before.own_seconds) + (
        receiver_after.cpu_seconds - receiver_before.cpu_seconds
    )
    busy = window_after.busy_seconds - window_before.busy_seconds
    ok = result.ok(EXPECTED_STATUS[what.transport])
    turns = max(result.requests, 1)
    per_thread = {
        tid: round((spent - threads_before.get(tid, 0.0)) / turns * 1000, 3)
        for tid, spent in threads_after.items()
        if spent - threads_before.get(tid, 0.0) > 0.001
    }
    run = RunResult(
        target=what.target,
        transport=what.transport,
        connections=what.connections,
        workers=what.workers,
        rate=round(what.rate, 1) if what.rate else None,
        seconds=round(wall, 2),
        requests=result.requests,
        ok=ok,
        failed=result.requests - ok + sum(result.errors.values()),
        turns_per_second=round(ok / wall, 1),
        latency_ms={key: round(value, 2) for key, value in result.latency_ms.items()},
        cpu_seconds=round(cpu, 3),
        cpu_ms_per_turn=round(cpu / turns * 1000, 3),
        peak_rss_mb=round(max(rss.peak, usage_after.rss_bytes) / 2**20, 1),
        load_generator_cpu=round(load_cpu / wall, 2),
        background_cpu=round(max(busy - cpu - load_cpu, 0.0) / wall, 2),
        replies_received=replies if what.transport == wrk.CHANNEL else None,
        statuses={str(status): count for status, count in sorted(result.statuses.items())},
        thread_cpu_ms_per_turn=per_thread if what.target in TELEMETRY_TARGETS and what.workers is None else {},
    )
    BENCHMARK.line(
        f"{what.describe()}: {run.turns_per_second:.0f} turns/s, p50 {run.latency_ms.get('p50', 0):.1f} ms, "
        f"p99 {run.latency_ms.get('p99', 0):.1f} ms, {run.cpu_ms_per_turn:.2f} ms CPU/turn"
        + (f", {run.failed} failed" if run.failed else "")
    )
    return run, sent


def get_text(url: str, timeout: float = 10.0) -> str:
    with _DIRECT.open(url, timeout=timeout) as response:
        return str(response.read().decode("utf-8"))


def replies_received(receiver: Service) -> int:
    """What the channel receiver counted so far (`loadtest/benchmark/receiver.py`)."""
    return int(json.loads(get_text(f"http://127.0.0.1:{receiver.port}/count"))["replies"])
