"""The log exporter: log records to Message, Exception and (custom) Event envelopes."""

from __future__ import annotations

from typing import Any

from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter
from azure.monitor.opentelemetry.exporter import _utils as sdk_utils
from azure.monitor.opentelemetry.exporter._constants import (
    _APPLICATION_INSIGHTS_EVENT_MARKER_ATTRIBUTE,
    _DEFAULT_LOG_MESSAGE,
    _EXCEPTION_ENVELOPE_NAME,
    _EXPORTER_DOMAIN_SCHEMA_VERSION,
    _MESSAGE_ENVELOPE_NAME,
    _MICROSOFT_AVAILABILITY_NAME,
    _MICROSOFT_CUSTOM_EVENT_NAME,
)
from azure.monitor.opentelemetry.exporter.export.logs import _exporter as sdk_logs
from azure.monitor.opentelemetry.exporter.export.trace import _utils as sdk_trace_utils
from opentelemetry.sdk._logs import ReadableLogRecord

from telemetry import catalog
from telemetry.azure_export.envelope import Envelope, new_envelope, sdk_envelope
from telemetry.azure_export.fields import (
    Properties,
    ResourceTags,
    custom_measurements,
    excluding_correlation,
    user_tags,
)
from telemetry.privacy import plain_attributes

_EVENT_ENVELOPE_NAME = "Microsoft.ApplicationInsights.Event"


class FastAzureMonitorLogExporter(AzureMonitorLogExporter):
    """`AzureMonitorLogExporter` (same keywords, same transmission and storage) with dict envelopes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resource_tags = ResourceTags()
        self._properties = Properties(excluding_correlation(sdk_logs._IGNORED_ATTRS.__contains__))

    def _log_to_envelope(self, readable_log_record: ReadableLogRecord) -> Envelope:  # type: ignore[override]
        record = readable_log_record.log_record
        attributes = plain_attributes(record.attributes)
        if _MICROSOFT_AVAILABILITY_NAME in attributes:
            return sdk_envelope(super()._log_to_envelope(readable_log_record))
        timestamp = record.timestamp if record.timestamp is not None else record.observed_timestamp
        tags = dict(self._resource_tags(readable_log_record.resource))
        tags["ai.operation.id"] = f"{record.trace_id or 0:032x}"
        user_tags(tags, attributes)
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
        measurements = custom_measurements(attributes)
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
        envelope = new_envelope(self._instrumentation_key, name, timestamp, tags, data, base_type)
        if catalog.SAMPLE_RATE in attributes:
            envelope["sampleRate"] = attributes[catalog.SAMPLE_RATE]
        return envelope
