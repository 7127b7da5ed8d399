"""Queue-full drops of the batch processors are counted exactly (telemetry/drop_counting.py): every record is either
handed to the exporter or counted as dropped, never both, whatever the export thread does meanwhile."""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from telemetry.drop_counting import QUEUE_FULL, count_drops_exactly
from telemetry.setup import processor_metrics

QUEUE = 8


class _Exporter(SpanExporter):
    """Counts what it is handed; `gate` (when given) holds every export until it is set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.exported = 0
        self._lock = threading.Lock()
        self._gate = gate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._gate is not None:
            self._gate.wait(30)
        with self._lock:
            self.exported += len(spans)
        return SpanExportResult.SUCCESS


def _processor(exporter: SpanExporter, reader: InMemoryMetricReader, exact: bool) -> BatchSpanProcessor:
    with processor_metrics():
        processor = BatchSpanProcessor(
            exporter,
            max_queue_size=QUEUE,
            max_export_batch_size=QUEUE,
            schedule_delay_millis=1,
            meter_provider=MeterProvider(metric_readers=[reader]),
        )
    if exact:
        assert count_drops_exactly(processor) is not None
    return processor


def _dropped(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "otel.sdk.processor.span.processed":
                    continue
                for point in metric.data.data_points:
                    if dict(point.attributes or {}).get("error.type") == QUEUE_FULL:
                        total += int(point.value)  # type: ignore[union-attr]
    return total


def _spans(processor: BatchSpanProcessor, count: int) -> None:
    tracer = TracerProvider()
    tracer.add_span_processor(processor)
    for _ in range(count):
        tracer.get_tracer("test").start_span("s").end()


def test_the_stock_processor_counts_a_drop_when_a_batch_is_taken_out_between_its_check_and_its_insert() -> None:
    reader = InMemoryMetricReader()
    exporter = _Exporter()
    processor = _processor(exporter, reader, exact=False)
    taken: list[Any] = []

    class ExportInBetween(collections.deque[Any]):
        """The export thread takes the oldest record out right after the SDK looked at the length."""

        def appendleft(self, item: Any) -> None:
            if len(self) == self.maxlen:
                taken.append(self.pop())
            super().appendleft(item)

    batch = processor._batch_processor
    with batch._export_lock:  # the worker must not export meanwhile
        batch._queue = ExportInBetween((), QUEUE)
        _spans(processor, QUEUE + 1)
        assert len(taken) + len(batch._queue) == QUEUE + 1  # nothing was lost...
        assert _dropped(reader) == 1  # ...but one record was counted as dropped
    processor.shutdown()


def test_a_full_queue_counts_exactly_what_it_evicts() -> None:
    reader = InMemoryMetricReader()
    gate = threading.Event()
    exporter = _Exporter(gate)
    processor = _processor(exporter, reader, exact=True)
    _spans(processor, 100)
    gate.set()
    processor.force_flush()
    assert exporter.exported + _dropped(reader) == 100
    assert exporter.exported >= QUEUE  # the queue itself was delivered
    assert _dropped(reader) > 0
    processor.shutdown()


def test_records_are_delivered_or_counted_once_while_threads_emit_and_the_exporter_runs() -> None:
    # The stock processor miscounts here in most runs (more or fewer drops than records lost).
    reader = InMemoryMetricReader()
    exporter = _Exporter()
    processor = _processor(exporter, reader, exact=True)
    threads = [threading.Thread(target=_spans, args=(processor, 2000)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    processor.force_flush()
    assert exporter.exported + _dropped(reader) == 4 * 2000
    processor.shutdown()
