"""otel-chatbot on N worker processes on one host: `python -m loadtest.benchmark.workers --workers N`.

The benchmark runs the bot this way to measure 1 → 2 workers; docs/performance.md describes how the same code becomes
`python -m bot --workers N`. Nothing here imports the load test: the module can move into the bot as it is.

- **One port, N processes.** Every worker listens on `PORT` with SO_REUSEPORT; the kernel spreads connections over
  them. A Python process runs its turns on one core (the GIL); N processes use N cores.
- **Prometheus.** Each worker serves its own metrics on a private 127.0.0.1 port. The supervisor serves
  `BOT_METRICS_PORT` itself and answers a scrape by scraping every worker and adding a `worker` label (0..N-1) to
  each series. No series is double-counted or merged: counters stay monotonic per worker (a restarted worker starts
  its own series from zero, which `rate()` treats as a reset), `sum by (...)` over `worker` gives the bot's totals.
  A worker that cannot be scraped is left out of that scrape and counted in `bot_workers_unreachable`.
- **Application Insights.** Each worker is its own role instance: `service.instance.id` is `<host>-<pid>` by default
  (the process id differs); when `OTEL_RESOURCE_ATTRIBUTES` sets `service.instance.id`, worker i gets `<id>-w<i>`.
- **Start-up settings.** Once a worker serves, `tune_after_start()` freezes the objects of start-up out of the cyclic
  garbage collector and shortens the interpreter's thread switch interval (see its docstring).
- **Conversation state.** A conversation's turns land on whichever worker the kernel picked for the connection, so
  state cannot live in one process's memory: the workers share `SqliteStateStorage`, a botbuilder `Storage` in one
  SQLite file (write-ahead log, optimistic concurrency with e-tags as `MemoryStorage`), kept off the event loop on
  one thread per worker. `BOT_STATE_DB` names the file; by default a private temporary file lives as long as the
  supervisor (and its `.lock` file, on which writers queue). Across hosts use a network storage (Cosmos DB, Blob).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import fcntl
import gc
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from botbuilder.core import Storage
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

WORKER_LABEL = "worker"
STATE_DB_VARIABLE = "BOT_STATE_DB"
SCRAPE_TIMEOUT_SECONDS = 5.0
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0
MAX_RESTARTS_PER_MINUTE = 5
MAX_WORKERS = 64


# Thread switch interval while the exporters' threads convert telemetry: see tune_after_start.
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_after_start() -> None:
    """Process settings for a bot that has started serving (measured in docs/performance.md).

    - `gc.freeze()`: the ~110,000 objects of start-up (mostly the imported SDKs) leave the cyclic collector's
      generations. Without it every full collection walks them all: a 100-170 ms stall of the event loop every few
      seconds under load, and ~30 % of a turn's CPU at saturation.
    - `sys.setswitchinterval(0.5 ms)`: the exporters' threads hold the GIL for up to the switch interval (5 ms by
      default) each time the event loop gives it up for a system call; with several calls per callback the loop
      waited tens of milliseconds per callback while a batch was converted.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


# ---- shared conversation state -------------------------------------------------------------------------------------


