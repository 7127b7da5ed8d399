"""`python -m bot --workers N` (or `BOT_WORKERS=N`): otel-chatbot on N worker processes on one host, under a supervisor.

- **One port, N processes.** Every worker listens on `PORT` with SO_REUSEPORT; the kernel spreads connections over
  them. A Python process runs its turns on one core (the GIL); N processes use N cores. Before starting them the
  supervisor makes sure nothing listens on `PORT` yet: with SO_REUSEPORT the workers would otherwise share it silently
  with whatever does (another supervisor's workers).
- **Prometheus.** Each worker serves its own metrics on a private 127.0.0.1 port (a socket the supervisor opens and
  hands down, so a restarted worker gets the same one), behind a bearer token only the supervisor knows. The
  supervisor serves `BOT_METRICS_PORT` itself, with the credentials of `BOT_METRICS_BEARER_TOKEN` /
  `BOT_METRICS_BASIC_AUTH` as `python -m bot` does, and answers a scrape by scraping every worker and adding a
  `worker` label (0..N-1) to each series (telemetry/worker_metrics.py, given to `supervise` by `python -m bot`).
- **Application Insights.** Each worker is its own role instance: `service.instance.id` is `<host>-<pid>` by default
  (the process id differs); when `OTEL_RESOURCE_ATTRIBUTES` sets `service.instance.id`, worker i gets `<id>-w<i>`.
  Without `BOT_TELEMETRY_HASH_KEY` the supervisor draws one key for all its workers, so that a conversation has the
  same hash whichever worker answers it.
- **Start-up settings.** Each worker applies `bot.runtime.tune_after_start()` once it serves, as `python -m bot`
  does (`BOT_TUNE_RUNTIME=false` turns it off).
- **Conversation state.** A conversation's turns land on whichever worker the kernel picked for the connection, so
  state cannot live in one process's memory: the workers share `bot.state.SqliteStateStorage`, one SQLite file.
  `BOT_STATE_DB` names the file; by default a private temporary file lives as long as the supervisor. With
  `BOT_STATE_STORE=blob` they share the blob container instead, and no file is made.
- **Hung workers.** Every second the supervisor asks each worker's event loop whether it is alive (`GET /live` on
  the worker's metrics socket, answered on that loop). A worker that has not answered for
  `BOT_WORKER_TIMEOUT_SECONDS` (10 s by default; while starting, 60 s) is killed (SIGKILL: a blocked loop cannot
  run a SIGTERM handler) and so restarted. Why: with SO_REUSEPORT the kernel keeps handing a hung worker its share
  of new connections, which would wait for ever (docs/workers.md).
- **Restarting without downtime.** SIGHUP to the supervisor replaces the workers one at a time: a new process for
  worker i starts (with the code as it is on disk now) and joins the port; once it serves, the old one gets SIGTERM
  and stops as below (turns in flight finish). A new process that does not start leaves the old one serving.
- **Restarts and stopping.** A worker that dies is restarted, at most 5 times a minute. SIGTERM or SIGINT to the
  supervisor is passed on to every worker, which stops as `python -m bot` does (turns in flight finish, telemetry is
  flushed); one that has not exited after `BOT_SHUTDOWN_TIMEOUT_SECONDS` + 30 s is killed. A worker also gets SIGTERM
  if the supervisor dies without stopping it (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp import web

from bot.settings import ConfigError, Settings
from bot.state import SqliteStateStorage
from bot.storage import STORE_BLOB

START_TIMEOUT_SECONDS = 60.0
READY_PROBE_SECONDS = 1.0
CHECK_INTERVAL_SECONDS = 1.0
LIVENESS_PATH = "/live"
LIVENESS_PROBE_SECONDS = 1.0
STOP_MARGIN_SECONDS = 30.0  # beyond BOT_SHUTDOWN_TIMEOUT_SECONDS, for flushing telemetry
MAX_RESTARTS_PER_MINUTE = 5
SIGNALS = (signal.SIGINT, signal.SIGTERM)
RELOAD_SIGNAL = signal.SIGHUP
PR_SET_PDEATHSIG = 1


class MetricsProxy(Protocol):
    """Builds the application serving BOT_METRICS_PORT (telemetry.worker_metrics.metrics_proxy)."""

    def __call__(
        self,
        worker_ports: Mapping[str, int],  # worker index -> its metrics port
        worker_token: str,  # the workers' bearer token
        bearer_token: str,  # BOT_METRICS_BEARER_TOKEN
        basic_auth: str,  # BOT_METRICS_BASIC_AUTH
        *,
        hung_workers: Callable[[], int],  # how many workers the supervisor killed as hung
    ) -> web.Application: ...


class StartError(RuntimeError):
    """The worker processes could not be started (or, in a worker, it could not become one)."""


def say(message: str, *, error: bool = False) -> None:
    print(f"otel-chatbot: {message}", file=sys.stderr if error else sys.stdout, flush=True)


# ---- a worker ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRole:
    """What makes a `python -m bot` process a worker: its index and the socket to serve its metrics on."""

    index: int
    metrics_socket: socket.socket

    @classmethod
    def adopt(cls, index: int, metrics_fd: int, supervisor_pid: int) -> WorkerRole:
        """Called first thing in the worker; StartError if the supervisor is already gone."""
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != supervisor_pid:  # it died before the line above took effect
            raise StartError(f"the supervisor (pid {supervisor_pid}) has exited")
        return cls(index, socket.socket(fileno=metrics_fd))

    @staticmethod
    def add_liveness_route(metrics: web.Application) -> None:
        """`GET /live` on the worker's metrics socket: answered on the event loop that serves the bot, so a loop that
        is blocked (or a stopped process) does not answer it. Says nothing else, so it needs no credentials."""

        async def alive(request: web.Request) -> web.Response:
            return web.Response(status=204)

        metrics.router.add_get(LIVENESS_PATH, alive)


def worker_environment(
    base: Mapping[str, str], index: int, state_db: str, worker_token: str, hash_key: str
) -> dict[str, str]:
    env = dict(base)
    env["BOT_STATE_DB"] = state_db
    env["BOT_METRICS_BEARER_TOKEN"] = worker_token
    env["BOT_METRICS_BASIC_AUTH"] = ""
    env["BOT_TELEMETRY_HASH_KEY"] = hash_key
    attributes = [part for part in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",") if part.strip()]
    for position, part in enumerate(attributes):
        key, _, value = part.partition("=")
        if key.strip() == "service.instance.id" and value.strip():
            attributes[position] = f"service.instance.id={value.strip()}-w{index}"
    env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(attributes)
    return env


# ---- the supervisor ------------------------------------------------------------------------------------------------


class MetricsPorts(Mapping[str, int]):
    """Worker index -> the port its metrics are served on now (the metrics proxy reads it at every scrape)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def __getitem__(self, index: str) -> int:
        return self._supervisor.metrics_ports[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._supervisor.metrics_ports)

    def __len__(self) -> int:
        return len(self._supervisor.workers)


