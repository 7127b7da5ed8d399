"""The weekly report against a real Prometheus scraping the real bot; the Grafana, compose and runbook files.

The end-to-end test starts Debian's `prometheus` with the shipped rule files, scraping the bot every second, drives
turns until Prometheus has recorded enough of them, then runs `python -m telemetry.weekly` and checks what it wrote.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import matplotlib.image
import numpy as np
import pytest
from matplotlib.dates import num2date

from loadtest.rig.ports import free_port
from loadtest.rig.processes import Child
from telemetry import catalog
from telemetry.catalog import Instrument
from telemetry.weekly import analysis, charts, cli, client, collect, queries, sections, windows
from tests.support.botserver import running_bot
from tests.support.emulator import EmulatorClient
from tests.support.polling import wait_until_async

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
RULES = INFRA / "prometheus" / "rules"
RULE_FILES = (RULES / "recording.yml", RULES / "alerts.yml")
DASHBOARD = INFRA / "grafana" / "dashboards" / "chatbot-overview.json"
DATASOURCE = INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = INFRA / "grafana" / "provisioning" / "dashboards" / "chatbot.yml"
COMPOSE = INFRA / "compose.yaml"
COMPOSE_TARGETS = INFRA / "compose" / "targets" / "bot.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"

# A rule of the test's own that fires at once, so the report has an alert to show without waiting minutes.
DRILL_ALERT = "ReportDrillAlert"
DRILL_RULES = f"""groups:
  - name: report-test
    rules:
      - alert: {DRILL_ALERT}
        expr: chatbot:turn_errors:rate5m > 0
        labels:
          severity: warning
