"""Fault injection for drills, and the export-health counters that make a failing telemetry backend visible."""

from __future__ import annotations

from telemetry import catalog
from tests.support.botserver import RunningBot, running_bot
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn


async def test_injected_faults_fail_and_slow_message_turns_and_show_on_metrics(azure_sdk_offline: None) -> None:
    env = {"BOT_FAULT_ERROR_RATIO": "1", "BOT_FAULT_DELAY_RATIO": "1", "BOT_FAULT_DELAY_SECONDS": "0.3"}
    async with running_bot(env) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            update = await emulator.conversation_update(deliveryMode="expectReplies")  # not a message: never injected
            failed = await emulator.expect_replies("help")
        assert update.status == 200
        assert failed.status == 200
        assert any("went wrong" in reply.get("text", "") for reply in failed.body["activities"])
        assert await bot.total(catalog.ERRORS, error_type="bot.faults.InjectedFault") == 1
        assert await bot.total("bot_faults_error_ratio") == 1
        assert await bot.total("bot_faults_delay_seconds") == 0.3
        slow = await bot.samples("bot_turn_duration_seconds_bucket")
        assert all(
            value == 0 for labels, value in slow if labels["bot_activity_type"] == "message" and labels["le"] == "0.25"
        )

        bot.faults.configure(error_ratio=0.0, delay_ratio=0.0)
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            assert (await emulator.expect_replies("help")).status == 200
        assert await bot.total(catalog.ERRORS) == 1
        assert await bot.total("bot_faults_error_ratio") == 0


async def test_failed_exports_to_application_insights_are_counted(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    async with running_bot(connection_string=ingestion.connection_string) as bot:
        await _one_turn(bot)
        bot.flush()
        exported = {"otel_component_name": "azure_monitor"}
        assert await bot.total("otel_sdk_exporter_span_exported_total", **exported) >= 1
        assert await bot.total("otel_sdk_exporter_span_exported_total", error_type="export_failed") == 0

        ingestion.fail_with(400)  # refused for good: the exporter does not retry a 400
        await _one_turn(bot)
        bot.flush()
        assert await bot.total("otel_sdk_exporter_span_exported_total", error_type="export_failed", **exported) >= 1
        assert await bot.total("otel_sdk_exporter_log_exported_total", error_type="export_failed", **exported) >= 1


async def _one_turn(bot: RunningBot) -> None:
    async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
        assert (await emulator.expect_replies("help")).status == 200
