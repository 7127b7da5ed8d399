"""Real Prometheus and Alertmanager processes for the tests, on ephemeral 127.0.0.1 ports, with the shipped
configuration and rules — their time windows shortened so alerts fire and resolve within seconds."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest.rig.ports import free_port
from loadtest.rig.processes import Child, http_ok
from tests.support import BackgroundServer
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
ALERTMANAGER_CONFIG = ROOT / "infra" / "alertmanager" / "alertmanager.yml"
RULE_FILES = (PROMETHEUS_DIR / "rules" / "recording.yml", PROMETHEUS_DIR / "rules" / "alerts.yml")
RUNBOOK_BASE_URL_UNDER_TEST = "https://runbooks.test.invalid/chatbot"

# Minutes and hours of the shipped rules become seconds here: the shape of each rule stays, the waiting goes.
FAST_WINDOWS = {"[5m]": "[10s]", "[1h]": "[1m]", "offset 5m": "offset 10s"}
FAST_FOR = re.compile(r"^(\s*)for: \d+[smh]$", re.MULTILINE)


def tool(name: str) -> str:
    # Debian names the Alertmanager binary prometheus-alertmanager; upstream archives name it alertmanager.
    path = shutil.which(name) or shutil.which(f"prometheus-{name}")
    assert path, f"{name} is not installed: run `bash infra/dev/install.sh --test` (it installs Debian's {name})"
    return path


def fast_rules(text: str) -> str:
    for slow, fast in FAST_WINDOWS.items():
        text = text.replace(slow, fast)
    return FAST_FOR.sub(r"\1for: 3s", text)


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class Process(Child):
    """A Prometheus or Alertmanager process, its output in `log` and shown when it fails."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        super().__init__(name, args, log)

    def output(self) -> str:
        return self.log_tail(40)

    def ready(self, url: str) -> bool:
        code = self.exited()
        assert code is None, f"{self.name} exited with code {code}:\n{self.output()}"
        return http_ok(url)


class Prometheus(Process):
    def __init__(self, workdir: Path, scrape_target: str, alertmanager: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = []
        for rule_file in RULE_FILES:
            fast = workdir / rule_file.name
            fast.write_text(fast_rules(rule_file.read_text()))
            rules.append(str(fast))
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                # Not the shipped value, so that a delivered runbook_url proves the rules read the label.
                "external_labels": {"runbook_base_url": RUNBOOK_BASE_URL_UNDER_TEST},
            },
            "rule_files": rules,
            "scrape_configs": [
                {
                    "job_name": "chatbot",
                    "static_configs": [{"targets": [scrape_target], "labels": {"environment": "test"}}],
                }
            ],
        }
        if alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        config_file = workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        subprocess.run([tool("promtool"), "check", "config", str(config_file)], check=True, capture_output=True)
        super().__init__(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--rules.alert.resend-delay=1s",
                "--enable-feature=exemplar-storage",  # the bot's exemplars (BOT_PROMETHEUS_EXEMPLARS)
            ],
            workdir / "prometheus.log",
        )
        wait_until(lambda: self.ready(f"{self.url}/-/ready"), timeout=20, message=f"Prometheus ready on {self.url}")

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        body = _get_json(url)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def exemplars(self, promql: str) -> list[dict[str, Any]]:
        """Exemplars of the series `promql` selects, over the last ten minutes."""
        now = time.time()
        parameters = {"query": promql, "start": now - 600, "end": now + 60}
        body = _get_json(f"{self.url}/api/v1/query_exemplars?" + urllib.parse.urlencode(parameters))
        assert body["status"] == "success", body
        return [exemplar for series in body["data"] for exemplar in series["exemplars"]]

    def targets(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"])

    def alerts(self) -> dict[str, str]:
        """alertname → state (pending/firing) of the alerts Prometheus holds now."""
        alerts = _get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return {alert["labels"]["alertname"]: alert["state"] for alert in alerts}


class WebhookReceiver(BackgroundServer):
    """Where Alertmanager delivers notifications: records every payload it posts."""

    def __init__(self) -> None:
        super().__init__("alert-webhook")
        self.payloads: list[dict[str, Any]] = []

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        self.payloads.append(await request.json())
        return web.Response(status=200)

    def notified(self, alertname: str, status: str) -> bool:
        return any(
            alert["labels"].get("alertname") == alertname and alert["status"] == status
            for payload in list(self.payloads)
            for alert in payload["alerts"]
        )


class Alertmanager(Process):
    def __init__(self, workdir: Path, webhook_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = ALERTMANAGER_CONFIG.read_text()
        config = config.replace("http://127.0.0.1:5001/alerts", webhook_url)
        config = re.sub(r"group_wait: \S+", "group_wait: 1s", config)
        config = re.sub(r"group_interval: \S+", "group_interval: 1s", config)
        config_file = workdir / "alertmanager.yml"
        config_file.write_text(config)
        subprocess.run([tool("amtool"), "check-config", str(config_file)], check=True, capture_output=True)
        super().__init__(
            "alertmanager",
            [
                tool("alertmanager"),
                f"--config.file={config_file}",
                f"--storage.path={workdir / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            workdir / "alertmanager.log",
        )
        wait_until(lambda: self.ready(f"{self.url}/-/ready"), timeout=20, message=f"Alertmanager ready on {self.url}")


@contextmanager
def stack(workdir: Path, scrape_target: str, with_alertmanager: bool = False) -> Iterator[tuple[Prometheus, Any]]:
    """Prometheus scraping `scrape_target`; with Alertmanager and a webhook receiver when asked."""
    processes: list[Process] = []
    webhook = WebhookReceiver() if with_alertmanager else None
    try:
        alertmanager = None
        if webhook is not None:
            webhook.start()
            alertmanager = Alertmanager(workdir, f"{webhook.base_url}/alerts")
            processes.append(alertmanager)
        prometheus = Prometheus(workdir, scrape_target, f"127.0.0.1:{alertmanager.port}" if alertmanager else None)
        processes.append(prometheus)
        yield prometheus, webhook
    finally:
        for process in reversed(processes):
            process.stop()
        if webhook is not None:
            webhook.stop()


def panel_queries(dashboard_file: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel of a Grafana dashboard, rows' panels included."""
    panels = list(json.loads(dashboard_file.read_text())["panels"])
    queries: list[tuple[str, str]] = []
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        queries.extend((panel.get("title", "?"), t["expr"]) for t in panel.get("targets", []) if t.get("expr"))
    return queries


def fill_grafana_variables(promql: str, range_: str = "1m") -> str:
    """A dashboard query with Grafana's variables filled in for a Prometheus that scrapes every few seconds."""
    for variable, value in (
        ("$__rate_interval", "10s"),
        ("$__interval", "2s"),
        ("$__range", range_),
        ("$environment", ".*"),
        ("$instance", ".*"),
    ):
        promql = promql.replace(variable, value)
    return promql


async def has_data(prometheus: Prometheus, promql: str) -> bool:
    return bool(await asyncio.to_thread(prometheus.query, promql))
