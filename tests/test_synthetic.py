"""Load-test traffic is marked synthetic (user_agent.synthetic.type = test) so Application Insights does not count it
as real users; every other request stays unmarked."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from telemetry import catalog
from tests.support.botserver import running_bot
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import IngestionStandIn

ROOT = Path(__file__).resolve().parent.parent
# What Web Chat's Direct Line sends; Application Insights availability tests' "AlwaysOn" is the exporter's own rule.
REAL_CLIENT = "DirectLine/3.0 (directLineVersion/3)"


def _load_test_user_agent() -> str:
    """The User-Agent the Locust users send, read from the locustfile (importing it would patch the process)."""
    tree = ast.parse((ROOT / "loadtest" / "locustfile.py").read_text())
    [value] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["USER_AGENT"]
    ]
    assert isinstance(value, ast.JoinedStr)
    parts = [part.value if isinstance(part, ast.Constant) else catalog.LOADTEST_USER_AGENT for part in value.values]
    assert "LOADTEST_USER_AGENT" in ast.unparse(value)
    return "".join(str(part) for part in parts)


def _trace_ids(envelopes: list[dict[str, Any]]) -> dict[str, set[str]]:
    """trace id -> the ai.operation.syntheticSource values of its envelopes ("" when absent)."""
    found: dict[str, set[str]] = {}
    for envelope in envelopes:
        tags = envelope.get("tags") or {}
        found.setdefault(tags.get("ai.operation.id", ""), set()).add(tags.get("ai.operation.syntheticSource", ""))
    return found


async def test_a_load_test_turn_is_synthetic_in_every_item_and_a_real_clients_is_not(
    ingestion: IngestionStandIn, azure_sdk_offline: None
) -> None:
    load_test = _load_test_user_agent()
    assert load_test.startswith("otel-chatbot-loadtest/")
    async with running_bot(connection_string=ingestion.connection_string) as bot:
        for user_agent in (load_test, REAL_CLIENT):
            async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9", headers={"User-Agent": user_agent}) as c:
                assert (await c.expect_replies("what can you do?")).status == 200
        bot.flush()
        synthetic = await bot.total(
            "http_server_request_duration_seconds_count", user_agent_synthetic_type=catalog.SYNTHETIC_TEST
        )
        assert synthetic == 1
        assert await bot.total("http_server_request_duration_seconds_count") == 2
        servers = [span for span in bot.spans.get_finished_spans() if span.name == catalog.SPAN_MESSAGES_REQUEST]
        marks = {(span.attributes or {}).get("user_agent.original"): (span.attributes or {}) for span in servers}
        assert marks[load_test][catalog.USER_AGENT_SYNTHETIC_TYPE] == catalog.SYNTHETIC_TEST
        assert catalog.USER_AGENT_SYNTHETIC_TYPE not in marks[REAL_CLIENT]
        load_trace = {
            span.context.trace_id for span in servers if (span.attributes or {}).get("user_agent.original") == load_test
        }

    requests = await ingestion.wait_for_async(lambda _: len(ingestion.of_type("RequestData")) == 2)
    assert requests
    items = [e for e in ingestion.envelopes if (e.get("tags") or {}).get("ai.operation.id", "").strip("0")]
    by_trace = _trace_ids(items)
    [load_id] = [f"{trace_id:032x}" for trace_id in load_trace]
    # The turn's Request, its events (BotMessageReceived, BotMessageSend, ...) and its log records: all synthetic.
    kinds = {e["data"]["baseType"] for e in items if e["tags"]["ai.operation.id"] == load_id}
    assert {"RequestData", "EventData"} <= kinds
    assert by_trace.pop(load_id) == {"True"}
    assert by_trace, "the real client's turn reached ingestion"
    assert all(marks == {""} for marks in by_trace.values()), by_trace
