"""One benchmark run: every target, on every transport, at fixed concurrency levels, then each at half of its maximum
throughput, then otel-chatbot with 1 and 2 worker processes; measured with wrk on cores of its own. The targets are
described in loadtest/benchmark/plan.py, one measurement in measure.py, the exactness checks in check.py."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from loadtest.benchmark import wrk
from loadtest.benchmark.check import ExportMark, TargetCheck, check_export, check_metrics
from loadtest.benchmark.machine import machine
from loadtest.benchmark.measure import LoadGenerator, Measurement, RunResult, get_text, measure
from loadtest.benchmark.plan import LABELS, PROJECT_ROOT, TELEMETRY_TARGETS, BenchmarkPlan
from loadtest.benchmark.processes import Service, pin, usable_cpus
from loadtest.benchmark.summary import summarize
from loadtest.localbot import bot_environment
from loadtest.rig.ingestion import EnvelopeCounts, IngestionStandIn
from loadtest.rig.ports import free_port
from loadtest.rig.progress import BENCHMARK

HASH_KEY = "benchmark-hash-key"  # fixed, so the bot does not generate one (and say so) at every start
P99_CONNECTIONS = 16


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


@dataclass(frozen=True)
class Fixtures:
    """What every target's runs share: the ingestion stand-in's counts and the channel receiver."""

    ingestion: IngestionStandIn
    counts: EnvelopeCounts
    receiver: Service

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}"


class Benchmark:
    def __init__(self, plan: BenchmarkPlan) -> None:
        self.plan = plan
        self.layout = Layout.choose()
        self.runs: list[RunResult] = []
        self.checks: list[TargetCheck] = []
        self.work_dir = plan.out_dir / "work"
        self.logs_dir = plan.out_dir / "logs"
        self.started = datetime.now(UTC)
        self.load = LoadGenerator(plan, self.work_dir, self.layout.load_cpus)

    def prepare(self, stack: contextlib.ExitStack) -> Fixtures:
        """Folders, this process on the load generator's cores, the ingestion stand-in and the channel (stopped
        with `stack`): what every run needs."""
        for directory in (self.work_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        pin(self.layout.load_cpus)
        counts = EnvelopeCounts()
        # Counts only: a long run would hold millions of envelopes.
        ingestion = stack.enter_context(IngestionStandIn(keep=counts.add))
        receiver_port = free_port()
        receiver = Service(
            "receiver",
            [sys.executable, "-m", "loadtest.benchmark.receiver", str(receiver_port)],
            self.environment(ingestion),
            self.logs_dir / "receiver.log",
            PROJECT_ROOT,
            self.layout.load_cpus,
            receiver_port,
        )
        stack.callback(receiver.stop)
        receiver.wait_ready(receiver_port, "/count")
        return Fixtures(ingestion, counts, receiver)

    def run(self) -> dict[str, Any]:
        plan = self.plan
        if wrk.find_wrk() is None:
            raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
        BENCHMARK.line(f"layout: {self.layout.note}; results in {plan.out_dir}")
        with contextlib.ExitStack() as stack:
            fixtures = self.prepare(stack)
            for target in plan.targets:
                self.bench_target(target, None, fixtures)
            for count in plan.workers:
                self.bench_target("ours-workers", count, fixtures)
        return self.results()

    def start(self, target: str, name: str, workers: int | None, fixtures: Fixtures) -> tuple[Service, int | None]:
        """Start a target and wait until it answers; the service and its metrics port (otel-chatbot only)."""
        port = free_port()
        metrics_port = free_port() if target in TELEMETRY_TARGETS else None
        # Worker processes use every core (the load generator shares them); one process gets a core of its own.
        cpus = self.layout.all_cpus if workers is not None else self.layout.target_cpus
        command, ready_path = self.command(target, port, workers)
        env = self.environment(fixtures.ingestion, port, metrics_port, name, target)
        service = Service(name, command, env, self.logs_dir / f"{name}.log", self.work_dir, cpus, port)
        try:
            if workers is not None and metrics_port is not None:
                # The supervisor serves /metrics once every worker serves; the port answers as soon as one does.
                service.wait_ready(metrics_port, "/metrics")
            service.wait_ready(port, ready_path)
        except BaseException:
            service.stop()
            raise
        return service, metrics_port

    def bench_target(self, target: str, workers: int | None, fixtures: Fixtures) -> None:
        plan = self.plan
        name = target if workers is None else f"ours-{workers}w"
        BENCHMARK.line(f"starting {name}: {LABELS[target]}" + (f", {workers} worker process(es)" if workers else ""))
        before = ExportMark.of(fixtures.counts)
        service, metrics_port = self.start(target, name, workers, fixtures)
        sent, allowance = 0, 0

        def one(transport: str, connections: int, rate: float | None) -> RunResult:
            nonlocal sent, allowance
            what = Measurement(
                service, fixtures.receiver, fixtures.service_url, target, transport, connections, rate, workers
            )
            result, requests = measure(self.load, what)
            self.runs.append(result)
            sent += requests
            allowance += 2 * connections  # requests each connection may have had in flight when wrk stopped
            return result

        try:
            transports = (wrk.EXPECT_REPLIES,) if workers is not None else plan.transports
            levels = (plan.worker_connections,) if workers is not None else plan.connections
            for transport in transports:
                measured = [one(transport, connections, None) for connections in levels]
                if plan.half_load and workers is None and measured:
                    best = max(measured, key=lambda run: run.turns_per_second)
                    rate = best.turns_per_second / 2
                    if rate > 0:
                        one(transport, max(P99_CONNECTIONS, min(64, int(rate / 20) + 1)), rate)
            check = TargetCheck(target=name, workers=workers, requests_sent=sent, in_flight_allowance=allowance)
            if metrics_port is not None:
                try:
                    check_metrics(check, get_text(f"http://127.0.0.1:{metrics_port}/metrics"))
                except OSError as error:
                    check.problems.append(f"could not scrape /metrics: {error}")
        finally:
            code = service.stop()
            if code not in (0, None, -15):
                BENCHMARK.line(f"{name} exited with code {code}; see {service.log_path}")
        if target in TELEMETRY_TARGETS:
            check_export(check, fixtures.counts, before)
            self.checks.append(check)
            for problem in check.problems:
                BENCHMARK.line(f"{name}: {problem}")

    def command(self, target: str, port: int, workers: int | None) -> tuple[list[str], str | None]:
        python = sys.executable
        if target in TELEMETRY_TARGETS:
            return [python, "-m", "bot", *(["--workers", str(workers)] if workers is not None else [])], "/healthz"
        served = "bare" if target == "ceiling" else target
        return [python, "-m", "loadtest.benchmark.serve", served, str(port)], None

    def environment(
        self,
        ingestion: IngestionStandIn,
        port: int = 0,
        metrics_port: int | None = None,
        name: str = "service",
        target: str | None = None,
    ) -> dict[str, str]:
        storage = self.work_dir / f"{name}-telemetry-storage"
        env = bot_environment(os.environ, port, metrics_port or 0, ingestion.connection_string, storage)
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
