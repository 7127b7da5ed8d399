"""Azurite, the Azure Storage emulator (npm, infra/azurite), on an ephemeral 127.0.0.1 port: for the blob state tests,
the cluster drill and the scaling run (docs/scaling.md).

Started with `--disableTelemetry` (Azurite reports usage to Microsoft by default) and `--skipApiVersionCheck` (the
Python SDK may speak a newer service version than this Azurite knows). Data lives in a workspace directory, so a
stopped Azurite started again on the same port still has it: that is how the outage tests end an outage.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AZURITE_BLOB = ROOT / "infra" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
START_TIMEOUT_SECONDS = 30.0
# Azurite's well-known development account (documented in Azurite's README; it only exists in the emulator).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Blob service successfully listens on http://127\.0\.0\.1:(\d+)")


def missing() -> str | None:
    """What is missing to run Azurite here (node, or the npm install), or None."""
    if shutil.which("node") is None:
        return "node"
    if not AZURITE_BLOB.exists():
        return "infra/azurite/node_modules (npm ci)"
    return None


class Azurite:
    """One Azurite blob service. `start()` picks a free port the first time and keeps it on later starts."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.port = 0
        self.output: list[str] = []
        self._process: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    @property
    def pid(self) -> int:
        return self._process.pid if self._process is not None else 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        assert not self.running, "Azurite is already running"
        self.workspace.mkdir(parents=True, exist_ok=True)
        command = [
            str(AZURITE_BLOB),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.workspace),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.workspace
        )
        self._process = process
        ready = threading.Event()

        def drain() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.output.append(line.rstrip())
                match = _LISTENING.search(line)
                if match:
                    self.port = int(match.group(1))
                    ready.set()

        threading.Thread(target=drain, name="azurite-output", daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Azurite did not start:\n" + "\n".join(self.output[-20:]))

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
