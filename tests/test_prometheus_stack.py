"""The shipped Prometheus rules, alerts and dashboard against a real Prometheus and Alertmanager scraping the bot."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest

from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn
from tests.support.polling import wait_until_async
from tests.support.prometheus import (
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    RUNBOOK_BASE_URL_UNDER_TEST,
    Prometheus,
    fill_grafana_variables,
    has_data,
    panel_queries,
    stack,
    tool,
)

DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "chatbot-overview.json"
AUTH_FAILURES = 'bot_request_rejection="unauthorized"'
CONVERSATION = ("hi", "what can you do?", "banana spaceship", "feedback", "4", "skip", "feedback", "cancel", "help")


def test_the_shipped_configuration_and_rules_pass_promtool() -> None:
    for command in (
        ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        ["check", "rules", *map(str, RULE_FILES)],
        ["test", "rules", *map(str, sorted((PROMETHEUS_DIR / "tests").glob("*.yml")))],
    ):
        result = subprocess.run([tool("promtool"), *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_promtool_case_and_a_runbook() -> None:
    alerts = re.findall(r"^\s+- alert: (\w+)$", (PROMETHEUS_DIR / "rules" / "alerts.yml").read_text(), re.MULTILINE)
    cases = "\n".join(path.read_text() for path in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    documented = re.findall(r"^\| `(Chatbot\w+)` \|", (ROOT / "docs" / "monitoring.md").read_text(), re.MULTILINE)
    assert alerts
    assert sorted(alerts) == sorted(documented), "docs/monitoring.md's alert table differs from alerts.yml"
    for alert in alerts:
        quiet = rf"alertname: {alert}\n\s+exp_alerts: \[\]"
        fires = rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels:"
        assert re.search(quiet, cases), f"{alert} has no case that stays quiet"
        assert re.search(fires, cases), f"{alert} has no case that fires"
        assert (ROOT / "docs" / "runbooks" / f"{alert}.md").is_file(), f"{alert} has no runbook"


class Traffic:
    """Real conversations against the bot, in a bounded background loop: at most `limit` turns."""

    def __init__(
        self, bot: RunningBot, channel: ChannelStandIn, conversation: tuple[str, ...] = CONVERSATION, limit: int = 3000
    ) -> None:
        self._bot, self._channel, self._limit = bot, channel, limit
        self._conversation = conversation
        self.turns = 0
        self._stop = asyncio.Event()

    async def _user(self, number: int) -> None:
        async with EmulatorClient(self._bot.messages_url, self._channel.service_url) as emulator:
            while not self._stop.is_set() and self.turns < self._limit:
                for text in self._conversation:
                    if self._stop.is_set():
                        return
                    # Most turns answer inline; some go through the channel, as the Emulator does.
                    if number == 0 and text == "help":
                        await emulator.send(text)
                    else:
                        await emulator.expect_replies(text)
                    self.turns += 1
                if number == 1:  # and now and then a request the bot refuses
                    await emulator.post({"type": 7})

    @asynccontextmanager
    async def running(self, users: int = 4) -> AsyncIterator[Traffic]:
        tasks = [asyncio.create_task(self._user(number)) for number in range(users)]
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.gather(*tasks)


@pytest.fixture
async def scraped_bot(
    ingestion: IngestionStandIn, azure_sdk_offline: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningBot]:
    # Export to the Application Insights stand-in every second, so the export counters move while the test runs.
    for variable in ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY", "OTEL_METRIC_EXPORT_INTERVAL"):
        monkeypatch.setenv(variable, "1000")
    async with running_bot(connection_string=ingestion.connection_string) as bot:
        yield bot


async def test_prometheus_scrapes_the_bot_and_every_recording_rule_and_panelhas_data(
    scraped_bot: RunningBot, channel: ChannelStandIn, tmp_path: Path
) -> None:
    target = scraped_bot.metrics_url.removeprefix("http://").removesuffix("/metrics")
    records = re.findall(r"- record: (\S+)", RULE_FILES[0].read_text())
    with stack(tmp_path, target) as (prometheus, _):
        async with Traffic(scraped_bot, channel, (*CONVERSATION, "/fail")).running():
            await wait_until_async(
                lambda: [t for t in prometheus.targets() if t["health"] == "up"], timeout=20, message="target up"
            )
            # A target turns healthy before its scrape's samples are committed: wait for the sample itself.
            await wait_until_async(partial(has_data, prometheus, 'up{job="chatbot"}'), timeout=20, message="up")
            (up,) = await asyncio.to_thread(prometheus.query, 'up{job="chatbot"}')
            assert up["metric"]["environment"] == "test"
            assert up["value"][1] == "1"
            for record in records:
                await wait_until_async(partial(has_data, prometheus, record), timeout=60, message=record)
            for title, promql in panel_queries(DASHBOARD):
                if "ALERTS" in promql:  # needs an alert that fired: the fault test checks these panels
                    continue
                if AUTH_FAILURES in promql:  # needs a bot with an app id: the auth-failure test checks these
                    continue
                query = fill_grafana_variables(promql)
                await wait_until_async(
                    partial(has_data, prometheus, query), timeout=60, message=f"panel {title!r}: {query}"
                )
    assert len(records) >= 15


def _in_state(prometheus: Prometheus, alert: str, state: str | None) -> bool:
    return prometheus.alerts().get(alert) == state


async def _seconds_until(condition: Callable[[], bool], since: float, within: float, message: str) -> float:
    """Waits for `condition`; returns the seconds from `since` (a time.monotonic() reading) until it held."""
    await wait_until_async(condition, timeout=within, interval=0.2, message=message)
    return time.monotonic() - since


async def test_injected_faults_fire_alerts_that_alertmanager_delivers_and_that_resolve(
    scraped_bot: RunningBot, channel: ChannelStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = scraped_bot.metrics_url.removeprefix("http://").removesuffix("/metrics")
    faults = scraped_bot.faults
    alerts = ("ChatbotHighErrorRatio", "ChatbotSlowResponses")
    with stack(tmp_path, target, with_alertmanager=True) as (prometheus, webhook):
        async with Traffic(scraped_bot, channel).running(users=6):
            await wait_until_async(lambda: prometheus.query("chatbot:turns:rate5m"), timeout=20, message="turns")
            assert not set(prometheus.alerts()) & set(alerts)

            faults.configure(error_ratio=0.5, delay_ratio=1.0, delay_seconds=2.2)
            switched, timings = time.monotonic(), {}
            began = switched
            for alert in alerts:
                timings[f"{alert} firing in Prometheus"] = await _seconds_until(
                    partial(_in_state, prometheus, alert, "firing"), switched, 60, f"{alert} firing"
                )
                timings[f"{alert} delivered"] = await _seconds_until(
                    partial(webhook.notified, alert, "firing"), switched, 30, f"{alert} delivered"
                )
            (state,) = await asyncio.to_thread(prometheus.query, "bot_faults_error_ratio")
            assert state["value"][1] == "0.5"
            # The notification links to the runbook absolutely, under the configured base (external label).
            delivered = {
                alert["labels"]["alertname"]: alert["annotations"]["runbook_url"]
                for payload in list(webhook.payloads)
                for alert in payload["alerts"]
            }
            for alert in alerts:
                assert delivered[alert] == f"{RUNBOOK_BASE_URL_UNDER_TEST}/{alert}.md"

            faults.configure(error_ratio=0.0, delay_ratio=0.0, delay_seconds=0.0)
            switched = time.monotonic()
            for alert in alerts:
                timings[f"{alert} resolved in Prometheus"] = await _seconds_until(
                    partial(_in_state, prometheus, alert, None), switched, 60, f"{alert} resolved"
                )
                timings[f"{alert} resolution delivered"] = await _seconds_until(
                    partial(webhook.notified, alert, "resolved"), switched, 30, f"{alert} resolution delivered"
                )
            # The dashboard's MTTR: one firing episode per alert, firing for less than the whole test.
            mttr = [promql for title, promql in panel_queries(DASHBOARD) if title == "MTTR"]
            assert len(mttr) == 2
            elapsed = time.monotonic() - began
            for promql in mttr:
                # The panel samples the alert state at the shipped evaluation interval (15 s); this stack evaluates
                # every second, and its episodes can be shorter than 15 s.
                query = fill_grafana_variables(promql, "10m").replace("15s", "1s").replace("* 15)", "* 1)")
                found = await asyncio.to_thread(prometheus.query, query)
                values = {item["metric"].get("alertname", "all"): float(item["value"][1]) for item in found}
                assert set(values) >= ({"all"} if "sum(" in promql else set(alerts)), values
                assert all(0 < value <= elapsed + 15 for value in values.values()), values
    with capsys.disabled():
        print(
            "\nseconds after switching faults on/off (rule windows shortened):",
            json.dumps({k: round(v, 1) for k, v in timings.items()}),
        )


async def test_a_surge_of_failed_authentication_fires_its_alert_and_it_resolves(
    azure_sdk_offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Requests without a token and with a malformed one, against a bot with an app id (no signing keys needed)."""
    settings = {"MicrosoftAppId": "00000000-0000-0000-0000-00000000a11d", "MicrosoftAppPassword": "not-used-here"}
    alert = "ChatbotAuthFailureSurge"
    async with running_bot(settings) as bot:
        target = bot.metrics_url.removeprefix("http://").removesuffix("/metrics")
        with stack(tmp_path, target, with_alertmanager=True) as (prometheus, webhook):
            await wait_until_async(
                lambda: [t for t in prometheus.targets() if t["health"] == "up"], timeout=20, message="target up"
            )
            assert alert not in prometheus.alerts()
            stop = asyncio.Event()
            sent = 0

            async def probe() -> None:
                nonlocal sent
                async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9", channel_id="msteams") as client:
                    deadline = time.monotonic() + 90
                    while not stop.is_set() and sent < 5000 and time.monotonic() < deadline:
                        header = {"Authorization": "Bearer not.a.token"} if sent % 2 else {}
                        assert (await client.send("hello", header)).status == 401
                        sent += 1
                        # Pacing of the probe (about 20 requests/s), not synchronisation.
                        await asyncio.sleep(0.05)

            started = time.monotonic()
            prober = asyncio.create_task(probe())
            timings = {}
            try:
                timings["firing in Prometheus"] = await _seconds_until(
                    partial(_in_state, prometheus, alert, "firing"), started, 60, f"{alert} firing"
                )
                timings["delivered"] = await _seconds_until(
                    partial(webhook.notified, alert, "firing"), started, 30, f"{alert} delivered"
                )
            finally:
                stop.set()
                await prober
            reasons = await asyncio.to_thread(
                prometheus.query, "sum by (bot_auth_failure) (bot_requests_rejected_total)"
            )
            counted = {item["metric"]["bot_auth_failure"]: float(item["value"][1]) for item in reasons}
            assert set(counted) == {"missing", "malformed"}
            assert sum(counted.values()) <= sent
            panels = [(title, promql) for title, promql in panel_queries(DASHBOARD) if AUTH_FAILURES in promql]
            assert panels
            for title, promql in panels:
                # A minute's window: the probe has just stopped, and a 10 s rate could already read nothing.
                query = fill_grafana_variables(promql).replace("[10s]", "[1m]")
                found = await asyncio.to_thread(prometheus.query, query)
                assert {item["metric"].get("bot_auth_failure") for item in found} == set(counted), title
            stopped = time.monotonic()
            timings["resolved in Prometheus"] = await _seconds_until(
                partial(_in_state, prometheus, alert, None), stopped, 60, f"{alert} resolved"
            )
            timings["resolution delivered"] = await _seconds_until(
                partial(webhook.notified, alert, "resolved"), stopped, 30, f"{alert} resolution delivered"
            )
        assert await bot.total(catalog.TURNS) == 0
    with capsys.disabled():
        print(
            f"\n{alert}: seconds after the probe started/stopped (rule windows shortened; {sent} requests):",
            json.dumps({k: round(v, 1) for k, v in timings.items()}),
        )
