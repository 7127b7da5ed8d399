"""Which turns are traced: the sampler named by OTEL_TRACES_SAMPLER, wrapped so a turn's spans share one decision
and carry the sampling percentage Application Insights scales its counts by."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from telemetry import catalog
from telemetry.config import FIXED_PERCENTAGE_SAMPLER, RATE_LIMITED_SAMPLER, TelemetryConfig

SAMPLE_RATE_ATTRIBUTE = catalog.SAMPLE_RATE


class SampleRateRecordingSampler(Sampler):
    """Another sampler's decisions, with the sampling percentage recorded where Application Insights reads it
    (`_MS.sampleRate`), so that its counts of requests and dependencies are scaled back to all turns."""

    def __init__(self, inner: Sampler, percentage: float) -> None:
        self._inner = inner
        self._percentage = percentage

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if not result.decision.is_sampled() or self._percentage >= 100.0:
            return result
        recorded = dict(result.attributes or {})
        recorded[SAMPLE_RATE_ATTRIBUTE] = self._percentage
        return SamplingResult(result.decision, recorded, result.trace_state)

    def get_description(self) -> str:
        return f"SampleRateRecording{{{self._inner.get_description()}}}"


class WholeTurnSampler(Sampler):
    """Spans inside a turn (its replies) share the turn's decision and sample rate; a turn itself (no parent, or a
    caller's traceparent) is decided by `turns`.

    Without it, the rate-limited sampler decides a child again when its parent was kept at 100 % (no sample rate on
    it), so once the rate drops a kept turn could lose its reply spans; and `ParentBased` keeps the children of a
    kept turn without its sample rate, so Application Insights would count their dependencies unscaled."""

    def __init__(self, turns: Sampler) -> None:
        self._turns = turns

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context)
        context = parent.get_span_context()
        if not context.is_valid or context.is_remote:
            return self._turns.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        inherited = dict(attributes or {})
        rate = (getattr(parent, "attributes", None) or {}).get(SAMPLE_RATE_ATTRIBUTE)
        if rate is not None:
            inherited[SAMPLE_RATE_ATTRIBUTE] = rate
        decision = Decision.RECORD_AND_SAMPLE if parent.is_recording() else Decision.DROP
        return SamplingResult(decision, inherited, context.trace_state)

    def get_description(self) -> str:
        return f"WholeTurn{{{self._turns.get_description()}}}"


def build_sampler(config: TelemetryConfig) -> Sampler:
    from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler, RateLimitedSampler

    turns: Sampler
    base = config.sampler.removeprefix("parentbased_")
    if config.sampler == RATE_LIMITED_SAMPLER:
        # As many traces per second as the argument, whatever the load; it records the share it keeps on each span.
        # It ignores a caller's sampled flag, so no caller can lift the cap.
        turns = RateLimitedSampler(config.sampler_ratio)
    elif config.sampler == FIXED_PERCENTAGE_SAMPLER:
        turns = ApplicationInsightsSampler(config.sampler_ratio)
    elif base == "always_on":
        turns = ALWAYS_ON
    elif base == "always_off":
        turns = ALWAYS_OFF
    else:
        turns = SampleRateRecordingSampler(TraceIdRatioBased(config.sampler_ratio), config.sampler_ratio * 100)
    if config.sampler.startswith("parentbased_"):
        turns = ParentBased(turns)  # a caller's traceparent decides
    return WholeTurnSampler(turns)