"""
CHARTS = {
    "traffic.png": ["turns_per_second", "requests_per_second"],
    "errors.png": ["turn_error_ratio", "http_5xx_ratio"],
    "latency.png": ["latency_p50", "latency_p95", "latency_p99"],
    "knowledge.png": ["answers_per_second", "fallbacks_per_second", "fallback_ratio"],
    "alerts.png": ["alerts_firing"],
}
SECTIONS = (
    "Key figures against objectives",
    "SLO attainment",
    "Traffic",
    "Error ratio",
    "Latency",
    "Answers and fallbacks",
    "Security",
    "Alerts fired",
)
TURNS = ("help", "blorp wibble zonk", "/fail", "what can you do?", "which alerts exist?")
ENOUGH_EVALUATIONS = 14  # rule evaluations with traffic before the report runs
LOCAL = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    assert path, "prometheus is not installed (Debian package `prometheus`)"
    return path


class PrometheusServer(Child):
    """One Prometheus process on an ephemeral port; `stop()` in a finally."""

    def __init__(self, workdir: Path, scrape_target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        drill = workdir / "drill.yml"
        drill.write_text(DRILL_RULES)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [*(str(path) for path in RULE_FILES), str(drill)],
            "scrape_configs": [
                {
                    "job_name": "chatbot",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [scrape_target], "labels": {"environment": "test"}}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config))  # JSON is YAML
        command = [
            prometheus_binary(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        super().__init__("prometheus", command, workdir / "prometheus.log")

    def output(self) -> str:
        return self.log_tail(40)


async def query(session: aiohttp.ClientSession, url: str, promql: str) -> list[dict[str, Any]]:
    async with session.get(f"{url}/api/v1/query", params={"query": promql}) as response:
        body = await response.json()
    assert body["status"] == "success", (promql, body)
    return list(body["data"]["result"])


async def scalar(session: aiohttp.ClientSession, url: str, promql: str) -> float:
    result = await query(session, url, promql)
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
async def prometheus_and_bot(tmp_path: Path) -> AsyncIterator[tuple[PrometheusServer, Any]]:
    async with running_bot() as bot:
        server = PrometheusServer(tmp_path, bot.metrics_url.removeprefix("http://").removesuffix("/metrics"))
        try:
            yield server, bot
        finally:
            server.stop()


async def test_weekly_report_from_a_real_prometheus(
    prometheus_and_bot: tuple[PrometheusServer, Any], tmp_path: Path
) -> None:
    prometheus, bot = prometheus_and_bot
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def ready() -> bool:
            assert prometheus.process.poll() is None, f"Prometheus exited:\n{prometheus.output()}"
            try:
                async with session.get(f"{prometheus.url}/-/ready") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_until_async(ready, timeout=20, interval=0.1, message=f"Prometheus ready at {prometheus.url}")

        async def last_scrape() -> float:
            return await scalar(session, prometheus.url, 'timestamp(up{job="chatbot"})')

        async def enough() -> bool:
            evaluations = await scalar(session, prometheus.url, "count_over_time(chatbot:turns:rate5m[1m])")
            firing = await query(session, prometheus.url, f'ALERTS{{alertname="{DRILL_ALERT}",alertstate="firing"}}')
            return evaluations >= ENOUGH_EVALUATIONS and bool(firing)

        # Prometheus applies discovered targets a few seconds after start: wait for its first scrape of the bot.
        await wait_until_async(last_scrape, timeout=20, interval=0.2, message="the first scrape of the bot")

        # A few turns per scrape until the rules have seen enough of them: bounded by the deadline, paced by the
        # scrapes themselves.
        deadline = time.monotonic() + 30
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            while not await enough():
                assert time.monotonic() < deadline, f"Prometheus did not record enough turns:\n{prometheus.output()}"
                for text in TURNS:
                    response = await emulator.expect_replies(text)
                    assert response.status == 200, response
                seen = await last_scrape()

                async def scraped_again(seen: float = seen) -> bool:
                    return await last_scrape() > seen

                await wait_until_async(scraped_again, timeout=5, interval=0.1, message="the next scrape")

        # The dashboard's queries are valid PromQL against the real series (Grafana's variables filled in).
        dashboard_text = DASHBOARD.read_text()
        for expr in dashboard_exprs(json.loads(dashboard_text)):
            concrete = (
                expr.replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$environment", ".*")
                .replace("$instance", ".*")
            )
            await query(session, prometheus.url, concrete)

    out = tmp_path / "report"
    end = datetime.now(UTC)
    future = end + timedelta(hours=1)  # clamped to now: nothing after now can be in Prometheus
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "telemetry.weekly",
        "--prometheus",
        prometheus.url,
        "--start",
        (end - timedelta(minutes=1)).isoformat(),
        "--end",
        future.isoformat(),
        "--step",
        "2s",
        "--out",
        str(out),
        cwd=ROOT,
        env={**os.environ, **LOCAL},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "is in the future; the range ends now" in log, log
    assert len(re.findall(r"^\s+\[\s*\d+/\d+\] ", log, re.MULTILINE)) == len(queries.QUERIES), log

    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f"## {section}" in markdown
        assert f"<h2>{section}</h2>" in page
    assert DRILL_ALERT in markdown
    assert DRILL_ALERT in page

    summary = json.loads((out / "report.json").read_text())
    assert summary["charts"] == CHARTS, summary["charts"]
    for chart, keys in CHARTS.items():
        assert f"]({chart})" in markdown
        assert f'<img src="{chart}"' in page
        for key in keys:
            series = summary["series"][key]
            assert series, f"{key} has no series"
            assert len(series[0]["points"]) >= 2, f"{key} has no data: {series}"
        assert_real_picture(out / chart)
    slo = summary["slo"]
    assert slo["total_turns"] >= ENOUGH_EVALUATIONS
    assert 0 < slo["failed_turns"] < slo["total_turns"]
    assert slo["steps_with_traffic"] > 0
    assert slo["attainment"] is not None
    assert 0 < slo["availability"] <= 1
    assert datetime.fromisoformat(summary["end"]) < future
    [drill] = [alert for alert in summary["alerts"] if alert["alertname"] == DRILL_ALERT]
    # The episode starts at Prometheus' first evaluation that found the alert firing, read back from Prometheus.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        [samples] = await query(
            session, prometheus.url, f'ALERTS{{alertname="{DRILL_ALERT}",alertstate="firing"}}[5m] @ {end_of(summary)}'
        )
    firing_times = [float(timestamp) for timestamp, _ in samples["values"]]
    assert firing_times[0] >= datetime.fromisoformat(summary["start"]).timestamp(), "fired before the range: widen it"
    [episode] = drill["episodes"]
    assert episode["since"] == firing_times[0]
    assert episode["resolved"] is False, "the drill alert still fires at the end of the range"
    assert episode["until"] == datetime.fromisoformat(summary["end"]).timestamp()
    assert "≈" in markdown, "estimated counts must be marked as estimates"
    assert summary["kpis"]["Uptime (successful scrapes)"]["value"] == slo["availability"]


def end_of(summary: dict[str, Any]) -> float:
    return datetime.fromisoformat(summary["end"]).timestamp()


def assert_real_picture(path: Path) -> None:
    pixels = matplotlib.image.imread(str(path))
    assert pixels.ndim == 3, pixels.shape
    assert pixels.shape[0] > 100, pixels.shape
    assert pixels.shape[1] > 300, pixels.shape
    colours = np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)
    assert len(colours) > 20, f"{path.name} looks blank ({len(colours)} colours)"


def test_unreachable_prometheus_exits_2_naming_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = cli.main(["--prometheus", url, "--days", "1", "--out", str(tmp_path / "out"), "--timeout", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot reach Prometheus at {url}" in err
    assert not (tmp_path / "out").exists()


def test_auto_step_and_rate_window() -> None:
    window = windows.make_window(None, 7, "2025-01-13T00:00:00Z", "auto")
    assert window.start == datetime(2025, 1, 6, tzinfo=UTC)
    assert window.step == 1800
    assert window.rate_window == 1800
    short = windows.make_window("2025-01-13T00:00:00", None, "2025-01-13T00:10:00", "5s")
    assert short.step == 5
    assert short.rate_window == windows.MIN_RATE_WINDOW_SECONDS
    with pytest.raises(ValueError, match="before the end"):
        windows.make_window("2025-01-14T00:00:00Z", None, "2025-01-13T00:00:00Z", "auto")


def test_an_end_in_the_future_is_clamped_to_now() -> None:
    now = datetime(2025, 1, 13, 12, 0, tzinfo=UTC)
    window = windows.make_window(None, 7, "2025-01-20T00:00:00Z", "auto", now=now)
    assert window.end == now
    assert window.start == now - timedelta(days=7)
    assert "in the future" in window.note
    assert windows.make_window(None, 7, "2025-01-13T00:00:00Z", "auto", now=now).note == ""


# ---- alert episodes and MTTR from Prometheus' alert state -----------------------------------------------------------

EVALUATION = 15.0


def _firing(alertname: str, times: list[float], **labels: str) -> client.Series:
    return client.Series(
        {"__name__": "ALERTS", "alertname": alertname, "alertstate": "firing", **labels}, [(t, 1.0) for t in times]
    )


def _for_state(alertname: str, samples: list[tuple[float, float]], **labels: str) -> client.Series:
    return client.Series({"__name__": "ALERTS_FOR_STATE", "alertname": alertname, **labels}, samples)


def _every(start: float, count: int) -> list[float]:
    return [start + EVALUATION * number for number in range(count)]


def test_alert_episodes_last_as_long_as_prometheus_found_them_firing() -> None:
    """An alert firing for 1.5 min is reported as 1.5 min (plus the evaluation that found it resolved), whatever the
    report's step; two episodes are told apart by ALERTS_FOR_STATE even without a gap between them."""
    first = _every(1000, 6)  # firing at 1000 … 1075: resolved at the evaluation at 1090
    second = _every(2000, 3)  # 2000 … 2030
    third = _every(2045, 2)  # right after, but a new activation (another active-at time)
    for_state = [(t, 940.0) for t in first] + [(t, 1940.0) for t in second] + [(t, 2040.0) for t in third]
    alerts = analysis.alert_episodes(
        [_firing("ChatbotSlowResponses", first + second + third, instance="bot-1", severity="warning")],
        [_for_state("ChatbotSlowResponses", for_state, instance="bot-1", severity="warning")],
        end=9000,
    )
    [alert] = alerts
    assert [(e.since, e.until, e.resolved) for e in alert.episodes] == [
        (1000, 1090, True),
        (2000, 2045, True),
        (2045, 2075, True),
    ]
    assert alert.episodes[0].seconds == 90
    assert alert.mttr_seconds == (90 + 45 + 30) / 3
    assert alert.labels == {"instance": "bot-1", "severity": "warning"}


