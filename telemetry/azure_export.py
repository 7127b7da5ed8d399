"""Azure Monitor exporters that build Application Insights envelopes as plain dicts.

The SDK's exporters convert every span and log record into the generated `model_base` models of their client:
160-320 µs of CPU per envelope, most of an export's 200-600 µs, in an export thread that holds the GIL the bot's
event loop needs. These subclasses replace only that conversion: each envelope is a dict holding the JSON the SDK
would send, which the SDK's client serialises with the C-accelerated `json.dumps` (30-90 µs per envelope in all).
Everything else is the SDK's own code, unchanged: constructor keywords, `_transmit` (the HTTP pipeline, Entra
credential, redirects, status handling, resending the rejected part of a 206), offline storage (per-signal
directories, `storage_min_retry_interval`, draining files a stopped process left behind), rate limiting, statsbeat.

Where Application Insights' views need more than the SDK sends, these exporters add it (docs/telemetry.md,
"Where the envelopes differ from the SDK's"): every item of a traced turn carries the turn's `ai.operation.name`,
user and session (telemetry/correlation.py puts them on the spans and records); custom events and the turn's log
lines carry its `sampleRate`; request items are marked as counted by the bot's own pre-aggregated `requests/duration`
(`_MS.ProcessedByMetricExtractors`, see telemetry/azure_metrics.py) so that ingestion does not count them again; and
a request without a matched route is named by its method alone, never by its raw path.

Spans and records with shapes the bot does not produce (messaging, database, RPC, Azure SDK and GenAI spans,
PRODUCER and CONSUMER spans, links, availability records) go through the SDK's conversion, so the envelopes are the
SDK's in every case; `tests/test_azure_export.py` compares both on what ingestion receives.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter import _utils as sdk_utils
from azure.monitor.opentelemetry.exporter._constants import (
    _APPLICATION_ID_RESOURCE_KEY,
    _APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE,
    _AZURE_SDK_NAMESPACE_NAME,
    _DEFAULT_LOG_MESSAGE,
    _EXCEPTION_ENVELOPE_NAME,
    _EXPORTER_DOMAIN_SCHEMA_VERSION,
    _GEN_AI_ATTRIBUTES,
    _INSTRUMENTATION_SUPPORTING_METRICS_LIST,
    _MESSAGE_ENVELOPE_NAME,
    _METRIC_ENVELOPE_NAME,
    _MICROSOFT_AVAILABILITY_NAME,
    _MICROSOFT_CUSTOM_EVENT_NAME,
    _MICROSOFT_CUSTOM_MEASUREMENTS,
    _REMOTE_DEPENDENCY_ENVELOPE_NAME,
    _REQUEST_ENVELOPE_NAME,
    _SAMPLE_RATE_KEY,
)
from azure.monitor.opentelemetry.exporter.export.logs import _exporter as sdk_logs
from azure.monitor.opentelemetry.exporter.export.trace import _exporter as sdk_trace
from azure.monitor.opentelemetry.exporter.export.trace import _utils as sdk_trace_utils
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from telemetry import catalog
from telemetry.privacy import plain_attributes, span_attributes

__all__ = [
    "Envelope",
    "FastAzureMonitorLogExporter",
    "FastAzureMonitorTraceExporter",
]

_UTC = datetime.UTC
_PROPERTY_MAX = 8 * 1024
_GEN_AI_PROPERTY_MAX = 256 * 1024
_GEN_AI_SYSTEM = "gen_ai.system"
_EVENT_ENVELOPE_NAME = "Microsoft.ApplicationInsights.Event"

# Span attributes that select a branch of the SDK's conversion this module does not reimplement.
_SDK_SPAN_ATTRIBUTES = frozenset(
    {
        _AZURE_SDK_NAMESPACE_NAME,
        _GEN_AI_SYSTEM,
        "messaging.system",
        "db.system",
        "db.system.name",
        "rpc.system",
    }
)
_FAST_KINDS = (SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL)
# Correlation carried in attributes and sent as tags or sampleRate, never as custom dimensions.
_CORRELATION_ATTRIBUTES = frozenset({catalog.OPERATION_NAME, catalog.SAMPLE_RATE})
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
                name = _plain_key(key)
                walk(f"{prefix}.{name}" if prefix else str(name), item)
        elif prefix not in ENRICHED_KEYS:
            flat[prefix] = value

    walk("", envelope)
    if flat.get("name") == _METRIC_ENVELOPE_NAME:
        flat.pop("time", None)
    return flat


def _sdk_envelope(item: Any) -> Envelope:
    """A TelemetryItem made by the SDK's own conversion, as the dict its client would send."""
    return Envelope(item.as_dict(exclude_readonly=True))


