"""The metric instruments of the catalog, created once per meter."""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psutil
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.metrics._internal.measurement import Measurement

from telemetry import catalog
from telemetry.catalog import Instrument, Metric

_hash_attributes: Callable[[Any], object] | None
try:  # how the SDK keys aggregations by attributes; without it (other SDK versions) recorders take the SDK's path
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes as _sdk_key
except ImportError:  # pragma: no cover
    _hash_attributes = None
else:
    _hash_attributes = _sdk_key

ACTIVE_WINDOW_SECONDS = 300.0
MAX_TRACKED_CONVERSATIONS = 100_000


class ActiveConversations:
    """Conversations (by hash) seen within the window; bounded so a flood of new ids cannot grow memory."""

    def __init__(self, window: float = ACTIVE_WINDOW_SECONDS, limit: int = MAX_TRACKED_CONVERSATIONS) -> None:
        self._window = window
        self._limit = limit
        self._last_seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def touch(self, conversation_hash: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._last_seen[conversation_hash] = now
            self._last_seen.move_to_end(conversation_hash)
            while len(self._last_seen) > self._limit:
                self._last_seen.popitem(last=False)

    def count(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._last_seen:
                oldest = next(iter(self._last_seen.values()))
                if now - oldest <= self._window:
                    break
                self._last_seen.popitem(last=False)
            return len(self._last_seen)


class ProcessStats:
    """CPU utilisation since the previous collection (0..1 of all CPUs) and resident memory."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._last = (time.monotonic(), self._cpu_seconds())

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def cpu_utilization(self, _: CallbackOptions) -> Iterable[Observation]:
        now, cpu = time.monotonic(), self._cpu_seconds()
        last_time, last_cpu = self._last
        self._last = (now, cpu)
        elapsed = now - last_time
        if elapsed <= 0:
            return []
        return [Observation(min(max((cpu - last_cpu) / elapsed / self._cpus, 0.0), 1.0))]

    def cpu_time(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._cpu_seconds())]

    def memory_usage(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._process.memory_info().rss)]


Labels = tuple[tuple[str, str | int], ...]
"""A label set as (key, value) pairs: hashable, so a recorder can remember what it resolved for it."""

_NO_CONTEXT = Context()
_MAX_LABEL_SETS = 4096


class Recorder:
    """Records on one SDK counter or histogram, label sets given as `Labels`, at a fraction of the SDK's cost.

    Each SDK measurement copies, validates and sorts its attributes, then hashes them again for every metric
    reader (Prometheus and Azure Monitor) to find the aggregation to update, several times a turn (what that cost
    and what this saves: docs/performance.md, "A traced turn").
    The first measurement of a label set goes through the SDK; the aggregations it updated (one per reader and
    view) are then looked up once and the later measurements of that label set update them directly, as the SDK
    would with exemplars off. Whenever that lookup is not possible (readers added or removed since, exemplars
    sampled, an SDK whose internals differ) measurements take the SDK's own path."""

    def __init__(self, instrument: Counter | Histogram) -> None:
        self.instrument = instrument
        self._sdk_record: Callable[..., None] = instrument.add if isinstance(instrument, Counter) else instrument.record
        self._consumer: Any = getattr(instrument, "_measurement_consumer", None)
        self._storages: object = None
        self._resolved: dict[Labels, Sequence[Any] | None] = {}
        # Building a Measurement costs more than aggregating it; a count of one (most of them) reuses this one.
        self._one = Measurement(1, 0, instrument, _NO_CONTEXT)  # type: ignore[arg-type]

    def __call__(self, value: float, labels: Labels) -> None:
        aggregations = self._resolved.get(labels)
        if aggregations is not None and 0 <= value < math.inf and self._consumer._reader_storages is self._storages:
            if value == 1 and type(value) is int:
                measurement = self._one
            else:
                measurement = Measurement(value, 0, self.instrument, _NO_CONTEXT)  # type: ignore[arg-type]
            for aggregation in aggregations:
                aggregation.aggregate(measurement, False)
            return
        attributes = dict(labels)
        self._sdk_record(value, attributes)
        consumer = self._consumer
        if consumer is not None and (labels not in self._resolved or consumer._reader_storages is not self._storages):
            self._resolve(labels, attributes)

    def _resolve(self, labels: Labels, attributes: dict[str, str | int]) -> None:
        storages = getattr(self._consumer, "_reader_storages", None)
        if storages is not self._storages:
            self._resolved.clear()
            self._storages = storages
        if len(self._resolved) >= _MAX_LABEL_SETS:  # bounded: unexpected label values must not grow memory
            self._resolved.clear()
        self._resolved[labels] = _aggregations(self.instrument, self._consumer, attributes)


def _aggregations(instrument: object, consumer: Any, attributes: dict[str, str | int]) -> Sequence[Any] | None:
    """The SDK aggregations a measurement of `instrument` with `attributes` updates, or None if unknown."""
    if _hash_attributes is None:
        return None
    try:
        # With exemplars sampled (BOT_PROMETHEUS_EXEMPLARS), histograms take the SDK's path, which offers each
        # measurement to the exemplar reservoir with its span; counters' exemplars are shown nowhere.
        exemplars = not isinstance(consumer._sdk_config.exemplar_filter, AlwaysOffExemplarFilter)
        if exemplars and not isinstance(instrument, Counter):
            return None
        if not instrument._is_enabled():  # type: ignore[attr-defined]
            return None
        found: list[Any] = []
        for storage in consumer._reader_storages.values():
            matches = storage._instrument_view_instrument_matches.get(instrument)
            if matches is None:
                return None
            for match in matches:
                keys = match._view._attribute_keys
                selected = attributes if keys is None else {k: v for k, v in attributes.items() if k in keys}
                aggregation = match._attributes_aggregation.get(_hash_attributes(selected))
                if aggregation is None:
                    return None
                found.append(aggregation)
        return tuple(found)
    except (AttributeError, TypeError):
        return None


def _reported(values: dict[str, float], name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    return lambda _: [Observation(values[name])]


def _counter(meter: Meter, metric: Metric) -> Counter:
    assert metric.instrument is Instrument.COUNTER, metric.name
    return meter.create_counter(metric.name, unit=metric.unit, description=metric.description)


def _histogram(meter: Meter, metric: Metric) -> Histogram:
    assert metric.instrument is Instrument.HISTOGRAM, metric.name
    return meter.create_histogram(
        metric.name,
        unit=metric.unit,
        description=metric.description,
        explicit_bucket_boundaries_advisory=list(metric.buckets),
    )


class Instruments:
    def __init__(self, meter: Meter) -> None:
        self.http_server_duration = _histogram(meter, catalog.HTTP_SERVER_DURATION)
        self.turns = _counter(meter, catalog.TURNS)
        self.turn_duration = _histogram(meter, catalog.TURN_DURATION)
        self.messages_received = _counter(meter, catalog.MESSAGES_RECEIVED)
        self.messages_sent = _counter(meter, catalog.MESSAGES_SENT)
        self.knowledge_answers = _counter(meter, catalog.KNOWLEDGE_ANSWERS)
        self.knowledge_fallbacks = _counter(meter, catalog.KNOWLEDGE_FALLBACKS)
        self.dialogs_started = _counter(meter, catalog.DIALOGS_STARTED)
        self.dialogs_completed = _counter(meter, catalog.DIALOGS_COMPLETED)
        self.dialogs_cancelled = _counter(meter, catalog.DIALOGS_CANCELLED)
        self.errors = _counter(meter, catalog.ERRORS)
        self.channel_reply_duration = _histogram(meter, catalog.CHANNEL_REPLY_DURATION)
        self.channel_reply_retries = _counter(meter, catalog.CHANNEL_REPLY_RETRIES)
        self.requests_rejected = _counter(meter, catalog.REQUESTS_REJECTED)
        self.exported_spans = _counter(meter, catalog.EXPORTED_SPANS)
        self.exported_logs = _counter(meter, catalog.EXPORTED_LOGS)
        self.exported_metric_points = _counter(meter, catalog.EXPORTED_METRIC_POINTS)

        # The per-turn measurements, through recorders (see Recorder).
        self.record_http_server_duration = Recorder(self.http_server_duration)
        self.count_turn = Recorder(self.turns)
        self.record_turn_duration = Recorder(self.turn_duration)
        self.count_message_received = Recorder(self.messages_received)
        self.count_message_sent = Recorder(self.messages_sent)
        self.count_knowledge_answer = Recorder(self.knowledge_answers)
        self.count_knowledge_fallback = Recorder(self.knowledge_fallbacks)
        self.count_dialog_started = Recorder(self.dialogs_started)
        self.count_dialog_completed = Recorder(self.dialogs_completed)
        self.count_dialog_cancelled = Recorder(self.dialogs_cancelled)
        self.record_channel_reply_duration = Recorder(self.channel_reply_duration)
        self.count_channel_reply_retry = Recorder(self.channel_reply_retries)

        # Settings reported by the bot (through its BotTelemetryClient), exposed as gauges.
        self.reported: dict[str, float] = {}
        for metric in (catalog.FAULT_ERROR_RATIO, catalog.FAULT_DELAY_RATIO, catalog.FAULT_DELAY):
            self.reported[metric.name] = 0.0
            meter.create_observable_gauge(
                metric.name,
                callbacks=[_reported(self.reported, metric.name)],
                unit=metric.unit,
                description=metric.description,
            )

        self.active_conversations = ActiveConversations()
        meter.create_observable_gauge(
            catalog.ACTIVE_CONVERSATIONS.name,
            callbacks=[lambda _: [Observation(self.active_conversations.count())]],
            unit=catalog.ACTIVE_CONVERSATIONS.unit,
            description=catalog.ACTIVE_CONVERSATIONS.description,
        )
        stats = ProcessStats()
        meter.create_observable_gauge(
            catalog.PROCESS_CPU_UTILIZATION.name,
            callbacks=[stats.cpu_utilization],
            unit=catalog.PROCESS_CPU_UTILIZATION.unit,
            description=catalog.PROCESS_CPU_UTILIZATION.description,
        )
        meter.create_observable_counter(
            catalog.PROCESS_CPU_TIME.name,
            callbacks=[stats.cpu_time],
            unit=catalog.PROCESS_CPU_TIME.unit,
            description=catalog.PROCESS_CPU_TIME.description,
        )
        meter.create_observable_gauge(
            catalog.PROCESS_MEMORY_USAGE.name,
            callbacks=[stats.memory_usage],
            unit=catalog.PROCESS_MEMORY_USAGE.unit,
            description=catalog.PROCESS_MEMORY_USAGE.description,
        )