def test_a_late_evaluation_does_not_split_an_episode() -> None:
    """A busy Prometheus evaluates late: a gap of three intervals with the same active-at time is one episode."""
    times = [*_every(1000, 4), *_every(1000 + EVALUATION * 6, 4)]
    alerts = analysis.alert_episodes(
        [_firing("ChatbotSlowResponses", times)],
        [_for_state("ChatbotSlowResponses", [(t, 940.0) for t in times])],
        9000,
    )
    [episode] = alerts[0].episodes
    assert episode.since == 1000


def test_an_alert_still_firing_at_the_end_is_open_and_left_out_of_mttr() -> None:
    alerts = analysis.alert_episodes(
        [_firing("ChatbotDown", _every(100, 4), instance="a"), _firing("ChatbotHighCpu", _every(10, 2), instance="a")],
        [],
        end=100 + EVALUATION * 3,
    )
    by_name = {alert.alertname: alert for alert in alerts}
    [open_episode] = by_name["ChatbotDown"].episodes
    assert (open_episode.since, open_episode.until, open_episode.resolved) == (100, 145, False)
    assert by_name["ChatbotDown"].mttr_seconds is None
    assert by_name["ChatbotHighCpu"].mttr_seconds == 30
    assert analysis.overall_mttr(alerts) == (30, 1)


