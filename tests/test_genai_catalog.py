"""The GenAI section of telemetry/catalog.py, docs/genai.md, the GenAI dashboard and rules agree on every name."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from telemetry import catalog
from telemetry.catalog import Instrument, Metric

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "genai.md"
DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "genai.json"
RULES = ROOT / "infra" / "prometheus" / "rules" / "genai.yml"
CASES = ROOT / "infra" / "prometheus" / "tests" / "genai_test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"

_CODE = re.compile(r"`([^`\n]+)`")
_SERIES = re.compile(r"\b(?:gen_ai_[a-z0-9_]+|bot_answer[a-z0-9_]*|chatbot:genai_[a-z0-9_:]+)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")


def series_names(metric: Metric) -> set[str]:
    if metric.instrument is Instrument.HISTOGRAM:
        return {metric.prometheus_name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return {metric.prometheus_name}


def label(attribute: str) -> str:
    return attribute.replace(".", "_")


GENAI_SERIES = frozenset(name for metric in catalog.GENAI_METRICS for name in series_names(metric))
RECORDED = frozenset(re.findall(r"^\s*- record:\s*(\S+)\s*$", RULES.read_text(), re.MULTILINE))
LABELS = frozenset(label(a) for metric in catalog.GENAI_METRICS for a in metric.attributes) | {
    "job",
    "environment",
    "instance",
    "le",
}


def table(heading: str) -> dict[str, list[str]]:
    lines = DOCS.read_text().splitlines()
    start = lines.index(heading)
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        first = _CODE.fullmatch(cells[0])
        if first:
            rows[first.group(1)] = cells
    return rows


def check_promql(where: str, expr: str) -> None:
    labels = {part.strip() for group in _GROUPING.findall(expr) for part in group.split(",") if part.strip()}
    for matchers in _MATCHER.findall(expr):
        labels |= {m.split("=")[0].rstrip("!~").strip() for m in re.split(r",\s*", matchers) if "=" in m}
    assert labels <= LABELS, f"{where}: unknown labels {sorted(labels - LABELS)}"
    for name in set(_SERIES.findall(expr)) - labels:
        assert name in GENAI_SERIES | RECORDED, f"{where}: {name} is neither a GenAI series nor a recording rule"


# ---- the catalog ---------------------------------------------------------------------------------------------------


def test_genai_names_are_unique_and_do_not_clash_with_the_rest_of_the_catalog() -> None:
    names = [metric.name for metric in (*catalog.METRICS, *catalog.GENAI_METRICS)]
    assert len(names) == len(set(names))
    attributes = [a.name for a in (*catalog.ATTRIBUTES, *catalog.GENAI_ATTRIBUTES)]
    assert len(attributes) == len(set(attributes))
    for metric in catalog.GENAI_METRICS:
        assert set(metric.attributes) <= {a.name for a in (*catalog.ATTRIBUTES, *catalog.GENAI_ATTRIBUTES)}
        # Never ids or text on a metric.
        assert not set(metric.attributes) & {
            catalog.GEN_AI_CONVERSATION_ID,
            catalog.GEN_AI_RESPONSE_ID,
            catalog.GEN_AI_INPUT_MESSAGES,
            catalog.GEN_AI_OUTPUT_MESSAGES,
        }
        if metric.instrument is Instrument.HISTOGRAM:
            assert list(metric.buckets) == sorted(set(metric.buckets)), metric.name


def test_prometheus_names_follow_the_exporter_rules() -> None:
    expected = {
        "gen_ai.client.operation.duration": "gen_ai_client_operation_duration_seconds",
        "gen_ai.client.token.usage": "gen_ai_client_token_usage",
        "gen_ai.client.operation.time_to_first_chunk": "gen_ai_client_operation_time_to_first_chunk_seconds",
        "bot.answers": "bot_answers_total",
        "bot.answer.rating": "bot_answer_rating",
        "bot.answers.deferred": "bot_answers_deferred_total",
    }
    assert {metric.name: metric.prometheus_name for metric in catalog.GENAI_METRICS} == expected


# ---- docs/genai.md ---------------------------------------------------------------------------------------------------


def test_the_metrics_table_matches_the_catalog() -> None:
    rows = table("### Metrics")
    assert set(rows) == {metric.name for metric in catalog.GENAI_METRICS}
    for metric in catalog.GENAI_METRICS:
        _, series, instrument, unit, attributes, description = rows[metric.name]
        assert set(_CODE.findall(series)) == series_names(metric), metric.name
        assert instrument == metric.instrument.value, metric.name
        assert unit == f"`{metric.unit}`", metric.name
        assert set(_CODE.findall(attributes)) == set(metric.attributes), metric.name
        assert description, metric.name


def test_the_attributes_table_matches_the_catalog() -> None:
    rows = table("### Attributes")
    assert set(rows) == {attribute.name for attribute in catalog.GENAI_ATTRIBUTES}
    on_metrics = {a for metric in catalog.GENAI_METRICS for a in metric.attributes}
    for attribute in catalog.GENAI_ATTRIBUTES:
        _, values, where = rows[attribute.name]
        assert set(_CODE.findall(values)) == set(attribute.values), attribute.name
        assert ("metrics" in where) == (attribute.name in on_metrics), attribute.name


def test_spans_and_events_are_documented() -> None:
    spans = table("### Spans")
    assert set(spans) == {catalog.GENAI_SPAN_CHAT, catalog.GENAI_SPAN_DEFERRED}
    events = table("### Events")
    assert set(events) == {event.name for event in catalog.GENAI_EVENTS}
    for event in catalog.GENAI_EVENTS:
        assert set(_CODE.findall(events[event.name][1])) == set(event.properties)


def test_promql_in_the_docs_uses_exposed_names() -> None:
    text = DOCS.read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, re.DOTALL)
    assert blocks
    for block in blocks:
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                check_promql("docs/genai.md", line)


# ---- dashboard and rules ---------------------------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def test_the_dashboard_reads_exposed_series_and_recording_rules_only() -> None:
    queries = dashboard_queries()
    titles = {title for title, _ in queries}
    for wanted in (
        "Model latency p95",
        "Time to first chunk p95",
        "Tokens per minute",
        "429",
        "rating by answer source",
    ):
        assert any(wanted.lower() in title.lower() for title in titles), wanted
    for title, expr in queries:
        check_promql(f"dashboard panel {title!r}", expr)


def test_the_rules_read_exposed_series_and_every_alert_has_cases_and_a_runbook() -> None:
    rules = RULES.read_text()
    for expr in re.findall(r"expr:\s*(\|[^\n]*\n(?:\s{10,}[^\n]*\n)+|[^\n]+)", rules):
        check_promql("infra/prometheus/rules/genai.yml", expr)
    alerts = re.findall(r"^\s+- alert: (\w+)$", rules, re.MULTILINE)
    assert sorted(alerts) == ["ChatbotModelErrors", "ChatbotModelThrottled", "ChatbotTokenBudget"]
    cases = CASES.read_text()
    documented = re.findall(r"^\| (Chatbot\w+) \|", DOCS.read_text(), re.MULTILINE)
    assert sorted(documented) == sorted(alerts)
    for alert in alerts:
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts: \[\]", cases), f"{alert} has no quiet case"
        assert re.search(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels:", cases), f"{alert} never fires"
        assert (RUNBOOKS / f"{alert}.md").is_file()
        assert f'runbook_base_url "https://runbooks.example.com/otel-chatbot" }}}}/{alert}.md' in rules
    assert "rules/genai.yml" in (ROOT / "infra" / "prometheus" / "prometheus.yml").read_text()


def test_the_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `bash infra/dev/install.sh --test`")
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(CASES)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_a_misspelt_series_and_label() -> None:
    with pytest.raises(AssertionError):
        check_promql("x", "rate(gen_ai_client_token_usage_total[5m])")
    with pytest.raises(AssertionError):
        check_promql("x", "sum by (gen_ai_model) (rate(gen_ai_client_token_usage_sum[5m]))")
    check_promql("x", 'sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{job="chatbot"}[5m]))')


# ---- the weekly report -----------------------------------------------------------------------------------------------


def test_the_weekly_report_has_a_language_model_section() -> None:
    from telemetry.weekly import analysis, client, collect, queries, sections, windows

    for key in ("genai_calls_by_model", "genai_failed_by_model", "genai_tokens_by_model", "ratings_by_source"):
        check_promql(key, queries.QUERIES_BY_KEY[key].expr.replace("$range", "1h"))
    window = windows.make_window("2025-01-13T00:00:00Z", None, "2025-01-13T01:00:00Z", "1m")
    results = collect.Results(window, "http://prometheus")
    assert sections.genai_lines(results)[0].startswith("No language model answered")
    results.series["genai_calls_by_model"] = [client.Series({"gen_ai_request_model": "chat"}, [(0.0, 200.0)])]
    results.series["genai_failed_by_model"] = [client.Series({"gen_ai_request_model": "chat"}, [(0.0, 10.0)])]
    results.series["genai_tokens_by_model"] = [
        client.Series({"gen_ai_request_model": "chat", "gen_ai_token_type": "input"}, [(0.0, 300000.0)]),
        client.Series({"gen_ai_request_model": "chat", "gen_ai_token_type": "output"}, [(0.0, 4000.0)]),
    ]
    results.series["ratings_by_source"] = [
        client.Series({"bot_answer_source": "model"}, [(0.0, 4.25)]),
        client.Series({"bot_answer_source": "knowledge"}, [(0.0, 3.5)]),
    ]
    assert sections.genai_lines(results) == [
        "chat: ≈ 200 calls, 5.0 % failed; tokens ≈ 300,000 in, ≈ 4,000 out (estimated).",
        "Average rating (1-5) by the source of the answer rated: knowledge 3.50, model 4.25.",
    ]
    built = sections.build_sections(results, analysis.slo_summary(results, 2.0, 0.01), [], {}, 2.0, 0.01)
    (section,) = [section for section in built if section.title == "Language model"]
    assert section.paragraphs == sections.genai_lines(results)
