"""The processes of a benchmark run: start them on chosen cores, wait until they answer, measure what they use, stop
them. Every wait is bounded; a process is only ever stopped through the handle that started it."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtest.rig.polling import wait_until
from loadtest.rig.processes import Child

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 60.0


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


class Service(Child):
    """A child process (a benchmark target, the reply receiver) and the tree it spawns, on chosen cores."""

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
        self.port = port
        self.cpus = list(cpus) if cpus else None
        pinned = (lambda: pin(cpus)) if cpus else None
        super().__init__(name, command, log_path, env=env, cwd=cwd, preexec_fn=pinned)
        self._psutil = psutil.Process(self.process.pid)

    def wait_ready(self, port: int, path: str | None = None, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until the port accepts connections (and `path` answers 2xx); RuntimeError with the log tail if not."""

        def answers() -> bool:
            code = self.exited()
            if code is not None:
                raise RuntimeError(f"{self.name} exited with code {code}:\n{self.log_tail()}")
            return _answers(port, path)

        try:
            wait_until(answers, timeout=timeout, interval=0.05, message=f"{self.name} on 127.0.0.1:{port}")
        except AssertionError as error:
            raise RuntimeError(f"{error}:\n{self.log_tail()}") from None

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
        return super().stop(timeout)


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
