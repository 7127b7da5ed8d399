"""The processes of a benchmark run: start them on chosen cores, wait until they answer, measure what they use, stop
them. Every wait is bounded; a process is only ever stopped through the handle that started it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
from aiohttp import web

from loadtest.localbot import terminate

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def pin(cpus: Sequence[int] | None) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


@dataclass
class Usage:
    """CPU seconds (user + system) of a process tree, and its resident memory."""

    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int  # the kernel's high-water mark (VmHWM), summed over the tree


class Service:
    """A child process (a benchmark target, the reply receiver) and the tree it spawns."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
        cpus: Sequence[int] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.cpus = list(cpus) if cpus else None
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=(lambda: pin(cpus)) if cpus else None,
        )
        self._psutil = psutil.Process(self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, port: int, path: str | None = None, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until the port accepts connections (and `path` answers 2xx); RuntimeError with the log tail if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            if _answers(port, path):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on 127.0.0.1:{port} within {timeout:g} s:\n{self.log_tail()}")

    def processes(self) -> list[psutil.Process]:
        try:
            return [self._psutil, *self._psutil.children(recursive=True)]
        except psutil.Error:
            return []

    def usage(self) -> Usage:
        cpu, rss, peak = 0.0, 0, 0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
                peak += _high_water_mark(process.pid)
        return Usage(cpu, rss, peak)

    def threads_cpu(self) -> dict[str, float]:
        """CPU seconds per thread of the main process, by thread id (what the exporter threads cost)."""
        try:
            return {str(t.id): t.user_time + t.system_time for t in self._psutil.threads()}
        except psutil.Error:
            return {}

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int | None:
        """SIGTERM (the bot flushes its telemetry), then SIGKILL if it is still there after `timeout`."""
        returncode = terminate(self.process, timeout)
        self._log.close()
        return returncode

    def log_tail(self, lines: int = 25) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _answers(port: int, path: str | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            if path is None:
                return True
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = sock.recv(64)
            return head.startswith(b"HTTP/1.1 2")
    except OSError:
        return False


def _high_water_mark(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RssSampler:
    """Samples the summed RSS of services every `interval` seconds in a thread; keeps the maximum and the series."""

    def __init__(self, services: Sequence[Service], interval: float = 0.25) -> None:
        self._services = services
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.samples: list[tuple[float, int]] = []

    def _run(self) -> None:
        start = time.monotonic()
        while True:
            total = 0
            for service in self._services:
                for process in service.processes():
                    with contextlib.suppress(psutil.Error):
                        total += process.memory_info().rss
            self.samples.append((time.monotonic() - start, total))
            if self._stop.wait(self._interval):
                return

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)


@dataclass
class CpuWindow:
    """System-wide busy CPU seconds over a window, to tell how much of the machine something else was using."""

    busy_seconds: float
    own_seconds: float  # this process and its waited-for children (the load generator)

    @classmethod
    def now(cls) -> CpuWindow:
        times = psutil.cpu_times()
        # What processes run (interrupt handling, the loopback traffic's included, belongs to no process).
        busy = times.user + times.system + getattr(times, "nice", 0.0)
        own = os.times()
        return cls(busy, own.user + own.system + own.children_user + own.children_system)


async def serve_until_stopped(
    runner: web.BaseRunner, host: str, port: int, banner: str, reuse_port: bool = False
) -> None:
    """Serve `runner` on host:port, print `banner` once listening, and return after SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        print(banner, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
