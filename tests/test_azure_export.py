"""The fast Azure Monitor exporters (telemetry/azure_export/) send what the SDK's exporters send, envelope for
envelope, and lose nothing when ingestion fails: they keep the SDK's transmission and offline storage."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter._generated.exporter.models import TelemetryItem
from azure.monitor.opentelemetry.exporter._utils import _get_telemetry_type
from azure.monitor.opentelemetry.exporter.export.logs import _exporter as sdk_logs
from azure.monitor.opentelemetry.exporter.export.trace import _exporter as sdk_trace
from azure.monitor.opentelemetry.exporter.statsbeat.customer._utils import _get_telemetry_success_flag
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from telemetry import catalog
from telemetry.azure_export import FastAzureMonitorLogExporter, FastAzureMonitorTraceExporter, comparable_with_sdk
from telemetry.config import TelemetryConfig
from telemetry.setup import build_resource
from tests.support.botserver import running_bot
from tests.support.channel import ChannelStandIn
from tests.support.emulator import EmulatorClient
from tests.support.ingestion import Envelope, IngestionStandIn, parse_envelopes

RESOURCE = build_resource(
    TelemetryConfig(service_name="otel-chatbot", service_version="1.4.2", service_instance_id="host-7-1234")
)
SERVER_ATTRIBUTES: dict[str, Any] = {
    "http.request.method": "POST",
    "url.scheme": "http",
    "url.path": "/api/messages",
    "server.address": "127.0.0.1",
    "network.protocol.version": "1.1",
    "http.route": "/api/messages",
    "user_agent.original": "DirectLine/3.0 (directLineVersion/3)",
    catalog.CHANNEL: "webchat",
    catalog.ACTIVITY_TYPE: "message",
    catalog.LOCALE: "en-US",
    catalog.CONVERSATION_HASH: "7e1bc41481ecf84d12b9afc92fe02359",
    catalog.ENDUSER_PSEUDO_ID: "3be66d3e21ce7a200f2165b41dbd486e",
    catalog.REPLIES: 1,
    "http.response.status_code": 200,
}
REPLY_ATTRIBUTES: dict[str, Any] = {
    "http.request.method": "POST",
    "url.full": "http://127.0.0.1:3978/v3/conversations/{conversationId}/activities/{activityId}",
    "server.address": "127.0.0.1",
    "server.port": 3978,
    "http.response.status_code": 201,
}


def _spans(build: Callable[[TracerProvider], None]) -> tuple[ReadableSpan, ...]:
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(finished))
    build(provider)
    provider.shutdown()
    return finished.get_finished_spans()


def _representative_spans(provider: TracerProvider) -> None:
    tracer = provider.get_tracer(catalog.INSTRUMENTATION_SCOPE, "1.4.2")
    with tracer.start_as_current_span("POST /api/messages", kind=SpanKind.SERVER, attributes=SERVER_ATTRIBUTES) as turn:
        turn.add_event(
            catalog.SPAN_EVENT_DIALOG_STEP, {catalog.DIALOG_ID: "FeedbackWaterfall", catalog.DIALOG_STEP: "1"}
        )
        client = provider.get_tracer("opentelemetry.instrumentation.aiohttp_client", "0.66b1")
        with client.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=REPLY_ATTRIBUTES):
            pass
        with tracer.start_as_current_span(catalog.SPAN_TURN, attributes={"enduser.id": "u-1", "session.id": "s-1"}):
            pass
    failing = {**SERVER_ATTRIBUTES, "http.response.status_code": 500, catalog.ERROR_TYPE: "SimulatedFailure"}
    with tracer.start_as_current_span("POST /api/messages", kind=SpanKind.SERVER, attributes=failing) as turn:
        try:
            raise RuntimeError("simulated failure requested with /fail")
        except RuntimeError as error:
            turn.record_exception(error)
        turn.set_status(Status(StatusCode.ERROR, "SimulatedFailure"))
    with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}):
        pass  # HTTP without a URL, route or status
    with tracer.start_as_current_span(
        "GET",
        kind=SpanKind.SERVER,
        attributes={
            "http.method": "GET",
            "http.url": "http://h/p?q=1",
            "http.route": "/p",
            "client.address": "1.2.3.4",
        },
    ):
        pass  # old HTTP conventions
    with tracer.start_as_current_span("sampled", kind=SpanKind.SERVER, attributes={"_MS.sampleRate": 50.0}) as sampled:
        sampled.add_event("note", {"k": "v"})
    with tracer.start_as_current_span(
        "peer", kind=SpanKind.CLIENT, attributes={"net.peer.name": "h", "net.peer.port": 81}
    ):
        pass
    measured = {"microsoft.custom_measurements": json.dumps({"score": 0.5}), "user_agent.original": "AlwaysOn"}
    with tracer.start_as_current_span("measured", attributes=measured):
        pass
    with tracer.start_as_current_span("tuple", attributes={"bot.list": ("a", "b"), "x" * 151: "too long a key"}):
        pass


def _shapes_the_sdk_converts(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("other")
    with tracer.start_as_current_span("query", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}) as query:
        with tracer.start_as_current_span("send", kind=SpanKind.PRODUCER, attributes={"messaging.system": "kafka"}):
            pass
        link = Link(query.get_span_context())
    with tracer.start_as_current_span("linked", kind=SpanKind.SERVER, links=[link]):
        pass


def _log_records(emit: Callable[[LoggerProvider], None]) -> tuple[ReadableLogRecord, ...]:
    finished = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(finished))
    emit(provider)
    provider.shutdown()
    return finished.get_finished_logs()


def _representative_records(provider: LoggerProvider) -> None:
    events = provider.get_logger(catalog.INSTRUMENTATION_SCOPE)
    tracer = TracerProvider(resource=RESOURCE).get_tracer("t")
    logger = logging.getLogger("bot.test_azure_export")
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        with tracer.start_as_current_span("turn"):
            received = {"channelId": "webchat", "activityId": "act-1", catalog.ENDUSER_PSEUDO_ID: "3be66d3e"}
            events.emit(
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=catalog.EVENT_MESSAGE_RECEIVED.name,
                attributes={**received, "microsoft.custom_event.name": catalog.EVENT_MESSAGE_RECEIVED.name},
            )
            logger.info("turn %s on %s: replies=%d in %.1f ms", "message", "webchat", 1, 1.7)
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                logger.exception("the turn failed")
        logger.warning("   ")  # no trace context, an empty message
        logger.error("no stack", extra={"exception.message": "only a message"})
        located = {"ai.operation.name": "op", "session.id": "s", "client.address": "10.1.2.3", "enduser.id": "u-1"}
        events.emit(body={"structured": [1, 2]}, attributes=located)
        events.emit(body="marked", attributes={"APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE": True})
        events.emit(
            body="availability",
            attributes={
                "microsoft.availability.name": "probe",
                "microsoft.availability.id": "a-1",
                "microsoft.availability.duration": "0.00:00:01.000",
                "microsoft.availability.success": "true",
            },
        )
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def _sent(
    ingestion: IngestionStandIn,
    exporter_class: type[AzureMonitorTraceExporter] | type[AzureMonitorLogExporter],
    items: Sequence[Any],
    storage: Path,
) -> list[Envelope]:
    ingestion.clear()
    # Given the provider, the trace exporter describes its resource (one Metric envelope per batch).
    provider = {"tracer_provider": TracerProvider(resource=RESOURCE)} if "Trace" in exporter_class.__name__ else {}
    exporter: Any = exporter_class(
        **provider,
        connection_string=ingestion.connection_string,
        storage_directory=str(storage),
        retry_total=0,
        storage_min_retry_interval=0,
    )
    try:
        result = exporter.export(items)
    finally:
        exporter.shutdown()
    assert result in (SpanExportResult.SUCCESS, LogRecordExportResult.SUCCESS)
    return list(ingestion.envelopes)


def _assert_same(sdk: list[Envelope], fast: list[Envelope]) -> None:
    assert len(fast) == len(sdk)
    # Without what the bot's exporters add on purpose (tested below) and the resource envelope's send time.
    for sent_by_sdk, sent_fast in zip(sdk, fast, strict=True):
        assert comparable_with_sdk(sent_fast) == comparable_with_sdk(sent_by_sdk)


def _refuse_sdk_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, anything converted by the SDK's own (slow) code fails the test."""

    def refuse(*_: object) -> None:
        raise AssertionError("converted by the SDK")

    monkeypatch.setattr(sdk_trace, "_convert_span_to_envelope", refuse)
    monkeypatch.setattr(sdk_trace, "_convert_span_events_to_envelopes", refuse)
    monkeypatch.setattr(sdk_logs, "_convert_log_to_envelope", refuse)


