"""The verdict of a run, as text for people (printed, summary.txt) and JSON for machines (verdict.json)."""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.reconcile import Reconciliation
from loadtest.shapes import Shape
from loadtest.slo import Check
from loadtest.turnlog import TurnRecord, TurnSummary, percentile
from telemetry import catalog

KQL_TURN = 'union requests, dependencies, traces, exceptions | where operation_Id == "<trace id>"'


@dataclass(frozen=True)
class Knee:
    users: int
    turns_per_second: float
    p95_s: float | None
    reason: str


@dataclass
class Verdict:
    shape: str
    transport: str
    target: str
    started: float
    duration_s: float
    peak_users: int
    turns: TurnSummary
    turns_per_second: float
    checks: list[Check]
    reconciliation: Reconciliation
    slowest: list[TurnRecord]
    knee: Knee | None = None
    notes: tuple[str, ...] = ()
    completed: bool = True  # False: the run was stopped at its hard time limit

    @property
    def passed(self) -> bool:
        reconciled = self.reconciliation.ok or not self.reconciliation.checked
        return self.completed and reconciled and all(check.ok for check in self.checks)


@dataclass(frozen=True)
class Level:
    users: int
    turns_per_second: float
    p95_s: float | None


def shape_levels(records: list[TurnRecord], shape: Shape, started: float, settle_s: float = 3.0) -> list[Level]:
    """Throughput and reply p95 at each stage of the shape, from the turns started while it held (after the users
    had `settle_s` to get going)."""
    levels, begin = [], 0.0
    for stage in shape.stages:
        low, high = begin + settle_s, stage.until
        begin = stage.until
        held = [r for r in records if low <= r.started - started < high]
        if high > low and held:
            replies = [r.reply_ms / 1000 for r in held if r.reply_ms is not None]
            levels.append(Level(stage.users, len(held) / (high - low), percentile(replies, 0.95)))
    return levels


