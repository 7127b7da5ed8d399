"""What the Application Insights views show, computed from the envelopes the ingestion endpoint received, by
Microsoft's documented semantics (see tests/test_azure_views.py for the sources)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.ingestion import Envelope

MARKER = "_MS.ProcessedByMetricExtractors"


def _item_count(envelope: Envelope) -> float:
    return 100.0 / float(envelope.get("sampleRate") or 100.0)


def duration_ms(text: str) -> float:
    """Application Insights' `d.hh:mm:ss.ffffff` duration in milliseconds."""
    days, clock = text.split(".", 1)
    hours, minutes, seconds = clock.split(":")
    return ((int(days) * 24 + int(hours)) * 60 + int(minutes)) * 60_000 + float(seconds) * 1000


@dataclass
class AzureViews:
    server_requests: float = 0.0
    failed_requests: float = 0.0
    response_time_total_ms: float = 0.0
    dependency_calls: float = 0.0
    exceptions: float = 0.0
    events: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    users: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    event_tags: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def server_response_time_ms(self) -> float:
        return self.response_time_total_ms / self.server_requests

    @classmethod
    def of(cls, envelopes: Iterable[Envelope]) -> AzureViews:
        views = cls()
        for envelope in envelopes:
            data = envelope["data"]
            base, kind = data["baseData"], data["baseType"]
            properties = base.get("properties") or {}
            if kind == "MetricData" and properties.get("_MS.MetricId") == "requests/duration":
                (metric,) = base["metrics"]
                views.server_requests += metric["count"]
                views.response_time_total_ms += metric["value"]
                if properties.get("Request.Success") == "False":
                    views.failed_requests += metric["count"]
            elif kind == "RequestData" and MARKER not in properties:  # extracted by ingestion from the item
                views.server_requests += _item_count(envelope)
                views.response_time_total_ms += duration_ms(base["duration"]) * _item_count(envelope)
                if not base["success"]:
                    views.failed_requests += _item_count(envelope)
            elif kind == "RemoteDependencyData" and MARKER not in properties:
                views.dependency_calls += _item_count(envelope)
            elif kind == "ExceptionData":
                views.exceptions += _item_count(envelope)
            elif kind == "EventData":
                views.events[base["name"]] += _item_count(envelope)
                tags = envelope["tags"]
                views.event_tags.append(tags)
                if tags.get("ai.user.id"):
                    views.users.add(tags["ai.user.id"])
                if tags.get("ai.session.id"):
                    views.sessions.add(tags["ai.session.id"])
        return views
