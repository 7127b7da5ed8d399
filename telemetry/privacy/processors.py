"""Where redaction sits in the pipeline: wrappers of the span processor and exporter, and a log record processor that
runs before the exporting ones."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from telemetry.privacy.attributes import plain_attributes, redact_attributes, redacted_changes, span_attributes
from telemetry.privacy.text import redact


class RedactingSpanProcessor(SpanProcessor):
    """Wraps the exporting processor; hands it a redacted copy of each ended span."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redact_span(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; redacts each span of a batch in the batch processor's thread, off the event loop."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([redact_span(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def redact_span(span: ReadableSpan) -> ReadableSpan:
    plain = span_attributes(span)
    changes = redacted_changes(plain)
    attributes = {**plain, **changes} if changes else None
    events: list[Event] | None = None
    for index, event in enumerate(span.events):
        clean = redact_attributes(event.attributes)
        if clean is not None:
            if events is None:
                events = list(span.events)
            events[index] = Event(event.name, clean, event.timestamp)
    description = span.status.description
    clean_description = redact(description) if description else description
    if attributes is None and events is None and clean_description == description:
        return span
    status = span.status
    if clean_description != description:
        status = type(status)(status.status_code, clean_description)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events if events is not None else span.events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingLogProcessor(LogRecordProcessor):
    """Runs before the exporting processors and redacts the record in place."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        if isinstance(record.body, str):
            record.body = redact(record.body)
        changes = redacted_changes(plain_attributes(record.attributes))
        if changes:
            for key, value in changes.items():
                record.attributes[key] = value  # type: ignore[index]

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