def find_knee(levels: list[Level], p95_objective_s: float | None) -> Knee | None:
    """The fewest users from which more users add no throughput: a level within 10 % of the plateau (the median of
    the better half of the levels) after which the median level adds less than 10 %. Medians keep one bursty level
    from moving the knee. None when throughput still grows at the end of the ramp."""
    points = sorted(levels, key=lambda level: level.users)
    rates = [level.turns_per_second for level in points]
    plateau = statistics.median(sorted(rates)[len(rates) // 2 :]) if rates else 0.0
    for index, level in enumerate(points):
        later = rates[index + 1 :]
        near_plateau = level.turns_per_second >= 0.9 * plateau
        if len(later) >= 2 and near_plateau and statistics.median(later) <= 1.1 * level.turns_per_second:
            reason = f"more users add no throughput (plateau {plateau:.1f} turns/s)"
            over = next((p for p in points if p95_objective_s and (p.p95_s or 0) >= p95_objective_s), None)
            if over is not None:
                reason += f"; reply p95 first reached {p95_objective_s:g} s at {over.users} users"
            return Knee(level.users, level.turns_per_second, level.p95_s, reason)
    return None


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def render(verdict: Verdict, files: list[str]) -> str:
    t = verdict.turns
    lines = [
        f"otel-chatbot load test: shape {verdict.shape}, transport {verdict.transport}, target {verdict.target}",
        f"  {verdict.duration_s:.1f} s, peak {verdict.peak_users} users",
        f"  turns: {t.turns} sent, {t.turns - t.failed} ok, {t.failed} failed; {verdict.turns_per_second:.1f} turns/s",
        f"  reply latency: p50 {_seconds(t.reply_p50_s)}, p95 {_seconds(t.reply_p95_s)}, p99 {_seconds(t.reply_p99_s)}",
        "",
        "Service level objectives:",
        *(f"  {'PASS' if c.ok else 'FAIL'}  {c.name:<18} {c.objective:<16} {c.measured}" for c in verdict.checks),
        "",
        *_reconciliation_lines(verdict.reconciliation),
        "",
        f"Slowest turns (Application Insights: {KQL_TURN}):",
        *(
            f"  {_seconds(_waited(r))}  {r.trace_id}  {r.name}  HTTP {r.status or '-'}  {r.error}".rstrip()
            for r in verdict.slowest
        ),
    ]
    if verdict.knee is not None:
        k = verdict.knee
        lines += [
            "",
            f"Knee: ~{k.users} users, {k.turns_per_second:.1f} turns/s, p95 {_seconds(k.p95_s)}: {k.reason}",
        ]
    elif verdict.shape == "ramp":
        lines += ["", "Knee: not reached; throughput still grew with users at the ramp's peak (raise --users)"]
    if not verdict.completed:
        lines += ["", "The run did not finish within its time limit and was stopped."]
    lines += [*(f"Note: {note}" for note in verdict.notes), "", f"Files: {', '.join(files)}"]
    lines.append(f"VERDICT: {'PASS' if verdict.passed else 'FAIL'}")
    return "\n".join(lines) + "\n"


def _waited(record: TurnRecord) -> float | None:
    waited = record.reply_ms if record.reply_ms is not None else record.post_ms
    return None if waited is None else waited / 1000


def _reconciliation_lines(r: Reconciliation) -> list[str]:
    sides = [
        ("load generator", r.sent, f"POSTs answered; {r.unanswered} without any response"),
        ("Prometheus", r.prometheus, f"{catalog.TURNS.prometheus_name} / {catalog.REQUESTS_REJECTED.prometheus_name}"),
        ("ingestion", r.ingestion, f"RequestData '{catalog.SPAN_MESSAGES_REQUEST}' envelopes"),
    ]
    lines = ["Reconciliation (turns / refused requests):"]
    for name, tally, source in sides:
        shown = "not available" if tally is None else f"{tally.turns:>7} / {tally.refused:<4}"
        lines.append(f"  {name:<15} {shown}  ({source})")
    if not r.checked:
        lines.append(
            "  SKIPPED: no access to the bot's counters or its Application Insights (see docs/load-testing.md)"
        )
    elif r.ok:
        lines.append("  PASS: every turn sent was counted once by the bot and arrived once at the ingestion endpoint")
    else:
        lines += [f"  FAIL: {problem}" for problem in r.problems]
    return lines


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    r = verdict.reconciliation
    return {
        "passed": verdict.passed,
        "shape": verdict.shape,
        "transport": verdict.transport,
        "target": verdict.target,
        "started": datetime.fromtimestamp(verdict.started, UTC).isoformat(),
        "duration_s": round(verdict.duration_s, 3),
        "peak_users": verdict.peak_users,
        "completed": verdict.completed,
        "turns": dataclasses.asdict(verdict.turns),
        "turns_per_second": round(verdict.turns_per_second, 3),
        "slo": [dataclasses.asdict(check) for check in verdict.checks],
        "reconciliation": {
            "passed": r.ok,
            "checked": r.checked,
            "sent": dataclasses.asdict(r.sent),
            "unanswered": r.unanswered,
            "prometheus": None if r.prometheus is None else dataclasses.asdict(r.prometheus),
            "ingestion": None if r.ingestion is None else dataclasses.asdict(r.ingestion),
            "problems": r.problems,
            "missing_trace_ids": list(r.missing_trace_ids),
            "unexpected_trace_ids": list(r.unexpected_trace_ids),
            "not_synthetic": r.not_synthetic,
        },
        "slowest_turns": [
            {"trace_id": t.trace_id, "name": t.name, "seconds": _waited(t), "status": t.status, "error": t.error}
            for t in verdict.slowest
        ],
        "knee": None if verdict.knee is None else dataclasses.asdict(verdict.knee),
        "notes": list(verdict.notes),
    }


def write(verdict: Verdict, out_dir: Path, files: list[str]) -> str:
    text = render(verdict, files)
    (out_dir / "summary.txt").write_text(text, encoding="utf-8")
    (out_dir / "verdict.json").write_text(json.dumps(verdict_json(verdict), indent=2) + "\n", encoding="utf-8")
    return text
