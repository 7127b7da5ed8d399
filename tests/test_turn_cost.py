"""The per-turn measurements take a shortcut past the SDK (telemetry.instruments.Recorder): every reader must
still see exactly what the SDK's own path would have given it."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

from telemetry import instruments
from telemetry.instruments import Labels, Recorder

WEBCHAT: Labels = (("bot.channel", "webchat"), ("bot.outcome", "success"))
EMULATOR: Labels = (("bot.channel", "emulator"), ("bot.outcome", "error"))
DURATIONS = (0.004, 0.02, 0.0, 1.5, 0.02, 7.0)


def _delta() -> InMemoryMetricReader:
    return InMemoryMetricReader(
        preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
    )


def _provider(*readers: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=list(readers), exemplar_filter=AlwaysOffExemplarFilter())


def _points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[Any, ...]]:
    """Each data point's numbers (value, or count, sum, min, max and bucket counts) by metric and attributes."""
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[Any, ...]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted((point.attributes or {}).items())))
                    if isinstance(point, HistogramDataPoint):
                        points[key] = (point.count, point.sum, point.min, point.max, tuple(point.bucket_counts))
                    else:
                        assert isinstance(point, NumberDataPoint)
                        points[key] = (point.value,)
    return points


def _record(provider: MeterProvider, fast: bool, rounds: int) -> None:
    meter = provider.get_meter("test")
    turns = meter.create_counter("turns")
    duration = meter.create_histogram("duration", explicit_bucket_boundaries_advisory=[0.01, 0.1, 1.0])
    count, record = Recorder(turns), Recorder(duration)
    for _ in range(rounds):
        for labels in (WEBCHAT, EMULATOR, WEBCHAT):
            for value in DURATIONS:
                if fast:
                    count(1, labels)
                    record(value, labels)
                else:
                    turns.add(1, dict(labels))
                    duration.record(value, dict(labels))


def test_recorders_give_every_reader_what_the_sdk_would() -> None:
    fast_cumulative, fast_delta = InMemoryMetricReader(), _delta()
    sdk_cumulative, sdk_delta = InMemoryMetricReader(), _delta()
    fast, sdk = _provider(fast_cumulative, fast_delta), _provider(sdk_cumulative, sdk_delta)
    for _ in range(2):  # the second delta collection holds only what came after the first
        _record(fast, fast=True, rounds=3)
        _record(sdk, fast=False, rounds=3)
        assert _points(fast_delta) == _points(sdk_delta)
        assert _points(fast_cumulative) == _points(sdk_cumulative)
    assert _points(fast_cumulative)[("turns", tuple(sorted(WEBCHAT)))] == (72,)


def _sdk_calls(counter: object, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The measurements that will reach the SDK's own path for `counter` (its consumer, read to count them)."""
    consumer: Any = getattr(counter, "_measurement_consumer")  # noqa: B009 - the SDK's, not part of its API
    calls: list[object] = []
    consume = consumer.consume_measurement

    def counted(measurement: object) -> None:
        calls.append(measurement)
        consume(measurement)

    monkeypatch.setattr(consumer, "consume_measurement", counted)
    return calls


def test_only_the_first_measurement_of_a_label_set_takes_the_sdk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _provider(InMemoryMetricReader(), _delta())
    counter = provider.get_meter("test").create_counter("turns")
    calls = _sdk_calls(counter, monkeypatch)
    count = Recorder(counter)
    for _ in range(5):
        count(1, WEBCHAT)
        count(1, EMULATOR)
    assert len(calls) == 2


def test_a_reader_added_later_sees_every_later_measurement() -> None:
    first, later = InMemoryMetricReader(), InMemoryMetricReader()
    provider = _provider(first)
    count = Recorder(provider.get_meter("test").create_counter("turns"))
    for _ in range(3):
        count(1, WEBCHAT)
    provider.add_metric_reader(later)
    for _ in range(4):
        count(1, WEBCHAT)
    key = ("turns", tuple(sorted(WEBCHAT)))
    assert _points(first)[key] == (7,)
    assert _points(later)[key] == (4,)


def test_values_the_sdk_refuses_are_refused_the_same_way() -> None:
    reader = InMemoryMetricReader()
    record = Recorder(_provider(reader).get_meter("test").create_histogram("duration"))
    for value in (0.5, -1.0, float("nan"), float("inf"), 0.25):
        record(value, WEBCHAT)
    count, total = _points(reader)[("duration", tuple(sorted(WEBCHAT)))][:2]
    assert (count, total) == (2, 0.75)


@pytest.mark.parametrize("fallback", ["sdk without the aggregation key", "exemplars sampled"])
def test_without_the_shortcut_every_measurement_takes_the_sdk_path(
    fallback: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = InMemoryMetricReader()
    if fallback == "exemplars sampled":
        provider = MeterProvider(metric_readers=[reader])
    else:
        monkeypatch.setattr(instruments, "_hash_attributes", None)
        provider = _provider(reader)
    meter = provider.get_meter("test")
    # With exemplars sampled, histograms offer each measurement to the exemplar reservoir (the SDK's path); counters,
    # whose exemplars nothing shows, keep the shortcut.
    instrument = meter.create_histogram("turns") if fallback == "exemplars sampled" else meter.create_counter("turns")
    calls = _sdk_calls(instrument, monkeypatch)
    count = Recorder(instrument)
    for _ in range(3):
        count(1, WEBCHAT)
    assert len(calls) == 3
    assert _points(reader)[("turns", tuple(sorted(WEBCHAT)))][0] == 3


def test_with_exemplars_sampled_counters_keep_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = InMemoryMetricReader()
    counter = MeterProvider(metric_readers=[reader]).get_meter("test").create_counter("turns")
    calls = _sdk_calls(counter, monkeypatch)
    count = Recorder(counter)
    for _ in range(3):
        count(1, WEBCHAT)
    assert len(calls) == 1  # the first measurement resolves the aggregation
    assert _points(reader)[("turns", tuple(sorted(WEBCHAT)))] == (3,)
