"""Reconciliation: every turn the load generator sent is counted once by the bot's Prometheus turn counter and
arrives once as a Request envelope at the Application Insights ingestion endpoint.

What is compared, on each of the three sides:
- turns: requests that reached the bot's turn logic. Load generator: POSTs answered with anything but a 4xx.
  Prometheus: the `bot_turns_total` delta. Ingestion: Request envelopes of `POST /api/messages` without a rejection
  reason.
- refused: requests the HTTP layer turned away before a turn (4xx). Load generator: POSTs answered 4xx.
  Prometheus: the `bot_requests_rejected_total` delta. Ingestion: Request envelopes with a rejection reason.
A POST that got no response at all (timeout, connection error) may or may not have reached the bot, so any such
POST makes the reconciliation fail: nothing can be proven about it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from loadtest.rig.exposition import total as exposition_total
from loadtest.rig.ingestion import Envelope, envelope_base_type
from loadtest.turnlog import TurnRecord
from telemetry import catalog

SHOWN_IDS = 10


@dataclass(frozen=True)
class Tally:
    turns: int
    refused: int = 0

    def __sub__(self, other: Tally) -> Tally:
        return Tally(self.turns - other.turns, self.refused - other.refused)


@dataclass(frozen=True)
class Reconciliation:
    sent: Tally
    unanswered: int
    prometheus: Tally | None  # None: not available (a bot this run did not start)
    ingestion: Tally | None
    missing_trace_ids: tuple[str, ...] = ()  # turns sent whose Request envelope never arrived
    unexpected_trace_ids: tuple[str, ...] = ()  # Request envelopes for turns not sent (or arriving twice)
    locust_posts: int | None = None  # Locust's own count of the POSTs, a check on the turn log
    not_synthetic: int = 0  # Request envelopes of the load test not marked synthetic (counted as real users)

    @property
    def recorded(self) -> int:
        return self.sent.turns + self.sent.refused + self.unanswered

    @property
    def checked(self) -> bool:
        return self.prometheus is not None or self.ingestion is not None

    @property
    def problems(self) -> list[str]:
        found = []
        if self.locust_posts is not None and self.locust_posts != self.recorded:
            found.append(f"Locust's statistics count {self.locust_posts} POSTs, the turn log {self.recorded}")
        if self.unanswered:
            found.append(
                f"{self.unanswered} POSTs got no response (timeout or connection error): "
                "whether the bot counted them cannot be known"
            )
        for side, tally in (("Prometheus", self.prometheus), ("ingestion", self.ingestion)):
            if tally is None:
                continue
            if tally.turns != self.sent.turns:
                found.append(_difference("turns", side, tally.turns, self.sent.turns))
            if tally.refused != self.sent.refused:
                found.append(_difference("refused requests", side, tally.refused, self.sent.refused))
        if self.not_synthetic:
            found.append(
                f"{self.not_synthetic} Request envelopes lack ai.operation.syntheticSource: "
                "Application Insights would count the load test as real users"
            )
        if self.missing_trace_ids:
            shown = ", ".join(self.missing_trace_ids[:SHOWN_IDS])
            found.append(f"{len(self.missing_trace_ids)} turns sent have no Request envelope, e.g. {shown}")
        if self.unexpected_trace_ids:
            shown = ", ".join(self.unexpected_trace_ids[:SHOWN_IDS])
            found.append(f"{len(self.unexpected_trace_ids)} Request envelopes match no turn sent, e.g. {shown}")
        return found

    @property
    def ok(self) -> bool:
        return self.checked and not self.problems


def _difference(what: str, side: str, counted: int, sent: int) -> str:
    return f"{what}: {side} counted {counted}, the load generator sent {sent} ({counted - sent:+d})"


@dataclass
class RequestLedger:
    """The ingestion side of the reconciliation: trace ids of Request envelopes for the messaging endpoint.
    `IngestionStandIn(keep=ledger.add)` keeps only this: a long run's envelopes would not fit in memory."""

    turns: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    other_envelopes: int = 0
    not_synthetic: int = 0  # Request envelopes Application Insights would count as real users' traffic

    def add(self, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            data = envelope.get("data") or {}
            base = data.get("baseData") or {}
            if envelope_base_type(envelope) != "RequestData" or base.get("name") != catalog.SPAN_MESSAGES_REQUEST:
                self.other_envelopes += 1
                continue
            tags = envelope.get("tags") or {}
            operation_id = str(tags.get("ai.operation.id", ""))
            if tags.get("ai.operation.syntheticSource") != "True":
                self.not_synthetic += 1
            rejected = (base.get("properties") or {}).get(catalog.REJECTION_REASON)
            (self.refused if rejected else self.turns)[operation_id] += 1

    @property
    def tally(self) -> Tally:
        return Tally(self.turns.total(), self.refused.total())


def sent_tally(records: Iterable[TurnRecord]) -> tuple[Tally, int]:
    """(turns and refused requests as the load generator saw them, POSTs without any response)."""
    records = list(records)
    answered = [r for r in records if r.answered]
    refused = sum(1 for r in answered if r.refused)
    return Tally(len(answered) - refused, refused), len(records) - len(answered)


def prometheus_tally(exposition: str) -> Tally:
    """The bot's cumulative turn and rejection counters, summed over every label set."""
    turns = exposition_total(exposition, catalog.TURNS)
    refused = exposition_total(exposition, catalog.REQUESTS_REJECTED)
    return Tally(round(turns), round(refused))


def reconcile(
    records: Iterable[TurnRecord],
    prometheus: Tally | None = None,
    ledger: RequestLedger | None = None,
    locust_posts: int | None = None,
) -> Reconciliation:
    """Compare the three counts; with a ledger, also which trace ids are missing or extra."""
    records = list(records)
    sent, unanswered = sent_tally(records)
    if ledger is None:
        return Reconciliation(sent, unanswered, prometheus, None, locust_posts=locust_posts)
    expected = Counter(r.trace_id for r in records if r.answered and not r.refused)
    expected_refused = Counter(r.trace_id for r in records if r.refused)
    missing = (expected - ledger.turns) + (expected_refused - ledger.refused)
    unexpected = (ledger.turns - expected) + (ledger.refused - expected_refused)
    return Reconciliation(
        sent,
        unanswered,
        prometheus,
        ledger.tally,
        missing_trace_ids=tuple(sorted(missing.elements())),
        unexpected_trace_ids=tuple(sorted(unexpected.elements())),
        locust_posts=locust_posts,
        not_synthetic=ledger.not_synthetic,
    )