def test_key_figures_compare_the_seeds_kpis_with_their_objectives() -> None:
    window = windows.make_window("2025-01-13T00:00:00Z", None, "2025-01-13T01:00:00Z", "1m")
    results = collect.Results(window, "http://prometheus")
    for key, value in (("availability", 0.9995), ("total_turns", 1000.0), ("failed_turns", 20.0)):
        results.series[key] = [client.Series({}, [(0.0, value)])]
    results.series["latency_p95_range"] = [client.Series({}, [(0.0, 3.5)])]
    down = _firing("ChatbotDown", _every(1000, 4))
    figures = {
        kpi.name: kpi for kpi in sections.kpis(results, analysis.alert_episodes([down], [], 9000), 2.0, 0.01, 0.999)
    }
    assert figures["Uptime (successful scrapes)"].met == "met"
    assert figures["Error rate (failed turns / turns)"].value == 0.02
    assert figures["Error rate (failed turns / turns)"].met == "missed"
    p95 = figures["p95 response time of /api/messages"]
    assert p95.met == "missed"
    assert "histogram estimate, between the bucket edges 2.5 s and 5 s" in p95.shown
    assert figures["MTTR (alert firing → resolved)"].value == 60
    assert analysis.bucket_edges(2.505) == (2.5, 5.0)
    assert analysis.bucket_edges(2.2) == (2.0, 2.5)


def test_the_security_line_counts_failed_authentication_by_reason() -> None:
    window = windows.make_window("2025-01-13T00:00:00Z", None, "2025-01-13T01:00:00Z", "1m")
    results = collect.Results(window, "http://prometheus")
    assert sections.security_lines(results) == ["No request failed authentication in this range."]
    results.series["auth_failures_by_reason"] = [
        client.Series({"bot_auth_failure": "missing"}, [(0.0, 12.2)]),
        client.Series({"bot_auth_failure": "expired"}, [(0.0, 30.0)]),
        client.Series({"bot_auth_failure": "malformed"}, [(0.0, 0.0)]),
    ]
    line = sections.security_lines(results)[0]
    assert line == (
        "Requests that failed authentication (401): ≈ 42 (estimated); by reason: expired ≈ 30, missing ≈ 12."
    )
    assert analysis.auth_failures(results) == (42.2, [("expired", 30.0), ("missing", 12.2), ("malformed", 0.0)])
    built = sections.build_sections(results, analysis.slo_summary(results, 2.0, 0.01), [], {}, 2.0, 0.01)
    assert [section.paragraphs[0] for section in built if section.title == "Security"] == [line]
    query = queries.QUERIES_BY_KEY["auth_failures_by_reason"].expr
    assert 'bot_requests_rejected_total{bot_request_rejection="unauthorized"}' in query


# ---- charts: what is drawn is the data ------------------------------------------------------------------------------


def _results_with(points: dict[str, list[tuple[float, float]]]) -> collect.Results:
    window = windows.make_window("2025-01-13T00:00:00Z", None, "2025-01-13T02:00:00Z", "1m")
    results = collect.Results(window, "http://prometheus")
    for key, values in points.items():
        results.series[key] = [client.Series({}, values)]
    return results


def _drawn(chart_file: str, results: collect.Results) -> dict[str, tuple[list[float], list[float], Any]]:
    """label -> (unix seconds, values, markevery) of every data line of a report chart."""
    [chart] = [chart for chart in charts.chart_specs(2.0, 0.01) if chart.file == chart_file]
    drawn = charts.chart_figure(chart, results)
    assert drawn is not None
    figure, _ = drawn
    lines: dict[str, tuple[list[float], list[float], Any]] = {}
    for axes in figure.axes:
        for line in axes.get_lines():
            xs: list[Any] = list(np.asarray(line.get_xdata(), dtype=object))
            ys = [float(y) for y in np.asarray(line.get_ydata(), dtype=float)]
            if len(xs) == 2 and ys[0] == ys[1] and line.get_linestyle() == "--":
                continue  # the objective line
            seconds = [x.timestamp() if isinstance(x, datetime) else num2date(x).timestamp() for x in xs]
            lines[str(line.get_label())] = ([round(t) for t in seconds], ys, line.get_markevery())
    return lines


