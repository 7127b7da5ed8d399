"""Child processes (the bot, Prometheus, a benchmark target) with their output in a log file, stopped the way a
process manager stops them: SIGTERM, then SIGKILL when the deadline passes. Every wait is bounded."""

from __future__ import annotations

import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

KILL_TIMEOUT_SECONDS = 10.0
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def terminate(process: subprocess.Popen[Any], timeout: float) -> int | None:
    """SIGTERM (the bot flushes its telemetry, Locust writes its reports), then SIGKILL if the process has not exited
    within `timeout`; its exit code (None only if even SIGKILL did not end it within KILL_TIMEOUT_SECONDS)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(KILL_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                return None
    return process.returncode


class Child:
    """A child process whose stdout and stderr go to `log_path`; stopped only through this handle."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                preexec_fn=preexec_fn,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self.process.poll()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code. Closes the log; calling it again is harmless."""
        returncode = terminate(self.process, timeout)
        self._log.close()
        return returncode

    def log_tail(self, lines: int = 25) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether GET `url` answers 2xx now (a readiness probe: any failure to connect is just "not yet").
    No proxy: everything the rig starts listens on 127.0.0.1."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False
