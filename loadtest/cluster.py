"""Several bot processes sharing blob state behind haproxy, on 127.0.0.1: the cluster drill and the scaling run.

`Cluster` starts N `python -m bot` processes (BOT_STATE_STORE=blob on the given storage connection string, each
exporting to the given Application Insights endpoint) and Debian's haproxy with infra/haproxy/haproxy.cfg, its
`server` lines rewritten for N instances. Every process is stopped through its handle; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from loadtest.localbot import bot_environment
from loadtest.rig.polling import wait_until
from loadtest.rig.ports import free_ports
from loadtest.rig.processes import Child, http_ok

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CONFIG = ROOT / "infra" / "haproxy" / "haproxy.cfg"
START_TIMEOUT_SECONDS = 60.0
_SERVER = re.compile(r'^(\s*)server bot1 "\$\{BOT_INSTANCE_1\}" check$', re.MULTILINE)
_OTHER_SERVERS = re.compile(r'^\s*server bot[2-9] "\$\{BOT_INSTANCE_\d\}" check\n', re.MULTILINE)
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def haproxy_config(instances: int) -> str:
    """The shipped configuration with `instances` server lines (BOT_INSTANCE_1 ... BOT_INSTANCE_<n>)."""
    text = HAPROXY_CONFIG.read_text(encoding="utf-8")
    match = _SERVER.search(text)
    assert match, "infra/haproxy/haproxy.cfg has no `server bot1` line"
    lines = [f'{match.group(1)}server bot{n} "${{BOT_INSTANCE_{n}}}" check' for n in range(1, instances + 1)]
    return _SERVER.sub("\n".join(lines), _OTHER_SERVERS.sub("", text))


@dataclass
class Instance:
    index: int
    child: Child
    port: int
    metrics_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    def scrape(self) -> str:
        with _DIRECT.open(f"http://{self.metrics_address}/metrics", timeout=10) as response:
            return str(response.read().decode("utf-8"))

    def ready(self) -> bool:
        code = self.child.exited()
        if code is not None:
            raise AssertionError(f"bot instance {self.index} exited with code {code}:\n{self.child.log_tail()}")
        return http_ok(f"http://{self.address}/healthz", timeout=2)


@dataclass
class Cluster:
    workdir: Path
    storage_connection_string: str
    ingestion_connection_string: str
    instances: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    # `memory` only makes sense with one instance: a baseline of what the shared store costs (loadtest/scaling.py).
    store: str = "blob"
    members: list[Instance] = field(default_factory=list)
    balancer: Child | None = None
    balancer_port: int = 0

    @property
    def messages_url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}/api/messages"

    def start(self) -> Cluster:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(haproxy, os.X_OK):
            raise RuntimeError("haproxy is not installed: run bash infra/dev/install.sh --test")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * self.instances + 1)
        self.balancer_port = ports.pop()
        for index in range(1, self.instances + 1):
            port, metrics_port = ports.pop(), ports.pop()
            env = bot_environment(
                {**os.environ, **self.env},
                port,
                metrics_port,
                self.ingestion_connection_string,
                self.workdir / f"telemetry-{index}",
            )
            env.update(
                {
                    "BOT_STATE_STORE": self.store,
                    "AZURE_STORAGE_CONNECTION_STRING": self.storage_connection_string,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                }
            )
            log = self.workdir / f"bot-{index}.log"
            child = Child(f"bot-{index}", [sys.executable, "-m", "bot"], log, env=env, cwd=self.workdir)
            self.members.append(Instance(index, child, port, metrics_port))
        for member in self.members:
            wait_until(member.ready, timeout=START_TIMEOUT_SECONDS, interval=0.1, message=f"bot-{member.index}")
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.instances), encoding="utf-8")
        balancer_env = {
            **os.environ,
            "BOT_BALANCER_BIND": f"127.0.0.1:{self.balancer_port}",
            **{f"BOT_INSTANCE_{m.index}": m.address for m in self.members},
        }
        self.balancer = Child(
            "haproxy", [haproxy, "-f", str(config), "-db"], self.workdir / "haproxy.log", env=balancer_env
        )
        wait_until(
            partial(self._balancing),
            timeout=START_TIMEOUT_SECONDS,
            interval=0.1,
            message="haproxy forwarding to the bot",
        )
        return self

    def _balancing(self) -> bool:
        assert self.balancer is not None
        code = self.balancer.exited()
        if code is not None:
            raise AssertionError(f"haproxy exited with code {code}:\n{self.balancer.log_tail()}")
        return http_ok(f"http://127.0.0.1:{self.balancer_port}/healthz", timeout=2)

    def stop(self) -> None:
        """haproxy, then each bot with SIGTERM (it flushes its telemetry)."""
        if self.balancer is not None:
            self.balancer.stop(timeout=5)
        for member in self.members:
            member.child.stop(timeout=30)