def test_report_charts_plot_exactly_the_series_they_came_from() -> None:
    start = datetime(2025, 1, 13, tzinfo=UTC).timestamp()
    turns = [(start + 60 * n, 0.5 + n / 10) for n in range(100)]  # dense
    ratio = [(start + 60 * n, 0.02) for n in range(100)]
    errors = [(start + 600, 0.25)]  # a single point: sparse
    results = _results_with(
        {"turns_per_second": turns, "requests_per_second": turns, "turn_error_ratio": errors, "http_5xx_ratio": ratio}
    )
    traffic = _drawn("traffic.png", results)
    assert traffic["turns/s"][:2] == ([round(t) for t, _ in turns], [v for _, v in turns])
    error_chart = _drawn("errors.png", results)
    assert error_chart["failed turns"][:2] == ([round(start + 600)], [25.0])  # scaled to %
    assert error_chart["failed turns"][2] is None, "a lone point is drawn with a marker (a line needs two points)"
    assert error_chart["HTTP 5xx"][1] == [2.0] * 100
    assert traffic["turns/s"][2] == [], "a dense, gapless series has no markers"


def test_an_isolated_point_in_a_dense_series_gets_a_marker() -> None:
    start = datetime(2025, 1, 13, tzinfo=UTC).timestamp()
    points = [(start + 60 * n, 1.0) for n in range(80)] + [(start + 60 * 100, 2.0)]
    drawn = _drawn("traffic.png", _results_with({"turns_per_second": points}))
    assert drawn["turns/s"][2] == [80]


# ---- the dashboard ------------------------------------------------------------------------------------------------

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
CATALOG_SERIES = frozenset(
    metric.prometheus_name + suffix
    for metric in catalog.METRICS
    for suffix in (HISTOGRAM_SUFFIXES if metric.instrument is Instrument.HISTOGRAM else ("",))
)
FILTER = ('environment=~"$environment"', 'instance=~"$instance"')
PROMETHEUS_OWN_SERIES = frozenset({"up", "ALERTS"})
PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def recording_rules() -> set[str]:
    return set(re.findall(r"^\s*- record:\s*(\S+)\s*$", (RULES / "recording.yml").read_text(), re.MULTILINE))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in all_panels(dashboard["panels"]) for target in panel.get("targets", [])]


