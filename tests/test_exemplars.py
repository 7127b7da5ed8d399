"""A slow latency bucket in Prometheus opens its trace: with BOT_PROMETHEUS_EXEMPLARS the bot's histograms carry the
trace and span ids of a measurement per bucket, in the OpenMetrics format a real Prometheus scrapes and stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.trace import SpanKind

from tests.support.botserver import running_bot
from tests.support.emulator import EmulatorClient
from tests.support.polling import wait_until_async
from tests.support.prometheus import ROOT, stack

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


async def test_prometheus_stores_the_trace_of_a_request_as_an_exemplar(tmp_path: Path, azure_sdk_offline: None) -> None:
    async with running_bot({"BOT_PROMETHEUS_EXEMPLARS": "true"}) as bot:
        target = bot.metrics_url.removeprefix("http://").removesuffix("/metrics")
        with stack(tmp_path, target) as (prometheus, _):
            # Each scrape takes the exemplars of the measurements since the one before, as the SDK keeps them.
            async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
                for _ in range(3):
                    assert (await emulator.expect_replies("what can you do?")).status == 200

            async def stored() -> list[dict[str, Any]] | None:
                return prometheus.exemplars("http_server_request_duration_seconds_bucket") or None

            exemplars = await wait_until_async(stored, timeout=30, message="exemplars in Prometheus")
        bot.flush()
        traces = {
            format(span.context.trace_id, "032x")
            for span in bot.spans.get_finished_spans()
            if span.kind is SpanKind.SERVER
        }
    linked = {str(exemplar["labels"]["trace_id"]) for exemplar in exemplars}
    assert linked
    assert linked <= traces


async def test_without_the_setting_the_exposition_stays_the_classic_text_format(azure_sdk_offline: None) -> None:
    async with running_bot() as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            assert (await emulator.expect_replies("help")).status == 200
        async with (
            aiohttp.ClientSession() as session,
            session.get(bot.metrics_url, headers={"Accept": OPENMETRICS}) as response,
        ):
            text = await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "trace_id" not in text


def test_the_dashboards_response_time_panel_asks_grafana_for_the_exemplars() -> None:
    dashboard = json.loads((ROOT / "infra" / "grafana" / "dashboards" / "chatbot-overview.json").read_text())
    panels = [p for row in dashboard["panels"] for p in (row, *row.get("panels", []))]
    (panel,) = [p for p in panels if p.get("title") == "Response time of /api/messages"]
    with_exemplars = [t for t in panel["targets"] if t.get("exemplar")]
    assert with_exemplars  # recorded series have none: the query reads the buckets themselves
    assert all("http_server_request_duration_seconds_bucket" in t["expr"] for t in with_exemplars)
