"""An Application Insights envelope as a plain dict, which the SDK's transmission and offline storage accept as their
own TelemetryItem; and the comparison of ours with the SDK's that the tests and the start-up self-check use."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from enum import Enum
from typing import Any

from azure.monitor.opentelemetry.exporter._constants import _METRIC_ENVELOPE_NAME

from telemetry import catalog

_UTC = datetime.UTC
EXTRACTED_METRICS_MARKER = "_MS.ProcessedByMetricExtractors"


class _DataView:
    """`envelope.data.base_type` / `.base_data.success`, as the SDK's customer statistics read a TelemetryItem."""

    __slots__ = ("base_data", "base_type")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.base_type = data.get("baseType")
        self.base_data = _BaseDataView(data.get("baseData") or {})


class _BaseDataView:
    __slots__ = ("success",)

    def __init__(self, base_data: Mapping[str, Any]) -> None:
        self.success = base_data.get("success")


class Envelope(dict[str, Any]):
    """One telemetry item as the JSON ingestion receives. The SDK's transmission code handles it like its own
    TelemetryItem: `as_dict()` when it writes batches to offline storage, `.data` for its statistics."""

    __slots__ = ()

    def as_dict(self, *, exclude_readonly: bool = False) -> dict[str, Any]:
        return self

    @property
    def data(self) -> _DataView | None:
        data = self.get("data")
        return _DataView(data) if isinstance(data, Mapping) else None


# Where these exporters deliberately differ from the SDK's envelopes (module docstring), as flattened keys of
# `comparable_with_sdk`: correlation they add as tags, the marker, and correlation attributes not sent as dimensions.
ENRICHED_KEYS = frozenset(
    {
        "tags.ai.operation.name",
        "tags.ai.user.id",
        "tags.ai.session.id",
        "sampleRate",
        f"data.baseData.properties.{EXTRACTED_METRICS_MARKER}",
        f"data.baseData.properties.{catalog.OPERATION_NAME}",
        f"data.baseData.properties.{catalog.SAMPLE_RATE}",
    }
)


def comparable_with_sdk(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """An envelope as flattened `a.b.c` keys, without what these exporters deliberately add (ENRICHED_KEYS) and
    without the time of the resource envelope (taken when a batch is sent): equal for the SDK's and ours."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):  # an empty mapping and a missing one read the same
            for key, item in value.items():
                name = plain_key(key)
                walk(f"{prefix}.{name}" if prefix else str(name), item)
        elif prefix not in ENRICHED_KEYS:
            flat[prefix] = value

    walk("", envelope)
    if flat.get("name") == _METRIC_ENVELOPE_NAME:
        flat.pop("time", None)
    return flat


def sdk_envelope(item: Any) -> Envelope:
    """A TelemetryItem made by the SDK's own conversion, as the dict its client would send."""
    return Envelope(item.as_dict(exclude_readonly=True))


def iso_time(timestamp_ns: int) -> str:
    # The SDK's arithmetic (float seconds, then datetime), so the microseconds round the same way.
    moment = datetime.datetime.fromtimestamp(timestamp_ns / 1e9, tz=_UTC)
    return moment.isoformat().replace("+00:00", "Z")


def new_envelope(
    instrumentation_key: Any, name: str, timestamp: int, tags: dict[str, Any], base_data: dict[str, Any], base_type: str
) -> Envelope:
    return Envelope(
        name=name,
        iKey=instrumentation_key,
        tags=tags,
        time=iso_time(timestamp),
        data={"baseData": base_data, "baseType": base_type},
    )


def plain_key(key: Any) -> Any:
    return key.value if isinstance(key, Enum) else key
