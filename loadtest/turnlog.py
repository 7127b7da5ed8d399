"""The load generator's own record of every turn it sent: one CSV row per POST to /api/messages.

Locust's statistics are rounded and written late; this log is exact. It is the load generator's side of the
reconciliation, the source of the latency figures in the verdict, and where the slowest turns' trace ids come from.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

FIELDS = ("started", "name", "trace_id", "status", "post_ms", "reply_ms", "ok", "error")
NO_RESPONSE = 0  # status of a turn that got no HTTP response (connection error, timeout, abandoned)


@dataclass
class TurnRecord:
    started: float  # unix time the POST was sent
    name: str
    trace_id: str
    status: int = NO_RESPONSE
    post_ms: float | None = None  # until the HTTP response
    reply_ms: float | None = None  # until the bot's reply arrived (in the response body for expectReplies)
    ok: bool = False
    error: str = ""

    @property
    def answered(self) -> bool:
        return self.status != NO_RESPONSE

    @property
    def refused(self) -> bool:
        """Answered 4xx: the bot's HTTP layer turned the request away before any turn ran."""
        return 400 <= self.status < 500

    def row(self) -> list[str]:
        return [
            f"{self.started:.6f}",
            self.name,
            self.trace_id,
            str(self.status),
            _number(self.post_ms),
            _number(self.reply_ms),
            "1" if self.ok else "0",
            self.error,
        ]

    @classmethod
    def from_row(cls, row: dict[str, str]) -> TurnRecord:
        return cls(
            started=float(row["started"]),
            name=row["name"],
            trace_id=row["trace_id"],
            status=int(row["status"]),
            post_ms=float(row["post_ms"]) if row["post_ms"] else None,
            reply_ms=float(row["reply_ms"]) if row["reply_ms"] else None,
            ok=row["ok"] == "1",
            error=row["error"],
        )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


class TurnWriter:
    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        self._csv.writerow(FIELDS)

    def write(self, record: TurnRecord) -> None:
        self._csv.writerow(record.row())

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_turns(path: Path) -> list[TurnRecord]:
    with path.open(newline="", encoding="utf-8") as file:
        return [TurnRecord.from_row(row) for row in csv.DictReader(file)]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least `fraction` of all values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class TurnSummary:
    turns: int  # POSTs sent, whatever happened to them
    answered: int
    refused: int
    failed: int
    reply_p50_s: float | None
    reply_p95_s: float | None
    reply_p99_s: float | None

    @property
    def unanswered(self) -> int:
        return self.turns - self.answered


def summarize(records: Iterable[TurnRecord]) -> TurnSummary:
    records = list(records)
    replies = [r.reply_ms / 1000 for r in records if r.reply_ms is not None]
    return TurnSummary(
        turns=len(records),
        answered=sum(1 for r in records if r.answered),
        refused=sum(1 for r in records if r.refused),
        failed=sum(1 for r in records if not r.ok),
        reply_p50_s=percentile(replies, 0.50),
        reply_p95_s=percentile(replies, 0.95),
        reply_p99_s=percentile(replies, 0.99),
    )


def slowest(records: Iterable[TurnRecord], count: int = 10) -> list[TurnRecord]:
    """The turns whose user waited longest: for the reply, or for the HTTP response when no reply came."""

    def waited(record: TurnRecord) -> float:
        return record.reply_ms if record.reply_ms is not None else record.post_ms or 0.0

    return sorted(records, key=waited, reverse=True)[:count]