def test_spans_are_sent_as_the_sdk_sends_them(
    ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> None:
    spans = _spans(_representative_spans) + _spans(_shapes_the_sdk_converts)
    sdk = _sent(ingestion, AzureMonitorTraceExporter, spans, tmp_path / "sdk")
    fast = _sent(ingestion, FastAzureMonitorTraceExporter, spans, tmp_path / "fast")
    assert {envelope["data"]["baseType"] for envelope in sdk} == {
        "RequestData",
        "RemoteDependencyData",
        "ExceptionData",
        "MessageData",
        "MetricData",
    }
    _assert_same(sdk, fast)


def test_log_records_are_sent_as_the_sdk_sends_them(
    ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> None:
    records = _log_records(_representative_records)
    sdk = _sent(ingestion, AzureMonitorLogExporter, records, tmp_path / "sdk")
    fast = _sent(ingestion, FastAzureMonitorLogExporter, records, tmp_path / "fast")
    assert [envelope["data"]["baseType"] for envelope in sdk] == [
        "EventData",
        "MessageData",
        "ExceptionData",
        "MessageData",
        "ExceptionData",
        "MessageData",
        "EventData",
        "AvailabilityData",
    ]
    _assert_same(sdk, fast)


def test_the_representative_shapes_skip_the_sdk_conversion(
    ingestion: IngestionStandIn, azure_sdk_offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _refuse_sdk_conversion(monkeypatch)
    records = [r for r in _log_records(_representative_records) if r.log_record.body != "availability"]
    assert _sent(ingestion, FastAzureMonitorTraceExporter, _spans(_representative_spans), tmp_path / "traces")
    assert _sent(ingestion, FastAzureMonitorLogExporter, records, tmp_path / "logs")


async def test_the_bots_own_telemetry_is_sent_as_the_sdk_sends_it(
    ingestion: IngestionStandIn,
    channel: ChannelStandIn,
    azure_sdk_offline: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """What the running bot produces on both transports, with a dialog, a failing turn and text export on."""
    async with running_bot({"BOT_LOG_PERSONAL_INFORMATION": "true"}) as bot:
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9", channel_id="webchat") as emulator:
            for text in ("what can you do?", "feedback", "5", "skip", "write to jane@contoso.example"):
                assert (await emulator.expect_replies(text)).status == 200
        async with EmulatorClient(bot.messages_url, "http://127.0.0.1:9") as emulator:
            assert (await emulator.expect_replies("/fail")).status == 200  # the failure drill (Emulator only)
        async with EmulatorClient(bot.messages_url, channel.service_url) as emulator:
            await emulator.send("what can you do?")
            await channel.wait_for_replies_async(emulator.conversation_id, 2)
        bot.flush()
        spans, records = bot.spans.get_finished_spans(), bot.logs.get_finished_logs()
    assert {span.kind for span in spans} == {SpanKind.SERVER, SpanKind.CLIENT}
    assert any(event.name == "exception" for span in spans for event in span.events)
    sdk = _sent(ingestion, AzureMonitorTraceExporter, spans, tmp_path / "sdk-traces")
    sdk += _sent(ingestion, AzureMonitorLogExporter, records, tmp_path / "sdk-logs")
    _refuse_sdk_conversion(monkeypatch)  # every span and record of the bot takes the fast conversion
    fast = _sent(ingestion, FastAzureMonitorTraceExporter, spans, tmp_path / "fast-traces")
    fast += _sent(ingestion, FastAzureMonitorLogExporter, records, tmp_path / "fast-logs")
    assert {envelope["name"] for envelope in sdk} >= {
        "Microsoft.ApplicationInsights.Request",
        "Microsoft.ApplicationInsights.RemoteDependency",
        "Microsoft.ApplicationInsights.Event",
        "Microsoft.ApplicationInsights.Message",
        "Microsoft.ApplicationInsights.Exception",
    }
    _assert_same(sdk, fast)


def test_the_sdks_statistics_read_the_envelopes_as_its_own(
    ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> None:
    """With customer SDK statistics on, the SDK counts items by `envelope.data.base_type` and `.base_data.success`."""
    exporter = FastAzureMonitorTraceExporter(
        connection_string=ingestion.connection_string, storage_directory=str(tmp_path), retry_total=0
    )
    try:
        failed = next(s for s in _spans(_representative_spans) if not s.status.is_ok)
        envelope: Any = exporter._span_to_envelope(failed)  # the SDK's functions are typed for its TelemetryItem
    finally:
        exporter.shutdown()
    assert _get_telemetry_type(envelope) == _get_telemetry_type(TelemetryItem(envelope)) != "UNKNOWN"
    assert _get_telemetry_success_flag(envelope) is False


# -- outages: the SDK's transmission and offline storage, unchanged


def _turn_spans(count: int) -> tuple[ReadableSpan, ...]:
    def build(provider: TracerProvider) -> None:
        tracer = provider.get_tracer(catalog.INSTRUMENTATION_SCOPE)
        for _ in range(count):
            with tracer.start_as_current_span("POST /api/messages", kind=SpanKind.SERVER, attributes=SERVER_ATTRIBUTES):
                pass

    return _spans(build)


def _request_ids(envelopes: list[Envelope]) -> list[str]:
    return sorted(e["data"]["baseData"]["id"] for e in envelopes if e["data"]["baseType"] == "RequestData")


def _span_ids(spans: Sequence[ReadableSpan]) -> list[str]:
    return sorted(format(span.context.span_id, "016x") for span in spans)


@pytest.fixture
def trace_exporter(ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path) -> Iterator[Any]:
    exporter = FastAzureMonitorTraceExporter(
        connection_string=ingestion.connection_string,
        storage_directory=str(tmp_path / "traces"),
        retry_total=0,
        storage_min_retry_interval=0,  # stored batches may be resent at once: no waiting in the test
    )
    yield exporter
    exporter.shutdown()


@pytest.mark.parametrize("status", [500, 503, 429, None], ids=["500", "503", "429", "down"])
def test_spans_exported_during_an_outage_are_sent_after_it(
    ingestion: IngestionStandIn, trace_exporter: Any, status: int | None
) -> None:
    during, after = _turn_spans(5), _turn_spans(3)
    port = ingestion.port
    if status is None:
        ingestion.stop()  # connections are refused
    else:
        ingestion.fail_with(status)
    assert trace_exporter.export(during) is SpanExportResult.FAILURE
    if status is None:
        ingestion.start(port=port)
    else:
        ingestion.recover()
    assert trace_exporter.export(after) is SpanExportResult.SUCCESS  # and, having succeeded, sends what it stored
    received = ingestion.of_type("RequestData")
    assert _request_ids(received) == _span_ids(during + after)
    resent = {e["data"]["baseData"]["id"]: e for e in received}
    for span in during:  # stored and read back by the SDK, they are still the envelopes the exporter built
        expected = json.loads(json.dumps(trace_exporter._span_to_envelope(span)))
        assert resent[format(span.context.span_id, "016x")] == expected


class PartlyRejectingIngestion(IngestionStandIn):
    """Answers the first upload with 206: every second envelope rejected as retryable (503), the others kept."""

    def __init__(self) -> None:
        super().__init__()
        self.partial_answers = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self.partial_answers:
            return await super().handle(request)
        self.partial_answers += 1
        envelopes = parse_envelopes(await request.content.read())
        with self._lock:
            self.store(envelopes[::2])
        errors = [{"index": i, "statusCode": 503, "message": "try later"} for i in range(1, len(envelopes), 2)]
        payload = {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes) - len(errors), "errors": errors}
        return web.json_response(payload, status=206)


def test_the_envelopes_a_partial_success_rejects_are_sent_again(azure_sdk_offline: None, tmp_path: Path) -> None:
    first, later = _turn_spans(6), _turn_spans(1)
    with PartlyRejectingIngestion() as ingestion:
        exporter = FastAzureMonitorTraceExporter(
            connection_string=ingestion.connection_string,
            storage_directory=str(tmp_path),
            retry_total=0,
            storage_min_retry_interval=0,
        )
        try:
            # The SDK stores the rejected half to send again, and reports the batch as not (entirely) exported.
            assert exporter.export(first) is SpanExportResult.FAILURE
            assert ingestion.partial_answers == 1
            assert len(ingestion.of_type("RequestData")) == 3
            assert exporter.export(later) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        assert _request_ids(ingestion.envelopes) == _span_ids(first + later)


def test_log_records_exported_during_an_outage_are_sent_after_it(
    ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> None:
    records = _log_records(_representative_records)
    exporter = FastAzureMonitorLogExporter(
        connection_string=ingestion.connection_string,
        storage_directory=str(tmp_path / "logs"),
        retry_total=0,
        storage_min_retry_interval=0,
    )
    try:
        ingestion.fail_with(503)
        assert exporter.export(records[:4]) is LogRecordExportResult.FAILURE
        ingestion.recover()
        assert exporter.export(records[4:]) is LogRecordExportResult.SUCCESS
    finally:
        exporter.shutdown()
    expected = [json.loads(json.dumps(exporter._log_to_envelope(record))) for record in records]
    key = json.dumps
    assert sorted(map(key, ingestion.envelopes)) == sorted(map(key, expected))


def test_what_a_stopped_exporter_left_on_disk_is_sent_by_the_next(
    ingestion: IngestionStandIn, azure_sdk_offline: None, tmp_path: Path
) -> None:
    options: dict[str, Any] = {
        "connection_string": ingestion.connection_string,
        "storage_directory": str(tmp_path / "traces"),
        "retry_total": 0,
        "storage_min_retry_interval": 0,
    }
    stored, later = _turn_spans(4), _turn_spans(1)
    ingestion.fail_with(503)
    first = FastAzureMonitorTraceExporter(**options)
    assert first.export(stored) is SpanExportResult.FAILURE
    first.shutdown()
    ingestion.recover()
    second = FastAzureMonitorTraceExporter(**options)
    try:
        assert second.export(later) is SpanExportResult.SUCCESS
    finally:
        second.shutdown()
    assert _request_ids(ingestion.envelopes) == _span_ids(stored + later)


def test_the_exporters_take_the_sdk_exporters_keywords(azure_sdk_offline: None, tmp_path: Path) -> None:
    class Credential:
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("no token is needed to build an exporter")

    options: dict[str, Any] = {
        "connection_string": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=http://127.0.0.1:9/",
        "retry_total": 0,
        "storage_min_retry_interval": 10,
        "credential": Credential(),
    }
    provider = TracerProvider(resource=RESOURCE)
    traces = FastAzureMonitorTraceExporter(
        tracer_provider=provider, storage_directory=str(tmp_path / "traces"), **options
    )
    logs = FastAzureMonitorLogExporter(storage_directory=str(tmp_path / "logs"), **options)
    try:
        assert isinstance(traces, AzureMonitorTraceExporter)
        assert isinstance(logs, AzureMonitorLogExporter)
        assert traces.storage is not None
        assert logs.storage is not None
        assert traces._storage_min_retry_interval == logs._storage_min_retry_interval == 10
        assert Path(str(traces._storage_directory)) == tmp_path / "traces"
    finally:
        traces.shutdown()
        logs.shutdown()
