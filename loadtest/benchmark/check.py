"""What otel-chatbot said about itself after its runs, checked against what the load generator sent: exact counts on
/metrics, one Request envelope per turn at the ingestion stand-in, one role instance per process — no silent loss."""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtest.rig import exposition
from loadtest.rig.ingestion import EnvelopeCounts
from telemetry import catalog


@dataclass
class TargetCheck:
    """What the target said about itself after its runs (otel-chatbot only): exact counts, no silent loss."""

    target: str
    workers: int | None
    requests_sent: int
    in_flight_allowance: int
    prometheus_turns: float | None = None
    prometheus_series_per_worker: dict[str, int] = field(default_factory=dict)
    request_envelopes: int | None = None
    envelopes_by_type: dict[str, int] = field(default_factory=dict)
    role_instances: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportMark:
    """The ingestion stand-in's counts before a target's runs, so that only its own envelopes are checked."""

    by_type: dict[str, int]
    turn_requests: int
    role_instances: list[str]

    @classmethod
    def of(cls, counts: EnvelopeCounts) -> ExportMark:
        return cls(*counts.snapshot())


def check_metrics(check: TargetCheck, text: str) -> None:
    """The scraped /metrics: no series twice, and the turn counter within what was sent and what may have been in
    flight when the load stopped."""
    check.problems.extend(f"duplicate series in /metrics: {series}" for series in exposition.duplicate_series(text))
    samples = exposition.samples(text, catalog.TURNS)
    per_worker: dict[str, int] = {}
    for labels, _ in samples:
        worker = labels.get("worker", "-")
        per_worker[worker] = per_worker.get(worker, 0) + 1
    turns = sum(value for _, value in samples)
    check.prometheus_turns = turns
    check.prometheus_series_per_worker = per_worker
    low, high = check.requests_sent, check.requests_sent + check.in_flight_allowance
    if not low <= turns <= high:
        check.problems.append(
            f"Prometheus counted {turns:.0f} turns; the load generator completed {low} "
            f"(up to {check.in_flight_allowance} more may have been in flight when it stopped)"
        )


def check_export(check: TargetCheck, counts: EnvelopeCounts, before: ExportMark) -> None:
    """The envelopes that arrived since `before`: a Request per turn (unless sampled), one role instance a process."""
    by_type, requests, instances = counts.snapshot()
    check.request_envelopes = requests - before.turn_requests
    check.envelopes_by_type = {kind: by_type[kind] - before.by_type.get(kind, 0) for kind in by_type}
    check.role_instances = sorted(set(instances) - set(before.role_instances))
    expected = check.workers or 1
    if len(check.role_instances) != expected:
        check.problems.append(f"{len(check.role_instances)} Application Insights role instances, expected {expected}")
    sampled = check.target.startswith("ours-sampled")
    if not sampled and check.prometheus_turns is not None and check.request_envelopes < check.prometheus_turns:
        lost = check.prometheus_turns - check.request_envelopes
        check.problems.append(
            f"{lost:.0f} of {check.prometheus_turns:.0f} turns have no Request envelope: spans were dropped "
            "(100 % sampling), and nothing counted it"
        )
