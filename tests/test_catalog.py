"""telemetry/catalog.py, docs/telemetry.md, the settings code and the running bot's /metrics agree on every name."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from telemetry import catalog
from telemetry.catalog import Instrument, Metric
from tests.support.botserver import running_bot
from tests.support.channel import Answer, ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "telemetry.md"
SETTINGS_SOURCES = (ROOT / "telemetry" / "config.py", ROOT / "bot" / "settings.py")

METRICS_HEADING = "## 2. Metrics"
ATTRIBUTES_HEADING = "## 3. Attributes"
SPANS_HEADING = "## 4. Spans"
EVENTS_HEADING = "## 5. Custom events"
ENVIRONMENT_HEADING = "## 9. Environment variables"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SCOPE_LABELS = frozenset({"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})
ALERT_THRESHOLD_SECONDS = 2.0
ID_AND_TEXT_ATTRIBUTES = frozenset(
    {
        catalog.CONVERSATION_HASH,
        catalog.USER_HASH,
        catalog.ACTIVITY_ID,
        catalog.MESSAGE_TEXT,
        catalog.ENDUSER_PSEUDO_ID,
    }
)


def series_names(metric: Metric) -> set[str]:
    """The sample names the Prometheus exporter gives one metric."""
    if metric.instrument is Instrument.HISTOGRAM:
        return {metric.prometheus_name + suffix for suffix in HISTOGRAM_SUFFIXES}
    return {metric.prometheus_name}


def label_name(attribute: str) -> str:
    return attribute.replace(".", "_")


CATALOG_SERIES = frozenset(name for metric in catalog.METRICS for name in series_names(metric))
SPAN_NAMES = frozenset(value for key, value in vars(catalog).items() if key.startswith("SPAN_"))
ATTRIBUTE_NAMES = frozenset(attribute.name for attribute in catalog.ATTRIBUTES)
METRIC_LABELS = frozenset(label_name(name) for metric in catalog.METRICS for name in metric.attributes)
SUPERVISOR_SERIES = frozenset(metric.prometheus_name for metric in catalog.SUPERVISOR_METRICS)
KNOWN_NAMES = (
    CATALOG_SERIES
    | SUPERVISOR_SERIES
    | {metric.name for metric in catalog.SUPERVISOR_METRICS}
    | {catalog.WORKER}
    | ATTRIBUTE_NAMES
    | METRIC_LABELS
    | SPAN_NAMES
    | {metric.name for metric in catalog.METRICS}
    | {event.name for event in catalog.EVENTS}
)

# ---- reading the docs ---------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_DOTTED = re.compile(r"(?:bot|http|process)\.[a-z0-9_.]*[a-z0-9_]")
_PROMETHEUS = re.compile(r"[a-z][a-z0-9_]*")
_PROMETHEUS_SUFFIX = re.compile(r"_(?:total|seconds|bytes)(?:_bucket|_sum|_count)?$")


def docs_text() -> str:
    assert DOCS.is_file(), f"{DOCS} is missing"
    return DOCS.read_text(encoding="utf-8")


def inline_code(markdown: str) -> set[str]:
    """Every `backticked` span outside fenced code blocks."""
    return {span.strip() for span in _INLINE_CODE.findall(_FENCE.sub("", markdown))}


def code_tokens(markdown: str) -> set[str]:
    """Inline code spans, plus every word of the fenced code blocks (PromQL, KQL examples)."""
    words = {word.rstrip(".") for block in _FENCE.findall(markdown) for word in _WORD.findall(block)}
    return inline_code(markdown) | words


def looks_like_catalog_name(token: str) -> bool:
    """A metric, attribute or span name (`bot.*`, `http.*`, `process.*`) or a Prometheus series or label name."""
    if _DOTTED.fullmatch(token):
        return True
    if not _PROMETHEUS.fullmatch(token):
        return False
    return token.startswith(("bot_", "http_", "process_")) or bool(_PROMETHEUS_SUFFIX.search(token))


def unknown_names(markdown: str) -> set[str]:
    """Names in code spans that look like telemetry names but come neither from the catalog nor from the
    documented HTTP client instrumentation."""
    candidates = {token for token in code_tokens(markdown) if looks_like_catalog_name(token)}
    return candidates - KNOWN_NAMES


def section(markdown: str, heading: str) -> str:
    """The text under `heading` up to the next heading of any level."""
    lines = markdown.splitlines()
    assert heading in lines, f"docs/telemetry.md has no heading {heading!r}"
    body: list[str] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("#"):
            break
        body.append(line)
    return "\n".join(body)


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by the backticked name in their first cell; header and rule rows skipped."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        first = _INLINE_CODE.fullmatch(cells[0])
        if first is None:
            continue
        name = first.group(1)
        assert name not in rows, f"{name!r} has two rows"
        rows[name] = cells
    return rows


def backticked(cell: str) -> set[str]:
    return set(_INLINE_CODE.findall(cell))


# ---- reading the settings code ------------------------------------------------------------------------------------

_ENV_READS = (
    re.compile(r"""\benv(?:iron)?\.get\(\s*["']([^"']+)["']"""),
    re.compile(r"""\benv(?:iron)?\[\s*["']([^"']+)["']\s*\]"""),
    re.compile(r"""\bparse_\w+\(\s*env(?:iron)?\s*,\s*["']([^"']+)["']"""),
)


def environment_reads(source: str) -> set[str]:
    return {name for pattern in _ENV_READS for name in pattern.findall(source)}


def variables_read_by_code() -> set[str]:
    return set().union(*(environment_reads(path.read_text(encoding="utf-8")) for path in SETTINGS_SOURCES))


# ---- the catalog itself -------------------------------------------------------------------------------------------


def _duplicates(names: list[str]) -> set[str]:
    return {name for name in names if names.count(name) > 1}


def test_catalog_names_are_unique() -> None:
    assert not _duplicates([metric.name for metric in catalog.METRICS])
    assert not _duplicates([metric.prometheus_name for metric in catalog.METRICS])
    assert not _duplicates([name for metric in catalog.METRICS for name in series_names(metric)])
    assert not _duplicates([attribute.name for attribute in catalog.ATTRIBUTES])
    assert not _duplicates([event.name for event in catalog.EVENTS])
    spans = [value for key, value in vars(catalog).items() if key.startswith("SPAN_")]
    assert not _duplicates(spans)
    for attribute in catalog.ATTRIBUTES:
        assert not _duplicates(list(attribute.values)), attribute.name
    for event in catalog.EVENTS:
        assert not _duplicates(list(event.properties)), event.name


def test_prometheus_names_are_valid_and_follow_the_exporter_rules() -> None:
    for metric in catalog.METRICS:
        name = metric.prometheus_name
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name), name
        assert name.startswith(metric.name.replace(".", "_")), name
        assert name.endswith("_total") == (metric.instrument is Instrument.COUNTER), name
        if metric.unit == "s":
            assert "_seconds" in name, name
        if metric.unit == "By":
            assert "_bytes" in name, name


def test_histograms_have_increasing_buckets_that_include_the_alert_threshold() -> None:
    histograms = [metric for metric in catalog.METRICS if metric.instrument is Instrument.HISTOGRAM]
    assert histograms
    for metric in histograms:
        buckets = list(metric.buckets)
        assert buckets, f"{metric.name} has no buckets"
        assert all(low < high for low, high in itertools.pairwise(buckets)), metric.name
        assert buckets[0] > 0, metric.name
        assert ALERT_THRESHOLD_SECONDS in buckets, f"{metric.name} has no {ALERT_THRESHOLD_SECONDS} s boundary"
    for metric in catalog.METRICS:
        if metric.instrument is not Instrument.HISTOGRAM:
            assert not metric.buckets, f"{metric.name} is a {metric.instrument} with buckets"


def test_metric_attributes_are_catalog_attributes_and_never_ids_or_text() -> None:
    for metric in catalog.METRICS:
        assert not _duplicates(list(metric.attributes)), metric.name
        unknown = set(metric.attributes) - ATTRIBUTE_NAMES
        assert not unknown, f"{metric.name} uses attributes missing from catalog.ATTRIBUTES: {sorted(unknown)}"
        personal = set(metric.attributes) & ID_AND_TEXT_ATTRIBUTES
        assert not personal, f"{metric.name} would put ids or text into metrics: {sorted(personal)}"


# ---- catalog ↔ docs ----------------------------------------------------------------------------------------------


def test_every_catalog_name_is_backticked_in_the_docs() -> None:
    documented = inline_code(docs_text())
    expected = (
        {metric.name for metric in catalog.METRICS}
        | CATALOG_SERIES
        | ATTRIBUTE_NAMES
        | {value for attribute in catalog.ATTRIBUTES for value in attribute.values}
        | SPAN_NAMES
        | {event.name for event in catalog.EVENTS}
        | {prop for event in catalog.EVENTS for prop in event.properties}
    )
    missing = expected - documented
    assert not missing, f"docs/telemetry.md does not mention (in backticks): {sorted(missing)}"


def test_every_telemetry_name_in_the_docs_is_in_the_catalog() -> None:
    unknown = unknown_names(docs_text())
    assert not unknown, f"docs/telemetry.md names telemetry that is not in telemetry/catalog.py: {sorted(unknown)}"


def test_the_name_check_catches_renamed_metrics_and_attributes() -> None:
    renamed = "`bot.turn.count` `bot_turns_count_total` `bot_turn_seconds` `bot_intents` `process.memory.rss`"
    fenced = "```promql\nrate(bot_turn_total[5m])\n```\n"
    assert unknown_names(renamed + "\n" + fenced) == {
        "bot.turn.count",
        "bot_turns_count_total",
        "bot_turn_seconds",
        "bot_intents",
        "process.memory.rss",
        "bot_turn_total",
    }
    assert unknown_names("`bot.turns` `bot_turns_total` `bot_intent` `target_info` `otel_scope_name`") == set()


def test_metrics_table_matches_the_catalog() -> None:
    text = section(docs_text(), METRICS_HEADING)
    rows = table_rows(text)
    assert set(rows) == {metric.name for metric in catalog.METRICS}, "metrics table rows differ from catalog.METRICS"
    for metric in catalog.METRICS:
        _, series, instrument, unit, attributes, description = rows[metric.name]
        assert backticked(series) == series_names(metric), metric.name
        assert instrument == metric.instrument.value, metric.name
        assert unit == f"`{metric.unit}`", metric.name
        assert backticked(attributes) == set(metric.attributes), metric.name
        assert description, metric.name
    buckets = ", ".join(f"{bound:g}" for bound in catalog.DURATION_BUCKETS)
    assert f"`{buckets}`" in text, f"the metrics section does not list the buckets `{buckets}`"


def test_supervisor_series_are_documented() -> None:
    rows = table_rows(section(docs_text(), "### Series of the worker supervisor"))
    assert set(rows) == {metric.name for metric in catalog.SUPERVISOR_METRICS}
    for metric in catalog.SUPERVISOR_METRICS:
        _, series, instrument, unit, _ = rows[metric.name]
        assert backticked(series) == {metric.prometheus_name}, metric.name
        assert (instrument, unit) == (metric.instrument.value, f"`{metric.unit}`"), metric.name


def test_attributes_table_matches_the_catalog() -> None:
    rows = table_rows(section(docs_text(), ATTRIBUTES_HEADING))
    assert set(rows) == ATTRIBUTE_NAMES, "attributes table rows differ from catalog.ATTRIBUTES"
    on_metrics = {name for metric in catalog.METRICS for name in metric.attributes}
    for attribute in catalog.ATTRIBUTES:
        _, label, values, where, description = rows[attribute.name]
        assert label == (f"`{label_name(attribute.name)}`" if attribute.name in on_metrics else "—"), attribute.name
        assert backticked(values) == set(attribute.values), attribute.name
        assert ("metrics" in where) == (attribute.name in on_metrics), attribute.name
        assert description, attribute.name


def test_spans_and_span_events_are_documented() -> None:
    rows = table_rows(section(docs_text(), SPANS_HEADING))
    missing = SPAN_NAMES - set(rows)
    assert not missing, f"the spans section has no row for {sorted(missing)}"
    step = rows[catalog.SPAN_EVENT_DIALOG_STEP]
    assert {catalog.DIALOG_ID, catalog.DIALOG_STEP} <= backticked(step[-1])


def test_events_table_matches_the_catalog() -> None:
    rows = table_rows(section(docs_text(), EVENTS_HEADING))
    assert set(rows) == {event.name for event in catalog.EVENTS}, "events table rows differ from catalog.EVENTS"
    for event in catalog.EVENTS:
        _, properties, description = rows[event.name]
        assert backticked(properties) == set(event.properties), event.name
        assert description, event.name


# ---- settings code ↔ docs -----------------------------------------------------------------------------------------


def test_environment_table_lists_exactly_the_variables_the_code_reads() -> None:
    read = variables_read_by_code()
    assert {"APPLICATIONINSIGHTS_CONNECTION_STRING", "PORT", "MicrosoftAppId"} <= read, "the source scan broke"
    documented = set(table_rows(section(docs_text(), ENVIRONMENT_HEADING)))
    assert not read - documented, f"read by the code but not documented: {sorted(read - documented)}"
    assert not documented - read, f"documented but not read by the code: {sorted(documented - read)}"


def test_the_source_scan_finds_every_way_of_reading_a_variable() -> None:
    source = """
        a = env.get("ONE", "")
        b = parse_port(env, "TWO", 1)
        c = parse_bool(environ, 'THREE', False)
        d = env["FOUR"]
        e = environ.get(name, "")
    """
    assert environment_reads(source) == {"ONE", "TWO", "THREE", "FOUR"}


# ---- the running bot ↔ catalog ------------------------------------------------------------------------------------

Samples = list[tuple[str, dict[str, str]]]


@pytest.fixture
async def exposition(channel: ChannelStandIn, ingestion: IngestionStandIn, azure_sdk_offline: None) -> Samples:
    """(series name, labels) of every sample on /metrics after turns that touch every catalog metric."""
    connection = ingestion.connection_string
    async with (
        running_bot(connection_string=connection) as bot,
        EmulatorClient(bot.messages_url, channel.service_url) as emulator,
    ):
        texts = (
            "help",
            "banana spaceship",
            "how do I find a turn in application insights?",
            "feedback",
            "cancel",
            "feedback",
            "4",
            "skip",
        )
        for text in texts:
            response = await emulator.expect_replies(text)
            assert response.status == 200, (text, response)
        failed = await emulator.expect_replies("/fail")
        assert failed.status == 200, failed
        assert any("went wrong" in (a.get("text") or "") for a in failed.body["activities"]), failed
        # One turn replies over HTTP to the channel, which is what the reply duration measures; its first attempt
        # meets a 502 and is retried.
        channel.script(emulator.conversation_id, Answer(502))
        sent = await emulator.send("help")
        assert sent.status == 201, sent
        await channel.wait_for_replies_async(emulator.conversation_id, 2)
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session, session.post(bot.messages_url, data=b"{", headers=headers) as r:
            assert r.status == 400
        bot.flush()  # exports to Azure Monitor, which the export counters count
        exposed = await bot.scrape()
    return [
        (sample.name, dict(sample.labels))
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
    ]


async def test_every_catalog_metric_is_exposed_under_its_prometheus_name(exposition: Samples) -> None:
    missing = CATALOG_SERIES - {name for name, _ in exposition}
    assert not missing, f"catalog metrics absent from /metrics: {sorted(missing)}"


async def test_no_bot_series_exists_outside_the_catalog(exposition: Samples) -> None:
    extra = {name for name, _ in exposition if name.startswith("bot_")} - CATALOG_SERIES
    assert not extra, f"/metrics has bot_ series that no catalog metric produces: {sorted(extra)}"


async def test_series_outside_the_catalog_are_exactly_the_documented_ones(exposition: Samples) -> None:
    outside = {name for name, _ in exposition} - CATALOG_SERIES
    assert outside == {"target_info"}, "update docs/telemetry.md 'Series outside the catalog'"


def _bucket_label(series: str) -> set[str]:
    return {"le"} if series.endswith("_bucket") else set()


async def test_exposed_labels_are_the_catalog_attributes_of_each_metric(exposition: Samples) -> None:
    allowed = {
        name: {label_name(attribute) for attribute in metric.attributes} | SCOPE_LABELS | _bucket_label(name)
        for metric in catalog.METRICS
        for name in series_names(metric)
    }
    for name, labels in exposition:
        if name in allowed:
            extra = set(labels) - allowed[name]
            assert not extra, f"{name} has labels outside its catalog attributes: {sorted(extra)}"
