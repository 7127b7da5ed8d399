"""Telemetry of the bot's requests to channels (its replies), as one aiohttp trace config."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import aiohttp
from opentelemetry import trace
from opentelemetry.instrumentation.utils import http_status_to_status_code
from opentelemetry.propagate import inject
from opentelemetry.util.http import redact_url, sanitize_method
from yarl import URL

from telemetry import catalog
from telemetry.botframework.activity import CHANNELS, bounded_label
from telemetry.botframework.masking import masked_exception
from telemetry.instruments import Instruments, Labels


def reply_error_type(status: int) -> str:
    """`error.type` of a failed reply: the status code when it is one the Bot Connector documents or HTTP commonly
    uses, else `_OTHER` (OpenTelemetry's value for the unknown): a channel must not create a series per status."""
    return str(status) if status in catalog.KNOWN_REPLY_STATUSES else catalog.ERROR_TYPE_OTHER


def channel_reply_telemetry(
    tracer: trace.Tracer, instruments: Instruments, url_filter: Callable[[URL], str]
) -> aiohttp.TraceConfig:
    """Telemetry of every request to a channel, as one aiohttp trace config.

    - `bot.channel.reply.duration` for every request. The sender labels each request with its channel through
      `trace_request_ctx={"channel": ...}`; a retried reply also names its `resend_count` (1, 2, ...) and
      `resend_reason` (what failed before), which count in `bot.channel.reply.retries` and set
      `http.request.resend_count` on the retry's CLIENT span (one span per attempt, as the HTTP conventions ask).
    - For the requests of a traced turn, the CLIENT span the aiohttp client instrumentation makes (its name,
      attributes under the current HTTP conventions, status and exception event; `url_filter` templates the URL) and
      the W3C headers. A request of an untraced turn gets neither: the instrumentation prepared a span for every
      reply, recorded or not, and that cost each reply CPU (docs/performance.md, "A reply to the channel").
    """
    config = aiohttp.TraceConfig()

    def record(context: SimpleNamespace, error_type: str | None) -> None:
        channel = (context.trace_request_ctx or {}).get("channel")
        labels: Labels = ((catalog.CHANNEL, bounded_label(channel, CHANNELS)),)
        if error_type:
            labels += ((catalog.ERROR_TYPE, error_type),)
        instruments.record_channel_reply_duration(time.perf_counter() - context.reply_started, labels)

    async def on_start(
        _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        context.reply_started = time.perf_counter()
        context.reply_span = None
        request = context.trace_request_ctx or {}
        resend = request.get("resend_count")
        if resend:
            labels: Labels = ((catalog.CHANNEL, bounded_label(request.get("channel"), CHANNELS)),)
            labels += ((catalog.ERROR_TYPE, str(request.get("resend_reason") or "unknown")),)
            instruments.count_channel_reply_retry(1, labels)
        if not trace.get_current_span().is_recording():
            return
        method = sanitize_method(params.method.strip())
        url = redact_url(url_filter(params.url))
        attributes: dict[str, Any] = {catalog.HTTP_METHOD: method, "url.full": url}
        if resend:
            attributes[catalog.HTTP_RESEND_COUNT] = int(resend)
        try:
            parsed = urlparse(url)
            if parsed.hostname:
                attributes["server.address"] = parsed.hostname
            if parsed.port:
                attributes["server.port"] = parsed.port
        except ValueError:
            pass
        span = tracer.start_span(
            "HTTP" if method == "_OTHER" else method, kind=trace.SpanKind.CLIENT, attributes=attributes
        )
        context.reply_span = span
        inject(params.headers, context=trace.set_span_in_context(span))

    async def on_end(_: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        record(context, reply_error_type(status) if status >= 400 else None)
        span: trace.Span | None = context.reply_span
        if span is not None:
            span.set_attribute(catalog.HTTP_STATUS, status)
            code = http_status_to_status_code(status, server_span=False)
            if code is trace.StatusCode.ERROR:
                span.set_attribute(catalog.ERROR_TYPE, reply_error_type(status))
            span.set_status(trace.Status(code))
            span.end()

    async def on_exception(
        _: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        error_type = type(params.exception).__qualname__
        record(context, error_type)
        span: trace.Span | None = context.reply_span
        if span is not None:
            span.set_attribute(catalog.ERROR_TYPE, error_type)
            span.set_status(trace.Status(trace.StatusCode.ERROR, error_type))
            # aiohttp's messages may quote the URL, with the conversation and activity ids in it
            filtered = url_filter(params.url)
            replacements = {str(params.url): filtered}
            if len(params.url.raw_path) > 1:
                replacements[params.url.raw_path] = URL(filtered).raw_path
                replacements[params.url.path] = URL(filtered).raw_path
            span.record_exception(params.exception, attributes=masked_exception(params.exception, (), replacements))
            span.end()

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    return config