def check_supervisable(settings: Settings) -> None:
    if settings.port == 0:
        raise ConfigError("PORT", "must be a port number, not 0, for worker processes: they all listen on it")


def ensure_port_free(host: str, port: int) -> None:
    """OSError if something listens on (host, port) already."""
    for family, kind, protocol, _, address in socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise OSError(
                    error.errno, f"error while attempting to bind on address {address!r}: {error.strerror}"
                ) from None


@dataclass
class Worker:
    index: int
    metrics_socket: socket.socket
    process: subprocess.Popen[bytes]
    restarts: list[float] = field(default_factory=list)
    # When this process must have answered a liveness probe (again) at the latest, on the monotonic clock.
    answer_by: float = field(default_factory=lambda: time.monotonic() + START_TIMEOUT_SECONDS)

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_socket.getsockname()[1])


class Supervisor:
    def __init__(self, settings: Settings, count: int, state_db: str, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.count = count
        self.worker_token = secrets.token_urlsafe(32)
        hash_key = env.get("BOT_TELEMETRY_HASH_KEY", "").strip() or secrets.token_hex(32)
        self.env = {
            index: worker_environment(env, index, state_db, self.worker_token, hash_key) for index in range(count)
        }
        self.workers: list[Worker] = []
        self.killed: list[int] = []
        self.retiring: list[asyncio.Task[None]] = []
        self.hung = 0  # workers killed because they stopped answering

    @property
    def metrics_ports(self) -> dict[str, int]:
        return {str(worker.index): worker.metrics_port for worker in self.workers}

    def _spawn(self, index: int, metrics_socket: socket.socket) -> subprocess.Popen[bytes]:
        fd = metrics_socket.fileno()
        command = [sys.executable, "-m", "bot", "--worker", str(index), "--metrics-fd", str(fd)]
        command += ["--supervisor", str(os.getpid())]
        return subprocess.Popen(command, env=self.env[index], pass_fds=(fd,), stdin=subprocess.DEVNULL)

    async def start(self, stop: asyncio.Event) -> bool:
        """Start the workers and wait until each serves its metrics (so also the bot); False if stopped meanwhile."""
        for index in range(self.count):
            metrics_socket = socket.create_server(("127.0.0.1", 0))
            try:
                self.workers.append(Worker(index, metrics_socket, self._spawn(index, metrics_socket)))
            except BaseException:
                metrics_socket.close()
                raise
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with aiohttp.ClientSession() as session:
            waits = [asyncio.create_task(self._wait_ready(worker, session, deadline)) for worker in self.workers]
            stopped = asyncio.create_task(stop.wait())
            try:
                pending = set(waits)
                while pending and not stop.is_set():
                    done, _ = await asyncio.wait({*pending, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    for task in done - {stopped}:
                        task.result()  # StartError: that worker exited or did not start in time
                    pending -= done
            finally:
                for task in (*waits, stopped):
                    task.cancel()
                await asyncio.gather(*waits, stopped, return_exceptions=True)
        return not stop.is_set()

    async def _wait_ready(self, worker: Worker, session: aiohttp.ClientSession, deadline: float) -> None:
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        # The socket listens from the start, so a probe waits in its queue until the worker serves.
        probe = aiohttp.ClientTimeout(total=READY_PROBE_SECONDS)
        headers = {"Authorization": f"Bearer {self.worker_token}"}
        while True:
            if worker.process.poll() is not None:
                raise StartError(f"worker {worker.index} exited with code {worker.process.returncode}")
            if time.monotonic() > deadline:
                raise StartError(f"worker {worker.index} did not start within {START_TIMEOUT_SECONDS:g} s")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, headers=headers, timeout=probe) as response:
                    if response.status == 200:
                        say(f"worker {worker.index} is serving (pid {worker.process.pid})")
                        worker.answer_by = time.monotonic() + self.settings.worker_timeout_seconds
                        return
            await asyncio.sleep(0.05)

    def check(self) -> None:
        """Restart workers that died, each at most MAX_RESTARTS_PER_MINUTE times a minute."""
        now = time.monotonic()
        for worker in self.workers:
            if worker.process.poll() is None:
                continue
            worker.restarts = [t for t in worker.restarts if now - t < 60]
            if len(worker.restarts) >= MAX_RESTARTS_PER_MINUTE:
                continue
            code = worker.process.returncode
            say(f"worker {worker.index} (pid {worker.process.pid}) exited with code {code}; restarting", error=True)
            worker.restarts.append(now)
            worker.process = self._spawn(worker.index, worker.metrics_socket)
            worker.answer_by = now + START_TIMEOUT_SECONDS

    async def probe(self, session: aiohttp.ClientSession) -> None:
        """Ask every running worker whether its event loop is alive; kill those that have not answered in time (the
        next `check` restarts them)."""
        running = [worker for worker in self.workers if worker.process.poll() is None]
        answers = await asyncio.gather(*(self._alive(worker, session) for worker in running))
        now = time.monotonic()
        for worker, answered in zip(running, answers, strict=True):
            if answered:
                worker.answer_by = now + self.settings.worker_timeout_seconds
            elif now > worker.answer_by and worker.process.poll() is None:
                say(
                    f"worker {worker.index} (pid {worker.process.pid}) has not answered for "
                    f"{self.settings.worker_timeout_seconds:g} s (BOT_WORKER_TIMEOUT_SECONDS); killing it",
                    error=True,
                )
                worker.process.kill()
                self.hung += 1

    @staticmethod
    async def _alive(worker: Worker, session: aiohttp.ClientSession) -> bool:
        url = f"http://127.0.0.1:{worker.metrics_port}{LIVENESS_PATH}"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=LIVENESS_PROBE_SECONDS)) as response:
                return response.status == 204
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def replace_all(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """SIGHUP: each worker in turn replaced by a new process, the old one stopped once the new one serves."""
        say(f"restarting {self.count} worker processes one at a time (SIGHUP)")
        for worker in self.workers:
            if stop.is_set():
                return
            metrics_socket = socket.create_server(("127.0.0.1", 0))
            successor = Worker(worker.index, metrics_socket, self._spawn(worker.index, metrics_socket))
            try:
                await self._wait_ready(successor, session, time.monotonic() + START_TIMEOUT_SECONDS)
            except StartError as error:
                say(f"worker {worker.index} not replaced, the old process keeps serving: {error}", error=True)
                self.retiring.append(asyncio.create_task(self._retire(successor)))
                continue
            except asyncio.CancelledError:  # the supervisor is stopping: `stop` waits for this one too
                self.retiring.append(asyncio.create_task(self._retire(successor)))
                raise
            predecessor = Worker(worker.index, worker.metrics_socket, worker.process)
            worker.metrics_socket, worker.process = successor.metrics_socket, successor.process
            worker.answer_by = successor.answer_by
            self.retiring.append(asyncio.create_task(self._retire(predecessor)))

    async def _retire(self, worker: Worker) -> None:
        """Stop a replaced (or failed) worker process as `stop` does, without holding up the supervisor."""
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
        timeout = self.settings.shutdown_timeout_seconds + STOP_MARGIN_SECONDS
        try:
            await asyncio.to_thread(worker.process.wait, timeout)
        except subprocess.TimeoutExpired:
            say(f"worker {worker.index} (pid {worker.process.pid}) did not stop in time; killing it", error=True)
            worker.process.kill()
            await asyncio.to_thread(worker.process.wait)
        finally:
            worker.metrics_socket.close()

    async def stop(self) -> None:
        """SIGTERM to every worker; kill those still there after the shutdown timeout and the time to flush."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds + STOP_MARGIN_SECONDS
        for worker in self.workers:
            try:
                await asyncio.to_thread(worker.process.wait, max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                say(f"worker {worker.index} (pid {worker.process.pid}) did not stop in time; killing it", error=True)
                worker.process.kill()
                await asyncio.to_thread(worker.process.wait)
                self.killed.append(worker.index)
            worker.metrics_socket.close()
        await asyncio.gather(*self.retiring, return_exceptions=True)


async def _supervise(settings: Settings, count: int, banner: str, metrics_proxy: MetricsProxy) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    reload = asyncio.Event()
    loop.add_signal_handler(RELOAD_SIGNAL, reload.set)
    ensure_port_free(settings.host, settings.port)
    async with contextlib.AsyncExitStack() as stack:
        state_db = settings.state_db
        if settings.state_store != STORE_BLOB:  # blob: the workers share the container, nothing to prepare here
            if not state_db:
                directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="otel-chatbot-state-"))
                state_db = str(Path(directory) / "state.sqlite3")
            try:
                # The file and its table exist before the workers race to create them.
                SqliteStateStorage(state_db).close()
            except sqlite3.Error as error:
                raise StartError(f"BOT_STATE_DB: {state_db}: {error}") from None
        supervisor = Supervisor(settings, count, state_db, os.environ)
        stack.push_async_callback(supervisor.stop)
        if settings.metrics_port:
            # Bound before the workers start: a port they would take by chance (their own sockets are ephemeral) or
            # a busy one stops the start-up before any worker runs.
            # A view, not a copy: workers replaced on SIGHUP serve their metrics on new sockets.
            proxy = metrics_proxy(
                MetricsPorts(supervisor),
                supervisor.worker_token,
                settings.metrics_bearer_token,
                settings.metrics_basic_auth,
                hung_workers=lambda: supervisor.hung,
            )
            runner = web.AppRunner(proxy, handle_signals=False, access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        say(f"starting {count} worker processes on port {settings.port}")
        if not await supervisor.start(stop):
            say("stopping before every worker started")
            return 0
        print(banner, flush=True)
        async with aiohttp.ClientSession() as session:
            reloading: asyncio.Task[None] | None = None
            try:
                while not stop.is_set():
                    if reload.is_set() and (reloading is None or reloading.done()):
                        reload.clear()
                        # Beside this loop, so that the other workers stay watched while each new process starts.
                        reloading = asyncio.create_task(supervisor.replace_all(session, stop))
                    supervisor.check()
                    await supervisor.probe(session)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), CHECK_INTERVAL_SECONDS)
            finally:
                if reloading is not None:
                    reloading.cancel()
                    await asyncio.gather(reloading, return_exceptions=True)
        say(f"stopping {count} worker processes")
    say("stopped")
    return 1 if supervisor.killed else 0


def supervise(settings: Settings, count: int, banner: str, metrics_proxy: MetricsProxy) -> int:
    """Run `count` workers until SIGTERM/SIGINT; the process's exit code. `metrics_proxy` builds the application that
    serves BOT_METRICS_PORT from the workers' metrics (telemetry.worker_metrics.metrics_proxy)."""
    try:
        return asyncio.run(_supervise(settings, count, banner, metrics_proxy))
    except (OSError, StartError) as error:
        print(f"otel-chatbot cannot start: {error}", file=sys.stderr, flush=True)
        return 1