def series_in(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords or labels."""
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr)  # label matchers go, the names stay
    text = _STRINGS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    names = set()
    for name, call in _IDENTIFIER.findall(text):
        if not call and name not in PROMQL_WORDS and not name.startswith("$"):
            names.add(name)
    return names


def test_series_in_reads_names_from_promql() -> None:
    expr = (
        'sum by (le) (rate(a_total{x="y{z}"}[$__rate_interval])) / on (job) group_left max(b:c:d) '
        'or vector(0) and histogram_quantile(0.5, e_bucket{le!=""}) offset 5m'
    )
    assert series_in(expr) == {"a_total", "b:c:d", "e_bucket"}


def test_dashboard_uses_the_datasource_the_variables_and_known_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "Chatbot overview"
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "environment", "instance"}
    # Imported into any Grafana, the dashboard asks for a Prometheus data source instead of expecting a uid.
    source = variables.pop("datasource")
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    assert dashboard["templating"]["list"][0]["name"] == "datasource", "the other variables query it"
    assert '"uid": "prometheus"' not in DASHBOARD.read_text(), "a hard-coded data source uid is left"
    expected_queries = {
        "environment": 'label_values(up{job="chatbot"}, environment)',
        "instance": 'label_values(up{job="chatbot", environment=~"$environment"}, instance)',
    }
    for name, variable in variables.items():
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["allValue"] == ".*"
        assert variable["query"]["query"] == expected_queries[name] == variable["definition"]

    known = CATALOG_SERIES | recording_rules() | PROMETHEUS_OWN_SERIES
    panels = [panel for panel in all_panels(dashboard["panels"]) if panel["type"] not in ("row", "alertlist")]
    assert {panel["type"] for panel in panels} <= {"timeseries", "stat"}
    read: set[str] = set()
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            where = f"{panel['title']}: {target['expr']}"
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            selectors = _SELECTOR.findall(target["expr"])
            assert selectors, where
            for name, matchers in selectors:
                assert name, f"selector without a metric name in {where}"
                assert all(f in matchers for f in FILTER), f"{name} is not filtered by the variables in {where}"
            names = series_in(target["expr"])
            assert names <= known, f"unknown series {sorted(names - known)} in {where}"
            assert names == {name for name, _ in selectors}, where
            read |= names
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))

    titles = " / ".join(panel["title"] for panel in panels)
    for wanted in ("Turns and requests", "Error ratio", "Response time", "Turns by channel", "Turns by activity type"):
        assert wanted in titles
    for series in (
        "chatbot:turns:rate5m",
        "chatbot:http_requests:rate5m",
        "chatbot:http_request_duration_seconds:p95_5m",
        "bot_knowledge_fallbacks_total",
        "bot_dialogs_cancelled_total",
        "bot_conversations_active",
        "chatbot:process_cpu_cores:rate5m",
        "process_memory_usage_bytes",
        "otel_sdk_exporter_span_exported_total",
        "chatbot:telemetry_export_failures:rate5m",
        "bot_faults_error_ratio",
        "bot_faults_delay_seconds",
    ):
        assert series in read, f"no panel shows {series}"
    thresholds = {
        panel["title"]: [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        for panel in panels
        if panel["type"] == "timeseries"
        and panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    }
    assert thresholds["Response time of /api/messages"][-1] == 2
    assert thresholds["CPU utilisation"][-1] == 0.8


def _panels_by_title(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {panel["title"]: panel for panel in all_panels(dashboard["panels"]) if panel["type"] != "row"}


def test_dashboard_editability_matches_its_provisioning() -> None:
    """Grafana refuses to save changes to a dashboard provisioned with allowUiUpdates: false; offering an edit button
    that cannot save is a trap, so the dashboard says what the provider allows."""
    dashboard = json.loads(DASHBOARD.read_text())
    [provider] = parse_yaml(DASHBOARD_PROVIDER.read_text())["providers"]
    assert dashboard["editable"] is provider["allowUiUpdates"]


def test_dashboard_stats_and_series_agree_on_units_and_stats_of_a_moment_are_instant() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels_by_title(dashboard)
    # A stat and a series panel drawing the same query show it in the same unit.
    units: dict[str, set[str]] = {}
    for panel in panels.values():
        if panel["type"] not in ("stat", "timeseries"):
            continue
        overridden = {
            override["matcher"]["options"]
            for override in panel["fieldConfig"].get("overrides", [])
            if any(prop["id"] == "unit" for prop in override["properties"])
        }
        for target in panel["targets"]:
            if target["refId"] not in overridden:
                units.setdefault(target["expr"], set()).add(panel["fieldConfig"]["defaults"]["unit"])
    assert {expr: found for expr, found in units.items() if len(found) > 1} == {}
    shown = [target["expr"] for panel in panels.values() for target in panel.get("targets", [])]
    shared = [expr for expr in units if shown.count(expr) > 1]
    assert shared, "no query is shown by both a stat and a series panel: the check above checks nothing"
    # Numbers over the dashboard's range ($__range) are one value: an instant query, not a series of points.
    for panel in panels.values():
        for target in panel.get("targets", []):
            if "$__range" in target["expr"]:
                assert target.get("instant") is True, panel["title"]
                assert target.get("range") is False, panel["title"]
    funnel = panels["Dialog funnel"]
    assert all(target["instant"] for target in funnel["targets"])


def test_dashboard_shows_the_alerts_and_the_service_level_against_objectives() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels_by_title(dashboard)
    alert_lists = [panel for panel in panels.values() if panel["type"] == "alertlist"]
    assert len(alert_lists) == 1
    options = alert_lists[0]["options"]
    assert options["stateFilter"]["firing"]
    assert options["stateFilter"]["pending"]
    alerts = re.findall(r"^\s*- alert:\s*(\S+)\s*$", (RULES / "alerts.yml").read_text(), re.MULTILINE)
    assert all(alert.startswith(options["alertName"]) for alert in alerts), "the name filter hides an alert"
    objectives = json.loads((ROOT / "loadtest" / "slo.json").read_text())
    steps = {
        title: [step["value"] for step in panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        for title in ("Uptime", "Error rate vs objective", "p95 latency vs objective", "MTTR")
    }
    assert steps["Error rate vs objective"][-1] == objectives["error_ratio"]
    assert steps["p95 latency vs objective"][-1] == objectives["reply_p95_seconds"]
    assert steps["Uptime"][-1] == 0.999
    mttr = [target["expr"] for target in panels["MTTR"]["targets"]]
    assert all('ALERTS{alertstate="firing"' in expr for expr in mttr)
    # It samples the alert state at Prometheus' evaluation interval: one sample per evaluation, none missed.
    evaluation = parse_yaml((INFRA / "prometheus" / "prometheus.yml").read_text())["global"]["evaluation_interval"]
    assert evaluation == "15s"
    assert all(expr.count(":15s]") == 2 for expr in mttr)
    assert all("* 15)" in expr for expr in mttr)
    assert all("offset 15s" in expr for expr in mttr)
    assert any(expr.startswith("(sum(") for expr in mttr), "no overall MTTR"


# ---- compose, Grafana provisioning, runbooks ----------------------------------------------------------------------


class YamlSubsetError(ValueError):
    pass


def parse_yaml(text: str) -> Any:
    """A strict reader for the YAML the infra files use: block mappings and sequences, plain or quoted scalars,
    flow sequences of scalars and comments. Anything outside that subset is an error, so what it accepts is YAML."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {number}: tab in indentation")
        content = _strip_comment(raw).rstrip()
        if content.strip():
            lines.append((number, len(content) - len(content.lstrip()), content.strip()))
    if not lines:
        return None
    value, end = _block(lines, 0, lines[0][1])
    if end != len(lines):
        raise YamlSubsetError(f"line {lines[end][0]}: unexpected indentation")
    return value


