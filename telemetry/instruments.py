"""The metric instruments of the catalog, created once per meter."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import psutil
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

from telemetry import catalog
from telemetry.catalog import Instrument, Metric

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
        self.requests_rejected = _counter(meter, catalog.REQUESTS_REJECTED)
        self.exported_spans = _counter(meter, catalog.EXPORTED_SPANS)
        self.exported_logs = _counter(meter, catalog.EXPORTED_LOGS)
        self.exported_metric_points = _counter(meter, catalog.EXPORTED_METRIC_POINTS)

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