def _iso_time(timestamp_ns: int) -> str:
    # The SDK's arithmetic (float seconds, then datetime), so the microseconds round the same way.
    moment = datetime.datetime.fromtimestamp(timestamp_ns / 1e9, tz=_UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _envelope(
    instrumentation_key: Any, name: str, timestamp: int, tags: dict[str, Any], base_data: dict[str, Any], base_type: str
) -> Envelope:
    return Envelope(
        name=name,
        iKey=instrumentation_key,
        tags=tags,
        time=_iso_time(timestamp),
        data={"baseData": base_data, "baseType": base_type},
    )


def _plain_key(key: Any) -> Any:
    return key.value if isinstance(key, Enum) else key


class _ResourceTags:
    """Tags every envelope of one resource starts with (SDK context, then cloud role and instance), built once."""

    def __init__(self) -> None:
        self._resource: Resource | None = None
        self._tags: dict[str, Any] = {}

    def __call__(self, resource: Resource | None) -> dict[str, Any]:
        if resource is not self._resource or not self._tags:
            tags = {_plain_key(key): value for key, value in sdk_utils.azure_monitor_context.items()}
            part_a = sdk_utils._populate_part_a_fields(resource) if resource is not None else {}
            tags.update((_plain_key(key), value) for key, value in part_a.items())
            self._resource, self._tags = resource, tags
        return self._tags


class _Properties:
    """Custom dimensions as the SDK's `_filter_custom_properties` makes them: string values, cut at 8 KiB (256 KiB
    for GenAI content), keys up to 150 characters, `excluded` keys left out. What to do with a key is learnt
    once: attribute keys repeat, and the SDK's test of a key is a scan of prefixes."""

    def __init__(self, excluded: Callable[[str], bool]) -> None:
        self._excluded = excluded
        self._limits: dict[str, int] = {}  # 0: not a custom dimension

    def __call__(self, attributes: Mapping[str, Any]) -> dict[str, str]:
        properties: dict[str, str] = {}
        limits = self._limits
        for key, value in attributes.items():
            limit = limits.get(key)
            if limit is None:
                limit = self._learn(key)
            if limit and value is not None:
                properties[key] = value[:limit] if type(value) is str else str(value)[:limit]
        return properties

    def _learn(self, key: str) -> int:
        if len(self._limits) >= 4096:  # attribute keys are few; bounded all the same
            self._limits.clear()
        if self._excluded(key) or not key or len(key) > 150:
            limit = 0
        else:
            limit = _GEN_AI_PROPERTY_MAX if key in _GEN_AI_ATTRIBUTES else _PROPERTY_MAX
        self._limits[key] = limit
        return limit


def _measurements(attributes: Mapping[str, Any] | None) -> dict[str, float]:
    if not attributes or _MICROSOFT_CUSTOM_MEASUREMENTS not in attributes:
        return {}
    return sdk_utils._filter_custom_measurements(attributes)


def _status_code(attributes: Mapping[str, Any]) -> int:
    code = attributes.get("http.response.status_code") or attributes.get("http.status_code")
    if not code:
        return 0
    try:
        return int(code)
    except ValueError:
        return 0


def _user_tags(tags: dict[str, Any], attributes: Mapping[str, Any] | None) -> None:
    if attributes:
        if "enduser.id" in attributes:
            tags["ai.user.authUserId"] = attributes["enduser.id"]
        if "enduser.pseudo.id" in attributes:
            tags["ai.user.id"] = attributes["enduser.pseudo.id"]


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _request_url(attributes: Mapping[str, Any]) -> str | None:
    """The request's URL from the current conventions' parts, an IPv6 host in brackets and a default port left out
    (the SDK writes `https://2001:db8::1:8443/...`); None when a part is missing (the SDK's rules then apply)."""
    scheme, host, path = attributes.get("url.scheme"), attributes.get("server.address"), attributes.get("url.path")
    if not (scheme and host and path) or "url.full" in attributes:
        return None
    authority = f"[{host}]" if ":" in str(host) else str(host)
    port = attributes.get("server.port")
    if port and port != _DEFAULT_PORTS.get(str(scheme)):
        authority = f"{authority}:{port}"
    query = attributes.get("url.query")
    return f"{scheme}://{authority}{path}" + (f"?{query}" if query else "")


def _excluding_correlation(excluded: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda key: key in _CORRELATION_ATTRIBUTES or excluded(key)


class FastAzureMonitorTraceExporter(AzureMonitorTraceExporter):
    """`AzureMonitorTraceExporter` (same keywords, same transmission and storage) with dict envelopes."""

    def __init__(self, *, requests_metric_preaggregated: bool = True, **kwargs: Any) -> None:
        """`requests_metric_preaggregated`: the bot sends `requests/duration` itself, so request items are marked
        for ingestion not to extract it again."""
        super().__init__(**kwargs)
        self._resource_tags = _ResourceTags()
        self._properties = _Properties(_excluding_correlation(sdk_trace._is_standard_attribute))
        self._mark_requests = requests_metric_preaggregated

    def _span_to_envelope(self, span: ReadableSpan) -> Envelope:  # type: ignore[override]
        attributes = span_attributes(span)
        if span.kind not in _FAST_KINDS or span.links or not _SDK_SPAN_ATTRIBUTES.isdisjoint(attributes):
            return _sdk_envelope(super()._span_to_envelope(span))
        sdk_trace._check_instrumentation_span(span)  # the SDK's statistics of instrumentations in use
        return self._convert_span(span, attributes)

    def _span_events_to_envelopes(self, span: ReadableSpan) -> list[Envelope]:  # type: ignore[override]
        if not span.events:
            return []
        attributes = span_attributes(span)
        base = self._resource_tags(span.resource)
        operation_id = f"{span.context.trace_id:032x}"
        operation_name = attributes.get(catalog.OPERATION_NAME) or span.name
        span_session = attributes.get("session.id")
        envelopes: list[Envelope] = []
        for event in span.events:
            event_attributes = plain_attributes(event.attributes)
            tags = dict(base)
            tags["ai.operation.id"] = operation_id
            tags["ai.operation.name"] = operation_name
            _user_tags(tags, attributes)
            session = event_attributes.get("session.id")
            if not isinstance(session, str):
                session = span_session
            if isinstance(session, str):
                tags["ai.session.id"] = session
            if span.context.span_id:
                tags["ai.operation.parentId"] = f"{span.context.span_id:016x}"
            properties = self._properties(event_attributes)
            measurements = _measurements(event_attributes)
            if event.name == "exception":
                stack = event_attributes.get("exception.stacktrace")
                base_data: dict[str, Any] = {
                    "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
                    "properties": properties,
                    "measurements": measurements,
                    "exceptions": [
                        {
                            "typeName": str(event_attributes.get("exception.type") or "Exception")[:1024],
                            "message": str(event_attributes.get("exception.message") or "Exception")[:32768],
                            "hasFullStack": stack is not None,
                            "stack": str(stack)[:32768],
                        }
                    ],
                }
                name, base_type = _EXCEPTION_ENVELOPE_NAME, "ExceptionData"
            else:
                base_data = {
                    "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
                    "message": str(event.name)[:32768],
                    "properties": properties,
                    "measurements": measurements,
                }
                name, base_type = _MESSAGE_ENVELOPE_NAME, "MessageData"
            envelope = _envelope(self._instrumentation_key, name, event.timestamp, tags, base_data, base_type)
            if _SAMPLE_RATE_KEY in attributes:
                envelope["sampleRate"] = attributes[_SAMPLE_RATE_KEY]
            envelopes.append(envelope)
        return envelopes

    def _get_otel_resource_envelope(  # type: ignore[override]
        self, resource: Resource, application_id: str | None
    ) -> Envelope:
        properties: dict[str, str] = {}
        if resource:
            properties = sdk_utils._filter_custom_properties(dict(resource.attributes))
        if application_id and properties.get(_APPLICATION_ID_RESOURCE_KEY) is None:
            properties[_APPLICATION_ID_RESOURCE_KEY] = application_id
        base_data = {
            "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
            "metrics": [{"name": "_OTELRESOURCE_", "value": 0}],
            "properties": properties,
        }
        tags = dict(self._resource_tags(resource))
        key = self._instrumentation_key
        return _envelope(key, _METRIC_ENVELOPE_NAME, time.time_ns(), tags, base_data, "MetricData")

    def _convert_span(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> Envelope:
        """`_convert_span_to_envelope` of the SDK for SERVER, CLIENT and INTERNAL spans without the attributes
        listed in _SDK_SPAN_ATTRIBUTES."""
        start = span.start_time or 0
        duration = span.end_time - start if span.start_time and span.end_time else 0
        tags = dict(self._resource_tags(span.resource))
        tags["ai.operation.id"] = f"{span.context.trace_id:032x}"
        _user_tags(tags, attributes)
        if sdk_utils._is_any_synthetic_source(attributes):
            tags["ai.operation.syntheticSource"] = "True"
        if span.parent and span.parent.span_id:
            tags["ai.operation.parentId"] = f"{span.parent.span_id:016x}"
        session = attributes.get("session.id")
        if isinstance(session, str):
            tags["ai.session.id"] = session
        tags["ai.operation.name"] = span.name
        method = attributes.get("http.request.method") or attributes.get("http.method")
        is_http = "http.request.method" in attributes or "http.method" in attributes
        extracted: dict[str, str] = {}
        data: dict[str, Any] = {
            "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
            "name": span.name,
            "id": f"{span.context.span_id:016x}",
            "duration": sdk_utils.ns_to_duration(duration),
            "success": span.status.is_ok,
        }
        if span.kind is SpanKind.SERVER:
            name, base_type = _REQUEST_ENVELOPE_NAME, "RequestData"
            data["responseCode"] = "0"
            location_ip = sdk_trace_utils._get_location_ip(attributes)
            if location_ip:
                tags["ai.location.ip"] = location_ip
            if is_http:
                user_agent = sdk_trace_utils._get_user_agent(attributes)
                if user_agent:
                    tags["ai.user.userAgent"] = user_agent
                url = _request_url(attributes) or sdk_trace_utils._get_url_for_http_request(attributes)
                data["url"] = url
                if "http.route" in attributes:  # by the HTTP conventions, never `_OTHER` in a name
                    tags["ai.operation.name"] = f"{'HTTP' if method == '_OTHER' else method} {attributes['http.route']}"
                # Without a route the span's name stands (the method): the SDK would name it by the raw path, one
                # operation per path a client makes up, and a path may hold personal data.
                status = _status_code(attributes)
                data["responseCode"] = str(status)
                data["success"] = span.status.is_ok and sdk_utils._is_status_code_success(status, is_trace=True)
            if tags["ai.operation.name"]:
                data["name"] = tags["ai.operation.name"][:1024]
            data["responseCode"] = data["responseCode"][:1024]
            if data.get("url"):
                data["url"] = data["url"][:2048]
            if self._mark_requests and is_http:
                extracted = {EXTRACTED_METRICS_MARKER: "True"}
        else:
            name, base_type = _REMOTE_DEPENDENCY_ENVELOPE_NAME, "RemoteDependencyData"
            data["resultCode"] = "0"
            target = sdk_trace_utils._get_target_for_dependency_from_peer(attributes)
            if span.kind is SpanKind.INTERNAL:
                data["type"] = "InProc"
            elif is_http:
                data["type"] = "HTTP"
                user_agent = sdk_trace_utils._get_user_agent(attributes)
                if user_agent:
                    tags["ai.user.userAgent"] = user_agent
                url = sdk_trace_utils._get_url_for_http_dependency(attributes)
                if "http.route" in attributes:
                    tags["ai.operation.name"] = f"{method} {attributes['http.route']}"
                if url:
                    data["data"] = url
                target, path = sdk_trace_utils._get_target_and_path_for_http_dependency(attributes, url)
                if path:
                    data["name"] = tags["ai.operation.name"] = f"{method} {path}"
                data["resultCode"] = str(_status_code(attributes))
            else:
                data["type"] = "N/A"
            if tags["ai.operation.name"]:
                data["name"] = tags["ai.operation.name"][:1024]
            elif data["name"]:
                data["name"] = str(data["name"])[:1024]
            data["resultCode"] = str(data["resultCode"])[:1024]
            if data.get("data"):
                data["data"] = str(data["data"])[:8192]
            data["type"] = str(data["type"])[:1024]
            if target:
                data["target"] = str(target)[:1024]
        if catalog.OPERATION_NAME in attributes:  # an item inside a turn: named by the turn, as its request
            tags["ai.operation.name"] = attributes[catalog.OPERATION_NAME]
        properties = self._properties(attributes)
        scope = span.instrumentation_scope
        if scope is not None and scope.name in _INSTRUMENTATION_SUPPORTING_METRICS_LIST:
            properties[EXTRACTED_METRICS_MARKER] = "True"
        properties.update(extracted)
        data["properties"] = properties
        data["measurements"] = _measurements(attributes)
        envelope = _envelope(self._instrumentation_key, name, start, tags, data, base_type)
        if _SAMPLE_RATE_KEY in attributes:
            envelope["sampleRate"] = attributes[_SAMPLE_RATE_KEY]
        return envelope


class FastAzureMonitorLogExporter(AzureMonitorLogExporter):
    """`AzureMonitorLogExporter` (same keywords, same transmission and storage) with dict envelopes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resource_tags = _ResourceTags()
        self._properties = _Properties(_excluding_correlation(sdk_logs._IGNORED_ATTRS.__contains__))

    def _log_to_envelope(self, readable_log_record: ReadableLogRecord) -> Envelope:  # type: ignore[override]
        record = readable_log_record.log_record
        attributes = plain_attributes(record.attributes)
        if _MICROSOFT_AVAILABILITY_NAME in attributes:
            return _sdk_envelope(super()._log_to_envelope(readable_log_record))
        timestamp = record.timestamp if record.timestamp is not None else record.observed_timestamp
        tags = dict(self._resource_tags(readable_log_record.resource))
        tags["ai.operation.id"] = f"{record.trace_id or 0:032x}"
        _user_tags(tags, attributes)
        tags["ai.operation.parentId"] = f"{record.span_id or 0:016x}"
        if attributes:
            if attributes.get("ai.operation.name") is not None:
                tags["ai.operation.name"] = attributes["ai.operation.name"]
            session = attributes.get("session.id")
            if isinstance(session, str):
                tags["ai.session.id"] = session
            if sdk_utils._is_any_synthetic_source(attributes):
                tags["ai.operation.syntheticSource"] = "True"
            location_ip = sdk_trace_utils._get_location_ip(attributes)
            if location_ip:
                tags["ai.location.ip"] = location_ip
        properties = self._properties(attributes)
        measurements = _measurements(attributes)
        scope = readable_log_record.instrumentation_scope
        if scope is not None and getattr(scope, "name", None) is not None:
            properties.setdefault("logger_name", str(scope.name))
        severity = sdk_logs._get_severity_level(record.severity_number)
        exception_type = attributes.get("exception.type")
        exception_message = attributes.get("exception.message")
        data: dict[str, Any]
        if exception_type is not None or exception_message is not None:
            stack = attributes.get("exception.stacktrace")
            if record.body:
                message: Any = sdk_logs._map_body_to_message(record.body)
            else:
                message = exception_message or "Exception"
            data = {
                "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
                "severityLevel": severity,
                "properties": properties,
                "measurements": measurements,
                "exceptions": [
                    {
                        "typeName": str(exception_type or "Exception")[:1024],
                        "message": str(message)[:32768],
                        "hasFullStack": stack is not None,
                        "stack": str(stack)[:32768],
                    }
                ],
            }
            name, base_type = _EXCEPTION_ENVELOPE_NAME, "ExceptionData"
        elif (
            attributes.get(_MICROSOFT_CUSTOM_EVENT_NAME) or attributes.get(_APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE)
        ) is not None:
            sdk_logs._set_statsbeat_custom_events_feature()
            event_name = attributes.get(_MICROSOFT_CUSTOM_EVENT_NAME)
            data = {
                "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
                "name": str(event_name) if event_name else sdk_logs._map_body_to_message(record.body),
                "properties": properties,
                "measurements": measurements,
            }
            name, base_type = _EVENT_ENVELOPE_NAME, "EventData"
        else:
            data = {
                "ver": _EXPORTER_DOMAIN_SCHEMA_VERSION,
                "message": sdk_logs._map_body_to_message(record.body).strip() or _DEFAULT_LOG_MESSAGE,
                "severityLevel": severity,
                "properties": properties,
                "measurements": measurements,
            }
            name, base_type = _MESSAGE_ENVELOPE_NAME, "MessageData"
        envelope = _envelope(self._instrumentation_key, name, timestamp, tags, data, base_type)
        if catalog.SAMPLE_RATE in attributes:
            envelope["sampleRate"] = attributes[catalog.SAMPLE_RATE]
        return envelope
