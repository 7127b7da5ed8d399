"""The trace samplers built from OTEL_TRACES_SAMPLER, on a real TracerProvider."""

from __future__ import annotations

import random
import types

import pytest
from azure.monitor.opentelemetry.exporter.export.trace import _rate_limited_sampling
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry.config import TelemetryConfig
from telemetry.sampling import SAMPLE_RATE_ATTRIBUTE, build_sampler

SECOND_NS = 1_000_000_000


class Clock:
    """The rate-limited sampler's time source, moved by the test."""

    def __init__(self) -> None:
        self.now = 0

    def time_ns(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_rate_limited_sampling, "time", types.SimpleNamespace(time_ns=fake.time_ns))
    return fake


def test_a_turn_kept_at_full_rate_keeps_its_replies_when_the_rate_drops(clock: Clock) -> None:
    config = TelemetryConfig.from_env({"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": "5"})
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=build_sampler(config))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    clock.now += 10 * SECOND_NS  # quiet for a while: the next turn is kept at 100 %
    with tracer.start_as_current_span("turn") as turn:
        assert turn.is_recording()
        for _ in range(200):  # a burst of other turns in the same instant: the rate falls far below 100 %
            tracer.start_span("other turn", context=Context()).end()
        with tracer.start_as_current_span("reply") as reply:
            assert reply.is_recording()  # the reply shares its turn's decision
    finished = {span.name: span for span in spans.get_finished_spans()}
    for name in ("turn", "reply"):  # both counted once: kept at 100 %
        assert SAMPLE_RATE_ATTRIBUTE not in (finished[name].attributes or {}), name
    kept = [span for span in spans.get_finished_spans() if span.name == "other turn"]
    assert 0 < len(kept) < 200
    rates = [float(str((span.attributes or {}).get(SAMPLE_RATE_ATTRIBUTE, 100.0))) for span in kept]
    assert min(rates) < 100  # the rate fell
    provider.shutdown()


def test_a_callers_sampled_flag_does_not_lift_the_cap(clock: Clock) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    config = TelemetryConfig.from_env({"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": "5"})
    provider = TracerProvider(sampler=build_sampler(config))
    tracer = provider.get_tracer("test")
    clock.now += SECOND_NS
    kept = 0
    ids = random.Random(7)
    for _ in range(300):
        trace_id, span_id = ids.getrandbits(128), ids.getrandbits(64)
        caller = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        with tracer.start_as_current_span("turn", context=trace.set_span_in_context(NonRecordingSpan(caller))) as turn:
            kept += turn.is_recording()
    assert kept < 100
    provider.shutdown()


@pytest.mark.parametrize("sampler", ["traceidratio", "parentbased_traceidratio", "microsoft.fixed_percentage"])
def test_the_replies_of_a_sampled_turn_carry_its_sample_rate(sampler: str) -> None:
    config = TelemetryConfig.from_env({"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=build_sampler(config))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    for _ in range(40):
        with tracer.start_as_current_span("turn", context=Context()):
            tracer.start_span("reply").end()
    finished = spans.get_finished_spans()
    turns = [span for span in finished if span.name == "turn"]
    replies = [span for span in finished if span.name == "reply"]
    assert 0 < len(turns) < 40
    assert len(replies) == len(turns)  # a reply is kept exactly when its turn is
    # Application Insights counts each of them as 100 / 50 = 2 requests or dependencies.
    assert {(span.attributes or {}).get(SAMPLE_RATE_ATTRIBUTE) for span in finished} == {50.0}
    provider.shutdown()
