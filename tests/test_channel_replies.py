"""Telemetry of the bot's requests to channels (telemetry/botframework/replies.py:channel_reply_telemetry): the
CLIENT span of a traced turn's reply is the one the aiohttp client instrumentation makes under the current HTTP
conventions, every reply is timed, and replies of untraced turns cost no span and carry no trace headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loadtest.rig.ports import free_port
from telemetry import catalog
from telemetry.botframework import channel_reply_telemetry
from telemetry.instruments import Instruments
from telemetry.wiring import reply_url

ACTIVITIES = "/v3/conversations/{conversation}/activities/{activity}"


class Channel:
    """A channel answering replies with the status its conversation id names (`c-201`, `c-503`), recording headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.base_url = ""

    async def reply(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        return web.json_response({"id": "r1"}, status=int(request.match_info["conversation"].split("-")[1]))


@pytest.fixture
async def channel() -> AsyncIterator[Channel]:
    answering = Channel()
    app = web.Application()
    app.router.add_post(ACTIVITIES, answering.reply)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    answering.base_url = f"http://127.0.0.1:{port}"
    yield answering
    await runner.cleanup()


async def _reply(
    make_config: Callable[[TracerProvider], aiohttp.TraceConfig], url: str, traced: bool
) -> list[ReadableSpan]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    async with aiohttp.ClientSession(trace_configs=[make_config(provider)]) as session:
        parent = tracer.start_span("turn") if traced else trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
        with trace.use_span(parent, end_on_exit=True):
            try:
                async with session.post(url, json={"type": "message"}, trace_request_ctx={"channel": "webchat"}):
                    pass
            except aiohttp.ClientError:
                pass
    return [span for span in spans.get_finished_spans() if span.kind is trace.SpanKind.CLIENT]


def _described(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name,
        "attributes": dict(span.attributes or {}),
        "status": (span.status.status_code, span.status.description),
        "events": [(event.name, sorted(dict(event.attributes or {}))) for event in span.events],
        "parent": span.parent is not None,
    }


def _ours(provider: TracerProvider) -> aiohttp.TraceConfig:
    instruments = Instruments(MeterProvider().get_meter("test"))
    return channel_reply_telemetry(provider.get_tracer(catalog.INSTRUMENTATION_SCOPE), instruments, reply_url)


def _instrumentation(provider: TracerProvider) -> aiohttp.TraceConfig:
    return create_trace_config(
        url_filter=reply_url,
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        sem_conv_opt_in_mode=_StabilityMode.HTTP,
    )


@pytest.mark.parametrize("conversation", ["c-201", "c-404", "c-503"])
async def test_a_traced_reply_has_the_span_the_instrumentation_makes(channel: Channel, conversation: str) -> None:
    url = channel.base_url + ACTIVITIES.format(conversation=conversation, activity="a-1")
    (ours,) = await _reply(_ours, url, traced=True)
    (theirs,) = await _reply(_instrumentation, url, traced=True)
    assert _described(ours) == _described(theirs)
    templated = "/v3/conversations/{conversationId}/activities/{activityId}"
    assert str(dict(ours.attributes or {})["url.full"]).endswith(templated)
    ours_headers, theirs_headers = channel.headers
    assert ours_headers["traceparent"].split("-")[2] == format(ours.context.span_id, "016x")
    assert theirs_headers["traceparent"].split("-")[2] == format(theirs.context.span_id, "016x")


async def test_a_traced_reply_that_cannot_connect_is_recorded_as_the_instrumentation_records_it() -> None:
    url = f"http://127.0.0.1:{free_port()}" + ACTIVITIES.format(conversation="c-201", activity="a-1")
    (ours,) = await _reply(_ours, url, traced=True)
    (theirs,) = await _reply(_instrumentation, url, traced=True)
    assert _described(ours) == _described(theirs)
    assert dict(ours.attributes or {})[catalog.ERROR_TYPE] == "ClientConnectorError"


async def test_replies_of_untraced_turns_are_timed_but_get_no_span_and_no_trace_headers(channel: Channel) -> None:
    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("test"))

    def ours(provider: TracerProvider) -> aiohttp.TraceConfig:
        return channel_reply_telemetry(provider.get_tracer("test"), instruments, reply_url)

    url = channel.base_url + ACTIVITIES.format(conversation="c-503", activity="a-1")
    assert await _reply(ours, url, traced=False) == []
    assert "traceparent" not in channel.headers[0]
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == catalog.CHANNEL_REPLY_DURATION.name
        for point in metric.data.data_points
    ]
    assert [(dict(point.attributes or {}), point.count) for point in points] == [  # type: ignore[union-attr]
        ({catalog.CHANNEL: "webchat", catalog.ERROR_TYPE: "503"}, 1)
    ]


async def test_a_channel_answering_hundreds_of_statuses_adds_a_bounded_set_of_series(channel: Channel) -> None:
    """error.type takes the channel's status only for the known codes, `_OTHER` for the rest (a channel answering
    300 statuses took Prometheus from 157 to 5,964 series)."""
    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("test"))
    config = channel_reply_telemetry(TracerProvider().get_tracer("test"), instruments, reply_url)
    async with aiohttp.ClientSession(trace_configs=[config]) as session:
        for status in range(400, 600):
            url = channel.base_url + ACTIVITIES.format(conversation=f"c-{status}", activity="a-1")
            async with session.post(url, json={}, trace_request_ctx={"channel": "webchat"}) as response:
                assert response.status == status
    data = reader.get_metrics_data()
    assert data is not None
    labels = {
        dict(point.attributes or {}).get(catalog.ERROR_TYPE)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == catalog.CHANNEL_REPLY_DURATION.name
        for point in metric.data.data_points
    }
    assert labels == {str(status) for status in catalog.KNOWN_REPLY_STATUSES} | {catalog.ERROR_TYPE_OTHER}