def _strip_comment(line: str) -> str:
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'" and (index == 0 or line[index - 1] in " [,:-"):
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] == " "):
            return line[:index]
    return line


def _block(lines: list[tuple[int, int, str]], index: int, indent: int) -> tuple[Any, int]:
    if lines[index][2].startswith("- ") or lines[index][2] == "-":
        items = []
        while index < len(lines) and lines[index][1] == indent and lines[index][2].startswith("-"):
            number, _, content = lines[index]
            rest = content[1:].lstrip()
            if not rest:
                if index + 1 >= len(lines) or lines[index + 1][1] <= indent:
                    raise YamlSubsetError(f"line {number}: empty sequence item")
                item, index = _block(lines, index + 1, lines[index + 1][1])
            elif re.match(r"^[\w.\-/\"']+:(\s|$)", rest):
                inner = indent + len(content) - len(rest)
                lines[index] = (number, inner, rest)  # the item is a mapping starting on this line
                item, index = _block(lines, index, inner)
            else:
                item, index = _scalar(rest, number), index + 1
            items.append(item)
        return items, index
    mapping: dict[str, Any] = {}
    while index < len(lines) and lines[index][1] == indent:
        number, _, content = lines[index]
        match = re.match(r'^("[^"]*"|\'[^\']*\'|[^\s:"\'][^:]*?):(?:\s+(.*))?$', content)
        if not match or content.startswith("- "):
            raise YamlSubsetError(f"line {number}: expected `key: value`, got {content!r}")
        key = match.group(1).strip("\"'")
        if key in mapping:
            raise YamlSubsetError(f"line {number}: duplicate key {key!r}")
        if match.group(2) is not None:
            mapping[key], index = _scalar(match.group(2), number), index + 1
        elif index + 1 < len(lines) and lines[index + 1][1] > indent:
            mapping[key], index = _block(lines, index + 1, lines[index + 1][1])
        else:
            mapping[key], index = None, index + 1
    if index < len(lines) and lines[index][1] > indent:
        raise YamlSubsetError(f"line {lines[index][0]}: unexpected indentation")
    return mapping, index


