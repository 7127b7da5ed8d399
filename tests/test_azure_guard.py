"""With an exporter release whose private helpers moved, the bot falls back to the SDK's own exporters, says so once,
and Application Insights still shows the right numbers (ingestion then extracts the standard metrics itself)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.monitor.opentelemetry.exporter.export.trace import _exporter as sdk_trace
from azure.monitor.opentelemetry.exporter.export.trace import _utils as sdk_trace_utils

from telemetry import azure_guard
from telemetry.azure_export import FastAzureMonitorTraceExporter
from telemetry.azure_guard import choose_exporters, missing_helpers
from tests.support.azure_views import MARKER, AzureViews
from tests.support.botserver import running_bot
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn


def test_the_installed_sdk_has_every_helper_the_fast_paths_use(azure_sdk_offline: None) -> None:
    assert missing_helpers() == []
    assert choose_exporters().fast


def test_a_missing_helper_is_named_in_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, azure_sdk_offline: None
) -> None:
    monkeypatch.delattr(sdk_trace_utils, "_get_url_for_http_request")
    with caplog.at_level(logging.WARNING, logger="telemetry"):
        exporters = choose_exporters()
    assert not exporters.fast
    assert exporters.trace is not FastAzureMonitorTraceExporter
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "_get_url_for_http_request" in warnings[0]


def test_a_helper_that_builds_envelopes_differently_is_caught_by_the_probe(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, azure_sdk_offline: None
) -> None:
    convert = sdk_trace._convert_span_to_envelope

    def another_release(span: Any) -> Any:  # a release whose request items differ from what the fast path builds
        envelope = convert(span)
        envelope.data.base_data.response_code = "999"
        return envelope

    monkeypatch.setattr(sdk_trace, "_convert_span_to_envelope", another_release)
    with caplog.at_level(logging.WARNING, logger="telemetry"):
        exporters = choose_exporters()
    assert not exporters.fast
    assert "builds envelopes differently" in caplog.text


async def test_on_the_sdks_own_path_the_portal_still_counts_every_request_once(
    monkeypatch: pytest.MonkeyPatch, ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    # A release without one of the helpers (deleting a real one would break the SDK's own conversion as well).
    hidden = (
        *azure_guard.REQUIRED_HELPERS,
        ("azure.monitor.opentelemetry.exporter._utils", "_moved_in_another_release"),
    )
    monkeypatch.setattr(azure_guard, "REQUIRED_HELPERS", hidden)
    async with running_bot(connection_string=ingestion.connection_string) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            for text in ("help", "/fail", "what can you do?"):
                assert (await emulator.expect_replies(text)).status == 200
        bot.flush()
        await ingestion.wait_for_async(lambda _: len(ingestion.of_type("RequestData")) == 3)
    requests = ingestion.of_type("RequestData")
    assert all(MARKER not in item["data"]["baseData"]["properties"] for item in requests)
    views = AzureViews.of(ingestion.envelopes)  # extracted from the items only: no requests/duration was sent
    assert (views.server_requests, views.failed_requests) == (3, 1)
