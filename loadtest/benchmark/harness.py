"""One benchmark run: every target, on every transport, at fixed concurrency levels, then each at half of its maximum
throughput, then otel-chatbot with 1 and 2 worker processes; measured with wrk on its own core.

Targets (docs/performance.md):

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

import contextlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from loadtest.benchmark import wrk
from loadtest.benchmark.processes import CpuWindow, RssSampler, Service, free_port, pin, usable_cpus
from loadtest.benchmark.summary import summarize
from loadtest.localbot import bot_environment
from loadtest.standins import Envelope, IngestionStandIn, envelope_base_type

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
EXPECTED_STATUS = {wrk.EXPECT_REPLIES: 200, wrk.CHANNEL: 201}
HASH_KEY = "benchmark-hash-key"  # fixed, so the bot does not generate one (and say so) at every start
P99_CONNECTIONS = 16


def say(message: str) -> None:
    print(f"[benchmark] {message}", flush=True)


@dataclass
class Plan:
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


@dataclass
class TargetCheck:
    """What the target said about itself after its runs (otel-chatbot only): exact counts, no silent loss."""

    target: str
    workers: int | None
    requests_sent: int
    in_flight_allowance: int
    prometheus_turns: float | None = None
    prometheus_series_per_worker: dict[str, int] = field(default_factory=dict)
    request_envelopes: int | None = None
    envelopes_by_type: dict[str, int] = field(default_factory=dict)
    role_instances: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class CountingStandIn(IngestionStandIn):
    """The ingestion stand-in, keeping counts instead of envelopes (a long run would hold millions)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.turn_requests = 0
        self.role_instances: set[str] = set()

    def store(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            kind = envelope_base_type(envelope) or "unknown"
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "RequestData":
                base = envelope.get("data", {}).get("baseData", {})
                if base.get("name") == "POST /api/messages":
                    self.turn_requests += 1
            instance = (envelope.get("tags") or {}).get("ai.cloud.roleInstance")
            if instance and len(self.role_instances) < 64:
                self.role_instances.add(str(instance))

    def snapshot(self) -> tuple[dict[str, int], int, list[str]]:
        with self._lock:
            return dict(self.counts), self.turn_requests, sorted(self.role_instances)


@dataclass
class Layout:
    """Which cores the target gets and which the load side (wrk, receiver, stand-in, this process) gets."""

    all_cpus: list[int]
    target_cpus: list[int] | None
    load_cpus: list[int] | None
    note: str

    @classmethod
    def choose(cls) -> Layout:
        cpus = usable_cpus()
        if len(cpus) < 2:
            return cls(cpus, None, None, f"{len(cpus)} core: target and load generator share it")
        note = f"target on core {cpus[0]}, load generator on cores {cpus[1:]}; worker processes on all cores"
        return cls(cpus, cpus[:1], cpus[1:], note)


class Benchmark:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.layout = Layout.choose()
        self.runs: list[RunResult] = []
        self.checks: list[TargetCheck] = []
        self.work_dir = plan.out_dir / "work"
        self.logs_dir = plan.out_dir / "logs"
        self.started = datetime.now(UTC)

    # -- orchestration

    def prepare(self, stack: contextlib.ExitStack) -> tuple[CountingStandIn, Service, str]:
        """Folders, this process on the load generator's cores, the ingestion stand-in and the channel (stopped
        with `stack`): what every run needs. Returns the stand-in, the channel and the channel's serviceUrl."""
        for directory in (self.work_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        pin(self.layout.load_cpus)
        stand_in = stack.enter_context(CountingStandIn())
        receiver_port = free_port()
        receiver = Service(
            "receiver",
            [sys.executable, "-m", "loadtest.benchmark.receiver", str(receiver_port)],
            self._environment(stand_in),
            self.logs_dir / "receiver.log",
            PROJECT_ROOT,
            self.layout.load_cpus,
            receiver_port,
        )
        stack.callback(receiver.stop)
        receiver.wait_ready(receiver_port, "/count")
        return stand_in, receiver, f"http://127.0.0.1:{receiver_port}"

    def run(self) -> dict[str, Any]:
        plan = self.plan
        if wrk.find_wrk() is None:
            raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
        say(f"layout: {self.layout.note}; results in {plan.out_dir}")
        with contextlib.ExitStack() as stack:
            stand_in, receiver, service_url = self.prepare(stack)
            for target in plan.targets:
                self._bench_target(target, None, stand_in, receiver, service_url)
            for count in plan.workers:
                self._bench_target("ours-workers", count, stand_in, receiver, service_url)
        return self.results()

    def _bench_target(
        self,
        target: str,
        workers: int | None,
        stand_in: CountingStandIn,
        receiver: Service,
        service_url: str,
    ) -> None:
        plan = self.plan
        name = target if workers is None else f"ours-{workers}w"
        port = free_port()
        metrics_port = free_port() if target in TELEMETRY_TARGETS else None
        # Worker processes use every core (the load generator shares them); one process gets a core of its own.
        cpus = self.layout.all_cpus if workers is not None else self.layout.target_cpus
        command, ready_path = self._command(target, port, workers)
        env = self._environment(stand_in, port, metrics_port, name, target)
        say(f"starting {name}: {LABELS[target]}" + (f", {workers} worker process(es)" if workers else ""))
        service = Service(name, command, env, self.logs_dir / f"{name}.log", self.work_dir, cpus, port)
        sent, allowance = 0, 0
        counts_before, requests_before, instances_before = stand_in.snapshot()
        try:
            if workers is not None and metrics_port is not None:
                # The supervisor serves /metrics once every worker serves; the port answers as soon as one does.
                service.wait_ready(metrics_port, "/metrics")
            service.wait_ready(port, ready_path)
            transports = (wrk.EXPECT_REPLIES,) if workers is not None else plan.transports
            levels = (plan.worker_connections,) if workers is not None else plan.connections
            for transport in transports:
                measured: list[RunResult] = []
                for connections in levels:
                    result, requests = self._measure(
                        service, receiver, target, transport, connections, None, workers, service_url
                    )
                    measured.append(result)
                    sent += requests
                    allowance += 2 * connections
                if plan.half_load and workers is None and measured:
                    best = max(measured, key=lambda run: run.turns_per_second)
                    rate = best.turns_per_second / 2
                    if rate > 0:
                        connections = max(P99_CONNECTIONS, min(64, int(rate / 20) + 1))
                        _, requests = self._measure(
                            service, receiver, target, transport, connections, rate, workers, service_url
                        )
                        sent += requests
                        allowance += 2 * connections
            check = TargetCheck(target=name, workers=workers, requests_sent=sent, in_flight_allowance=allowance)
            if metrics_port is not None:
                self._check_metrics(check, metrics_port)
        finally:
            code = service.stop()
            if code not in (0, None, -15):
                say(f"{name} exited with code {code}; see {service.log_path}")
        if target in TELEMETRY_TARGETS:
            self._check_export(check, stand_in, counts_before, requests_before, instances_before)
            self.checks.append(check)
            for problem in check.problems:
                say(f"{name}: {problem}")

    def _command(self, target: str, port: int, workers: int | None) -> tuple[list[str], str | None]:
        python = sys.executable
        if target in TELEMETRY_TARGETS:
            return [python, "-m", "bot", *(["--workers", str(workers)] if workers is not None else [])], "/healthz"
        served = "bare" if target == "ceiling" else target
        return [python, "-m", "loadtest.benchmark.serve", served, str(port)], None

    def _environment(
        self,
        stand_in: CountingStandIn,
        port: int = 0,
        metrics_port: int | None = None,
        name: str = "service",
        target: str | None = None,
    ) -> dict[str, str]:
        storage = self.work_dir / f"{name}-telemetry-storage"
        env = bot_environment(os.environ, port, metrics_port or 0, stand_in.connection_string, storage)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
        env["BOT_TELEMETRY_HASH_KEY"] = HASH_KEY
        env.pop("PYTHONASYNCIODEBUG", None)
        env.pop("PYTHONTRACEMALLOC", None)
        # What each target is, whatever the caller's environment says (worker runs pass --workers).
        env["BOT_WORKERS"] = "1"
        env.pop("BOT_STATE_DB", None)
        env["BOT_TUNE_RUNTIME"] = "false" if target == "ours-untuned" else "true"
        if target == "ours-sampled":
            env["OTEL_TRACES_SAMPLER"] = "microsoft.rate_limited"
            env["OTEL_TRACES_SAMPLER_ARG"] = f"{self.plan.traces_per_second:g}"
        return env

    # -- one measurement

    def _measure(
        self,
        service: Service,
        receiver: Service,
        target: str,
        transport: str,
        connections: int,
        rate: float | None,
        workers: int | None,
        service_url: str,
    ) -> tuple[RunResult, int]:
        plan = self.plan
        url = f"http://127.0.0.1:{service.port}/api/messages"

        def load(seconds: float) -> wrk.WrkResult:
            return wrk.run_wrk(
                url,
                transport,
                service_url,
                self.work_dir,
                connections=connections,
                seconds=seconds,
                rate=rate,
                conversations=plan.conversations,
                channel_id=plan.channel_id,
                text=plan.text,
                cpus=self.layout.load_cpus,
            )

        sent = 0
        if plan.warmup >= 1:
            sent += load(plan.warmup).requests
        replies_before = _receiver_count(receiver)
        usage_before, receiver_before = service.usage(), receiver.usage()
        threads_before = service.threads_cpu()
        window_before = CpuWindow.now()
        with RssSampler([service]).running() as rss:
            result = load(plan.duration)
        window_after = CpuWindow.now()
        usage_after, receiver_after = service.usage(), receiver.usage()
        threads_after = service.threads_cpu()
        replies = _receiver_count(receiver) - replies_before
        sent += result.requests
        wall = max(result.duration_s, 1e-9)
        cpu = max(usage_after.cpu_seconds - usage_before.cpu_seconds, 0.0)
        load_cpu = (window_after.own_seconds - window_before.own_seconds) + (
            receiver_after.cpu_seconds - receiver_before.cpu_seconds
        )
        busy = window_after.busy_seconds - window_before.busy_seconds
        expected = EXPECTED_STATUS[transport]
        ok = result.ok(expected)
        turns = max(result.requests, 1)
        per_thread = {
            tid: round((spent - threads_before.get(tid, 0.0)) / turns * 1000, 3)
            for tid, spent in threads_after.items()
            if spent - threads_before.get(tid, 0.0) > 0.001
        }
        run = RunResult(
            target=target,
            transport=transport,
            connections=connections,
            workers=workers,
            rate=round(rate, 1) if rate else None,
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
            replies_received=replies if transport == wrk.CHANNEL else None,
            statuses={str(status): count for status, count in sorted(result.statuses.items())},
            thread_cpu_ms_per_turn=per_thread if target in TELEMETRY_TARGETS and workers is None else {},
        )
        self.runs.append(run)
        pace = f" paced at {rate:.0f}/s" if rate else ""
        say(
            f"{target}{f' {workers}w' if workers else ''} {transport} c={connections}{pace}: "
            f"{run.turns_per_second:.0f} turns/s, p50 {run.latency_ms.get('p50', 0):.1f} ms, "
            f"p99 {run.latency_ms.get('p99', 0):.1f} ms, {run.cpu_ms_per_turn:.2f} ms CPU/turn"
            + (f", {run.failed} failed" if run.failed else "")
        )
        return run, sent

    # -- exactness checks (otel-chatbot)

    def _check_metrics(self, check: TargetCheck, metrics_port: int) -> None:
        try:
            text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        except OSError as error:
            check.problems.append(f"could not scrape /metrics: {error}")
            return
        turns, per_worker = 0.0, dict[str, int]()
        seen: set[tuple[tuple[str, str], ...]] = set()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, *sorted(sample.labels.items()))
                if key in seen:
                    check.problems.append(f"duplicate series in /metrics: {sample.name} {sample.labels}")
                seen.add(key)  # type: ignore[arg-type]
                if sample.name == "bot_turns_total":
                    turns += sample.value
                    worker = sample.labels.get("worker", "-")
                    per_worker[worker] = per_worker.get(worker, 0) + 1
        check.prometheus_turns = turns
        check.prometheus_series_per_worker = per_worker
        low, high = check.requests_sent, check.requests_sent + check.in_flight_allowance
        if not low <= turns <= high:
            check.problems.append(
                f"Prometheus counted {turns:.0f} turns; the load generator completed {low} "
                f"(up to {check.in_flight_allowance} more may have been in flight when it stopped)"
            )

    def _check_export(
        self,
        check: TargetCheck,
        stand_in: CountingStandIn,
        counts_before: dict[str, int],
        requests_before: int,
        instances_before: list[str],
    ) -> None:
        counts, requests, instances = stand_in.snapshot()
        check.request_envelopes = requests - requests_before
        check.envelopes_by_type = {kind: counts[kind] - counts_before.get(kind, 0) for kind in counts}
        check.role_instances = sorted(set(instances) - set(instances_before))
        expected = check.workers or 1
        if len(check.role_instances) != expected:
            check.problems.append(
                f"{len(check.role_instances)} Application Insights role instances, expected {expected}"
            )
        sampled = check.target.startswith("ours-sampled")
        if not sampled and check.prometheus_turns is not None and check.request_envelopes < check.prometheus_turns:
            lost = check.prometheus_turns - check.request_envelopes
            check.problems.append(
                f"{lost:.0f} of {check.prometheus_turns:.0f} turns have no Request envelope: spans were dropped "
                "(100 % sampling), and nothing counted it"
            )

    # -- results

    def results(self) -> dict[str, Any]:
        finished = datetime.now(UTC)
        data: dict[str, Any] = {
            "started": self.started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "machine": machine(),
            "layout": asdict(self.layout),
            "plan": {
                **{k: v for k, v in asdict(self.plan).items() if k != "out_dir"},
                "activity_bytes": {
                    t: wrk.activity_size(t, self.plan.channel_id, self.plan.text) for t in wrk.TRANSPORTS
                },
                "labels": {**LABELS, "ours-sampled": f"{LABELS['ours-sampled']} at {self.plan.traces_per_second:g}/s"},
            },
            "runs": [asdict(run) for run in self.runs],
            "checks": [asdict(check) for check in self.checks],
        }
        data["summary"] = summarize(data)
        return data


def _get(url: str, timeout: float = 10.0) -> str:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return str(response.read().decode("utf-8"))


def _receiver_count(receiver: Service) -> int:
    return int(json.loads(_get(f"http://127.0.0.1:{receiver.port}/count"))["replies"])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    model = platform.processor() or "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count() or 1,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk.wrk_version(),
        "packages": {
            name: _version(name)
            for name in (
                "botbuilder-core",
                "aiohttp",
                "opentelemetry-sdk",
                "azure-monitor-opentelemetry-exporter",
                "opentelemetry-exporter-prometheus",
                "msrest",
            )
        },
    }


@contextlib.contextmanager
def heartbeat(message: Callable[[], str], every: float = 30.0) -> Iterator[None]:
    """Print `message()` every `every` seconds while the block runs (long soak runs)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            say(message())

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


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


def elapsed_since(start: float) -> str:
    return f"{time.monotonic() - start:.0f} s"
