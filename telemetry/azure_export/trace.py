"""The trace exporter: spans to Request and RemoteDependency envelopes, span events to Message and Exception."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from azure.monitor.opentelemetry.exporter import AzureMonitorTraceExporter
from azure.monitor.opentelemetry.exporter import _utils as sdk_utils
from azure.monitor.opentelemetry.exporter._constants import (
    _APPLICATION_ID_RESOURCE_KEY,
    _AZURE_SDK_NAMESPACE_NAME,
    _EXCEPTION_ENVELOPE_NAME,
    _EXPORTER_DOMAIN_SCHEMA_VERSION,
    _INSTRUMENTATION_SUPPORTING_METRICS_LIST,
    _MESSAGE_ENVELOPE_NAME,
    _METRIC_ENVELOPE_NAME,
    _REMOTE_DEPENDENCY_ENVELOPE_NAME,
    _REQUEST_ENVELOPE_NAME,
    _SAMPLE_RATE_KEY,
)
from azure.monitor.opentelemetry.exporter.export.trace import _exporter as sdk_trace
from azure.monitor.opentelemetry.exporter.export.trace import _utils as sdk_trace_utils
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from telemetry import catalog
from telemetry.azure_export.envelope import EXTRACTED_METRICS_MARKER, Envelope, new_envelope, sdk_envelope
from telemetry.azure_export.fields import (
    Properties,
    ResourceTags,
    custom_measurements,
    excluding_correlation,
    request_url,
    status_code,
    user_tags,
)
from telemetry.privacy import plain_attributes, span_attributes

_GEN_AI_SYSTEM = "gen_ai.system"
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


class FastAzureMonitorTraceExporter(AzureMonitorTraceExporter):
    """`AzureMonitorTraceExporter` (same keywords, same transmission and storage) with dict envelopes."""

    def __init__(self, *, requests_metric_preaggregated: bool = True, **kwargs: Any) -> None:
        """`requests_metric_preaggregated`: the bot sends `requests/duration` itself, so request items are marked
        for ingestion not to extract it again."""
        super().__init__(**kwargs)
        self._resource_tags = ResourceTags()
        self._properties = Properties(excluding_correlation(sdk_trace._is_standard_attribute))
        self._mark_requests = requests_metric_preaggregated

    def _span_to_envelope(self, span: ReadableSpan) -> Envelope:  # type: ignore[override]
        attributes = span_attributes(span)
        if span.kind not in _FAST_KINDS or span.links or not _SDK_SPAN_ATTRIBUTES.isdisjoint(attributes):
            return sdk_envelope(super()._span_to_envelope(span))
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
            user_tags(tags, attributes)
            session = event_attributes.get("session.id")
            if not isinstance(session, str):
                session = span_session
            if isinstance(session, str):
                tags["ai.session.id"] = session
            if span.context.span_id:
                tags["ai.operation.parentId"] = f"{span.context.span_id:016x}"
            properties = self._properties(event_attributes)
            measurements = custom_measurements(event_attributes)
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
            envelope = new_envelope(self._instrumentation_key, name, event.timestamp, tags, base_data, base_type)
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
        return new_envelope(key, _METRIC_ENVELOPE_NAME, time.time_ns(), tags, base_data, "MetricData")

    def _convert_span(self, span: ReadableSpan, attributes: Mapping[str, Any]) -> Envelope:
        """`_convert_span_to_envelope` of the SDK for SERVER, CLIENT and INTERNAL spans without the attributes
        listed in _SDK_SPAN_ATTRIBUTES."""
        start = span.start_time or 0
        duration = span.end_time - start if span.start_time and span.end_time else 0
        tags = dict(self._resource_tags(span.resource))
        tags["ai.operation.id"] = f"{span.context.trace_id:032x}"
        user_tags(tags, attributes)
        if sdk_utils._is_any_synthetic_source(attributes):
            tags["ai.operation.syntheticSource"] = "True"
        if span.parent and span.parent.span_id:
            tags["ai.operation.parentId"] = f"{span.parent.span_id:016x}"
        session = attributes.get("session.id")
        if isinstance(session, str):
            tags["ai.session.id"] = session
        tags["ai.operation.name"] = span.name
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
            _fill_request(span, attributes, tags, data)
            if self._mark_requests and _http_method(attributes)[1]:
                extracted = {EXTRACTED_METRICS_MARKER: "True"}
        else:
            name, base_type = _REMOTE_DEPENDENCY_ENVELOPE_NAME, "RemoteDependencyData"
            _fill_dependency(span, attributes, tags, data)
        if catalog.OPERATION_NAME in attributes:  # an item inside a turn: named by the turn, as its request
            tags["ai.operation.name"] = attributes[catalog.OPERATION_NAME]
        properties = self._properties(attributes)
        scope = span.instrumentation_scope
        if scope is not None and scope.name in _INSTRUMENTATION_SUPPORTING_METRICS_LIST:
            properties[EXTRACTED_METRICS_MARKER] = "True"
        properties.update(extracted)
        data["properties"] = properties
        data["measurements"] = custom_measurements(attributes)
        envelope = new_envelope(self._instrumentation_key, name, start, tags, data, base_type)
        if _SAMPLE_RATE_KEY in attributes:
            envelope["sampleRate"] = attributes[_SAMPLE_RATE_KEY]
        return envelope


_Attributes = Mapping[str, Any]
_Fields = dict[str, Any]  # tags or data of an envelope, filled in place


def _http_method(attributes: _Attributes) -> tuple[Any, bool]:
    """The request's method under the current or the old HTTP conventions, and whether the span is HTTP at all."""
    method = attributes.get("http.request.method") or attributes.get("http.method")
    return method, "http.request.method" in attributes or "http.method" in attributes


def _fill_request(span: ReadableSpan, attributes: _Attributes, tags: _Fields, data: _Fields) -> None:
    """The Request parts of a SERVER span's envelope, as the SDK fills them."""
    method, is_http = _http_method(attributes)
    data["responseCode"] = "0"
    location_ip = sdk_trace_utils._get_location_ip(attributes)
    if location_ip:
        tags["ai.location.ip"] = location_ip
    if is_http:
        user_agent = sdk_trace_utils._get_user_agent(attributes)
        if user_agent:
            tags["ai.user.userAgent"] = user_agent
        url = request_url(attributes) or sdk_trace_utils._get_url_for_http_request(attributes)
        data["url"] = url
        if "http.route" in attributes:  # by the HTTP conventions, never `_OTHER` in a name
            tags["ai.operation.name"] = f"{'HTTP' if method == '_OTHER' else method} {attributes['http.route']}"
        # Without a route the span's name stands (the method): the SDK would name it by the raw path, one
        # operation per path a client makes up, and a path may hold personal data.
        status = status_code(attributes)
        data["responseCode"] = str(status)
        data["success"] = span.status.is_ok and sdk_utils._is_status_code_success(status, is_trace=True)
    if tags["ai.operation.name"]:
        data["name"] = tags["ai.operation.name"][:1024]
    data["responseCode"] = data["responseCode"][:1024]
    if data.get("url"):
        data["url"] = data["url"][:2048]


def _fill_dependency(span: ReadableSpan, attributes: _Attributes, tags: _Fields, data: _Fields) -> None:
    """The RemoteDependency parts of a CLIENT or INTERNAL span's envelope, as the SDK fills them."""
    method, is_http = _http_method(attributes)
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
        data["resultCode"] = str(status_code(attributes))
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
