"""Service level objectives for a run, from a JSON file, and their evaluation against what the run measured.

The file (loadtest/slo.json is the default) holds the objectives for every shape and, under "shapes", overrides
for some of them. `null` switches the latency or error objective off. Throughput is always checked: against
`min_turns_per_second` when it is a number, else against the shape's own target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).with_name("slo.json")


@dataclass(frozen=True)
class Objectives:
    reply_p95_seconds: float | None = 2.0
    error_ratio: float | None = 0.01
    min_turns_per_second: float | None = None  # None: the shape's target


@dataclass(frozen=True)
class Measured:
    turns: int
    failed: int
    duration_s: float
    reply_p95_s: float | None

    @property
    def error_ratio(self) -> float:
        return self.failed / self.turns if self.turns else 0.0

    @property
    def turns_per_second(self) -> float:
        return self.turns / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok_turns_per_second(self) -> float:
        """Throughput as users see it: failed turns do not count."""
        return (self.turns - self.failed) / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(frozen=True)
class Check:
    name: str
    objective: str
    measured: str
    ok: bool


def load_objectives(path: Path, shape: str) -> Objectives:
    """The objectives for `shape`; ValueError naming the problem for a malformed file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the SLO file {path}: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object")
    overrides = document.get("shapes", {})
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: 'shapes' must be an object of shape name -> objectives")
    merged = {key: value for key, value in document.items() if key != "shapes"}
    merged.update(overrides.get(shape) or {})
    return _objectives(merged, path)


def _objectives(values: dict[str, Any], path: Path) -> Objectives:
    known = {f.name for f in fields(Objectives)}
    unknown = sorted(set(values) - known - {"description"})
    if unknown:
        raise ValueError(f"{path}: unknown objective(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for name in known & set(values):
        value = values[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ValueError(f"{path}: {name} must be a non-negative number or null, got {value!r}")
    return Objectives(**{name: values[name] for name in known & set(values)})


def evaluate(objectives: Objectives, measured: Measured, target_turns_per_second: float) -> list[Check]:
    """One check per objective that is switched on. A run without any turn fails every check."""
    checks = []
    if objectives.reply_p95_seconds is not None:
        p95 = measured.reply_p95_s
        checks.append(
            Check(
                "reply latency p95",
                f"< {objectives.reply_p95_seconds:g} s",
                "no replies" if p95 is None else f"{p95:.3f} s",
                p95 is not None and p95 < objectives.reply_p95_seconds,
            )
        )
    if objectives.error_ratio is not None:
        checks.append(
            Check(
                "error ratio",
                f"< {objectives.error_ratio:.2%}",
                f"{measured.error_ratio:.2%} ({measured.failed} of {measured.turns} turns)",
                measured.turns > 0 and measured.error_ratio < objectives.error_ratio,
            )
        )
    minimum = (
        objectives.min_turns_per_second if objectives.min_turns_per_second is not None else target_turns_per_second
    )
    checks.append(
        Check(
            "throughput",
            f">= {minimum:g} turns/s",
            f"{measured.ok_turns_per_second:.1f} ok turns/s",
            measured.turns > measured.failed and measured.ok_turns_per_second >= minimum,
        )
    )
    return checks