def _scalar(text: str, number: int) -> Any:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(part.strip(), number) for part in inner.split(",")] if inner else []
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlSubsetError(f"line {number}: unterminated string")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlSubsetError(f"line {number}: unterminated string")
        return text[1:-1].replace("''", "'")
    if text[0] in "&*!|>{%@`" or ": " in text or text.endswith(":"):
        raise YamlSubsetError(f"line {number}: {text!r} is outside the supported subset")
    if text in {"true", "false"}:
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def test_the_yaml_reader_accepts_the_subset_and_refuses_the_rest() -> None:
    parsed = parse_yaml('a: 1\nb:\n  - x  # note\n  - k: \'v\'\n    n: [p, "q"]\nc: "#not a comment"\n')
    assert parsed == {"a": 1, "b": ["x", {"k": "v", "n": ["p", "q"]}], "c": "#not a comment"}
    for bad in ("a: 1\na: 2\n", "a: &anchor 1\n", "a:\n  b: 1\n c: 2\n", "a: b: c\n", "a: |\n  text\n"):
        with pytest.raises(YamlSubsetError):
            parse_yaml(bad)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def test_compose_and_grafana_provisioning_are_consistent() -> None:
    compose = parse_yaml(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"bot", "prometheus", "alertmanager", "grafana"}

    bot = services["bot"]
    assert bot["build"] == {"context": "..", "dockerfile": "infra/docker/Dockerfile"}
    bot_env = _environment(bot)
    assert bot_env["BOT_HOST"] == "0.0.0.0"
    assert bot_env["BOT_METRICS_HOST"] == "0.0.0.0"
    assert bot_env["PORT"] == "3978"
    assert bot_env["BOT_METRICS_PORT"] == "8000"

    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published
    assert all(port.startswith("127.0.0.1:") for port in published), published
    assert {"127.0.0.1:3978:3978", "127.0.0.1:8000:8000", "127.0.0.1:9090:9090", "127.0.0.1:3000:3000"} <= set(
        published
    )

    for name, service in services.items():
        image = service.get("image")
        if name != "bot":
            assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image or ""), f"{name}: image not pinned ({image})"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name} mounts {source}, which does not exist"

    prometheus = services["prometheus"]
    flags = prometheus["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in flags
    assert any(re.fullmatch(r"--storage\.tsdb\.retention\.time=\S+", flag) for flag in flags), flags
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "./compose/targets:/etc/prometheus/targets:ro" in prometheus["volumes"]
    shipped = (INFRA / "prometheus" / "prometheus.yml").read_text()
    assert 'files: ["targets/*.yml"]' in shipped  # the folder the compose targets are mounted over

    [target_group] = parse_yaml(COMPOSE_TARGETS.read_text())
    assert target_group["targets"] == [f"bot:{bot_env['BOT_METRICS_PORT']}"]
    assert target_group["labels"]["environment"]

    alertmanager = services["alertmanager"]
    assert "--cluster.listen-address=" in alertmanager["command"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "./alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    # prometheus.yml sends alerts to localhost:9093, which is Alertmanager when both share one network.
    assert 'targets: ["localhost:9093"]' in shipped
    assert alertmanager["network_mode"] == "service:prometheus"

    grafana = services["grafana"]
    grafana_env = _environment(grafana)
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:-[^}]+\}", grafana_env["GF_SECURITY_ADMIN_PASSWORD"])
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"

    [datasource] = parse_yaml(DATASOURCE.read_text())["datasources"]
    assert datasource["uid"] == "prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in prometheus["ports"]

    [provider] = parse_yaml(DASHBOARD_PROVIDER.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == mounts["./grafana/dashboards"]
    assert DASHBOARD.parent == INFRA / "grafana" / "dashboards"
    assert grafana_env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_runbook_links_are_absolute_under_one_configured_base() -> None:
    """Alertmanager, e-mail and Teams show runbook_url as it is: a relative path is no link there."""
    config = parse_yaml((INFRA / "prometheus" / "prometheus.yml").read_text())
    base = config["global"]["external_labels"]["runbook_base_url"]
    assert re.fullmatch(r"https?://[^\s/]+(/\S*)?", base), base
    assert not base.endswith("/")
    text = (RULES / "alerts.yml").read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\S+)\s*$", text, re.MULTILINE)
    found = re.findall(r"^\s+runbook_url: '(.*)'$", text, re.MULTILINE)
    assert len(found) == len(alerts), "every alert has one runbook_url, in single quotes"
    links = dict(zip(alerts, found, strict=True))
    assert len(links) == len(alerts), "an alert name used twice"
    for alert, link in links.items():
        # The label when Prometheus has it, the shipped base otherwise (promtool test rules has no external labels).
        assert link == f'{{{{ or $externalLabels.runbook_base_url "{base}" }}}}/{alert}.md', alert
    cases = (INFRA / "prometheus" / "tests" / "alerts_test.yml").read_text()
    rendered = re.findall(r"runbook_url: (\S+)", cases)
    assert rendered, "the promtool cases check the rendered link"
    assert all(re.fullmatch(rf"{re.escape(base)}/Chatbot\w+\.md", link) for link in rendered), rendered
    for link in rendered:
        assert (RUNBOOKS / link.rsplit("/", 1)[1]).is_file(), link


def test_every_alert_has_a_runbook() -> None:
    alerts_text = (RULES / "alerts.yml").read_text()
    alerts = re.findall(r"^\s*- alert:\s*(\S+)\s*$", alerts_text, re.MULTILINE)
    assert alerts
    for alert in alerts:
        runbook = RUNBOOKS / f"{alert}.md"
        assert runbook.is_file(), f"{runbook} is missing"
        assert f"/{alert}.md'" in alerts_text
        text = runbook.read_text()
        assert text.startswith(f"# {alert}")
        assert "```promql" in text, f"{runbook.name}: no PromQL to confirm"
        assert "```kql" in text, f"{runbook.name}: no KQL to confirm"
        for fault in ("BOT_FAULT_ERROR_RATIO", "BOT_FAULT_DELAY_RATIO", "BOT_FAULT_DELAY_SECONDS"):
            assert fault in text, f"{runbook.name} does not mention {fault}"