class SqliteStateStorage(Storage):
    """botbuilder `Storage` in a SQLite file shared by the processes of one host.

    Same contract as `MemoryStorage`: read returns stored items, write refuses an item whose e-tag is neither `*`
    nor the stored one (KeyError "Etag conflict"), every write stores a new e-tag. Items are pickled: the file is
    private to the bot (created 0600), as the memory of `MemoryStorage` is.
    """

    def __init__(self, path: str | os.PathLike[str], busy_timeout_ms: int = 5000) -> None:
        super().__init__()
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-storage")
        if not Path(self.path).exists():
            Path(self.path).touch(mode=0o600)
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute("PRAGMA synchronous = NORMAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, etag TEXT NOT NULL, value BLOB NOT NULL)"
        )
        # Writers queue on a lock file: SQLite's own busy handler polls with sleeps of up to 100 ms.
        self._write_lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def read(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        return dict(await self._run(self._read, list(keys)))

    async def write(self, changes: dict[str, Any]) -> None:
        if changes is None:
            raise Exception("Changes are required when writing")
        if changes:
            await self._run(self._write, dict(changes))

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self._run(self._delete, list(keys))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._connection.close()
        os.close(self._write_lock)

    def _read(self, keys: list[str]) -> dict[str, Any]:
        marks = ",".join("?" * len(keys))
        rows = self._connection.execute(f"SELECT key, value FROM state WHERE key IN ({marks})", keys).fetchall()
        return {key: pickle.loads(value) for key, value in rows}

    def _write(self, changes: dict[str, Any]) -> None:
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            self._write_locked(changes)
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def _write_locked(self, changes: dict[str, Any]) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for key, change in changes.items():
                new_value = copy.deepcopy(change)
                row = connection.execute("SELECT etag FROM state WHERE key = ?", (key,)).fetchone()
                stored_etag = row[0] if row else None
                new_etag = new_value.get("e_tag") if isinstance(new_value, dict) else getattr(new_value, "e_tag", None)
                if new_etag == "":
                    raise Exception("storage.write(): etag missing")
                if stored_etag is not None and new_etag is not None and new_etag not in ("*", stored_etag):
                    raise KeyError(f"Etag conflict.\nOriginal: {new_etag}\r\nCurrent: {stored_etag}")
                etag = uuid.uuid4().hex
                if isinstance(new_value, dict):
                    new_value["e_tag"] = etag
                else:
                    new_value.e_tag = etag
                blob = pickle.dumps(new_value, protocol=pickle.HIGHEST_PROTOCOL)
                connection.execute(
                    "INSERT INTO state (key, etag, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET etag = excluded.etag, value = excluded.value",
                    (key, etag, blob),
                )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _delete(self, keys: list[str]) -> None:
        marks = ",".join("?" * len(keys))
        self._connection.execute(f"DELETE FROM state WHERE key IN ({marks})", keys)


# ---- Prometheus across workers -------------------------------------------------------------------------------------


def relabel(families: Iterable[Metric], worker: str) -> list[Metric]:
    """The families of one worker's exposition with `worker="<n>"` on every sample."""
    labelled = []
    for family in families:
        copy_ = Metric(family.name, family.documentation, family.type, family.unit)
        copy_.samples = [
            Sample(s.name, {**s.labels, WORKER_LABEL: worker}, s.value, s.timestamp, s.exemplar) for s in family.samples
        ]
        labelled.append(copy_)
    return labelled


def merge(expositions: Sequence[tuple[str, str]]) -> list[Metric]:
    """One list of families from (worker, exposition text) pairs: same-named families are joined, never summed."""
    merged: dict[str, Metric] = {}
    for worker, text in expositions:
        for family in relabel(text_string_to_metric_families(text), worker):
            existing = merged.get(family.name)
            if existing is None:
                merged[family.name] = family
            else:
                existing.samples.extend(family.samples)
    return list(merged.values())


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def render(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def _unreachable_family(count: int) -> Metric:
    family = Metric("bot_workers_unreachable", "Worker processes the last scrape could not reach", "gauge")
    family.add_sample("bot_workers_unreachable", {}, float(count))
    return family


def metrics_proxy(worker_ports: dict[str, int]) -> web.Application:
    """`GET /metrics`: every worker's metrics, labelled by worker."""
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def scrape(session: aiohttp.ClientSession, worker: str, port: int) -> tuple[str, str] | None:
        try:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                if response.status != 200:
                    return None
                return worker, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def metrics(request: web.Request) -> web.Response:
        session = request.app[session_key]
        results = await asyncio.gather(*(scrape(session, w, p) for w, p in sorted(worker_ports.items())))
        expositions = [result for result in results if result is not None]
        families = merge(expositions)
        families.append(_unreachable_family(len(results) - len(expositions)))
        return web.Response(body=render(families), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def client(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            app[session_key] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/metrics", metrics)
    return app


# ---- a worker ------------------------------------------------------------------------------------------------------


def worker_environment(base: dict[str, str], index: int, metrics_port: int, state_db: str) -> dict[str, str]:
    env = dict(base)
    env[STATE_DB_VARIABLE] = state_db
    env["BOT_WORKER_METRICS_PORT"] = str(metrics_port)
    attributes = [part for part in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if part.strip()]
    for position, part in enumerate(attributes):
        key, _, value = part.partition("=")
        if key.strip() == "service.instance.id" and value.strip():
            attributes[position] = f"service.instance.id={value.strip()}-w{index}"
    env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(attributes)
    return env


async def serve_worker(index: int) -> None:
    """One worker: the bot's application on the shared port, its metrics on a private one (as `python -m bot`)."""
    from bot.app import create_app
    from bot.settings import Settings
    from telemetry import catalog
    from telemetry.prometheus import metrics_app
    from telemetry.setup import configure
    from telemetry.wiring import instrument

    settings = Settings.from_env()
    telemetry = configure(settings.telemetry)
    telemetry.install_globals()
    storage = SqliteStateStorage(os.environ[STATE_DB_VARIABLE])
    app = create_app(settings, instrument(telemetry), storage=storage)
    runners = [
        web.AppRunner(app, handle_signals=False),
        web.AppRunner(metrics_app(telemetry.prometheus_registry), handle_signals=False, access_log=None),
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        for runner in runners:
            await runner.setup()
        await web.TCPSite(runners[0], settings.host, settings.port, reuse_port=True).start()
        await web.TCPSite(runners[1], "127.0.0.1", int(os.environ["BOT_WORKER_METRICS_PORT"])).start()
        telemetry.emit_event(catalog.EVENT_INITIALIZED.name, {"service.version": telemetry.config.service_version})
        tune_after_start()
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        storage.close()
        telemetry.shutdown()


# ---- the supervisor ------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Worker:
    index: int
    metrics_port: int
    process: subprocess.Popen[bytes]
    restarts: list[float]


class Supervisor:
    def __init__(self, count: int, state_db: str, env: dict[str, str]) -> None:
        self.count = count
        self.state_db = state_db
        self.env = env
        self.workers: list[Worker] = []

    def _spawn(self, index: int, metrics_port: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "loadtest.benchmark.workers", "--worker", str(index)]
        env = worker_environment(self.env, index, metrics_port, self.state_db)
        return subprocess.Popen(command, env=env)

    def start(self) -> None:
        for index in range(self.count):
            port = _free_port()
            self.workers.append(Worker(index, port, self._spawn(index, port), []))
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for worker in self.workers:
            while not _answers(worker.metrics_port):
                if worker.process.poll() is not None:
                    raise RuntimeError(f"worker {worker.index} exited with code {worker.process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {worker.index} did not start within {START_TIMEOUT_SECONDS:g} s")
                time.sleep(0.05)

    def check(self) -> None:
        """Restart workers that died, at most MAX_RESTARTS_PER_MINUTE each (then leave it down and say so)."""
        now = time.monotonic()
        for worker in self.workers:
            if worker.process.poll() is None:
                continue
            worker.restarts = [t for t in worker.restarts if now - t < 60]
            if len(worker.restarts) >= MAX_RESTARTS_PER_MINUTE:
                continue
            print(f"worker {worker.index} exited ({worker.process.returncode}); restarting", file=sys.stderr)
            worker.restarts.append(now)
            worker.process = self._spawn(worker.index, worker.metrics_port)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for worker in self.workers:
            try:
                worker.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(10)


async def supervise(count: int) -> int:
    from bot.settings import Settings

    settings = Settings.from_env()
    with contextlib.ExitStack() as stack:
        state_db = os.environ.get(STATE_DB_VARIABLE, "")
        if not state_db:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="otel-chatbot-state-"))
            state_db = str(Path(directory) / "state.sqlite3")
        SqliteStateStorage(state_db).close()  # create the file and its table before the workers race to
        supervisor = Supervisor(count, state_db, dict(os.environ))
        stack.callback(supervisor.stop)
        await asyncio.to_thread(supervisor.start)
        runner: web.AppRunner | None = None
        if settings.metrics_port:
            ports = {str(worker.index): worker.metrics_port for worker in supervisor.workers}
            runner = web.AppRunner(metrics_proxy(ports), handle_signals=False, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        print(
            f"otel-chatbot: {count} worker process(es) on http://{settings.host}:{settings.port}/api/messages, "
            f"metrics of all of them on :{settings.metrics_port}/metrics",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            while not stop.is_set():
                supervisor.check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
        finally:
            if runner is not None:
                await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.benchmark.workers")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its children
    args = parser.parse_args(argv)
    if args.worker is not None:
        asyncio.run(serve_worker(args.worker))
        return 0
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be between 1 and {MAX_WORKERS}")
    return asyncio.run(supervise(args.workers))


if __name__ == "__main__":
    sys.exit(main())
