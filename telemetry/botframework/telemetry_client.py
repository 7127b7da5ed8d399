"""botbuilder's BotTelemetryClient, fed into OpenTelemetry: what dialogs and the bot report through it."""

from __future__ import annotations

import logging
from typing import Any

from botbuilder.core import BotTelemetryClient, Severity
from botbuilder.core.bot_telemetry_client import TelemetryDataPointType
from opentelemetry import trace

from telemetry import catalog
from telemetry.botframework.turn import current_turn
from telemetry.setup import Telemetry

log = logging.getLogger("telemetry.turn")


class OpenTelemetryBotTelemetryClient(BotTelemetryClient):
    """botbuilder's telemetry interface, fed into OpenTelemetry: dialogs and the bot report through it."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._instruments = telemetry.instruments

    def track_event(
        self, name: str, properties: dict[str, object] | None = None, measurements: dict[str, object] | None = None
    ) -> None:
        properties = properties or {}
        record = current_turn.get()
        channel = record.channel if record else "unknown"
        dialog_id = str(properties.get("DialogId", ""))
        span = trace.get_current_span()
        traced = span.is_recording()
        if name == catalog.EVENT_WATERFALL_START.name:
            self._instruments.count_dialog_started(1, ((catalog.DIALOG_ID, dialog_id),))
            if record is not None:
                record.dialog_id = record.dialog_id or dialog_id
        elif name == catalog.EVENT_WATERFALL_STEP.name:
            if traced:
                step = str(properties.get("StepName", ""))
                span.add_event(
                    catalog.SPAN_EVENT_DIALOG_STEP, {catalog.DIALOG_ID: dialog_id, catalog.DIALOG_STEP: step}
                )
            if record is not None:
                record.dialog_id = record.dialog_id or dialog_id
        elif name == catalog.EVENT_WATERFALL_COMPLETE.name:
            self._instruments.count_dialog_completed(1, ((catalog.DIALOG_ID, dialog_id),))
        elif name == catalog.EVENT_WATERFALL_CANCEL.name:
            self._instruments.count_dialog_cancelled(1, ((catalog.DIALOG_ID, dialog_id),))
        elif name == catalog.EVENT_KNOWLEDGE_ANSWER.name:
            topic = str(properties.get("topic", ""))
            self._instruments.count_knowledge_answer(1, ((catalog.CHANNEL, channel), (catalog.KNOWLEDGE_TOPIC, topic)))
            if traced:
                span.set_attribute(catalog.KNOWLEDGE_TOPIC, topic)
        elif name == catalog.EVENT_KNOWLEDGE_FALLBACK.name:
            self._instruments.count_knowledge_fallback(1, ((catalog.CHANNEL, channel),))
        if traced:  # events go where the turn's trace goes (see TurnTelemetryMiddleware)
            # InstanceId is a random id per dialog run: useful to join steps, useless as a dimension, so it stays.
            event = {key: str(value) for key, value in properties.items()}
            self._telemetry.emit_event(name, event)

    def track_exception(
        self,
        exception_type: type | None = None,
        value: Exception | None = None,
        trace_back: object = None,
        properties: dict[str, object] | None = None,
        measurements: dict[str, object] | None = None,
    ) -> None:
        if isinstance(value, BaseException):
            trace.get_current_span().record_exception(value)

    def track_trace(self, name: str, properties: dict[str, object] | None = None, severity: Severity = None) -> None:
        level = {
            Severity.verbose: logging.DEBUG,
            Severity.information: logging.INFO,
            Severity.warning: logging.WARNING,
            Severity.error: logging.ERROR,
            Severity.critical: logging.CRITICAL,
        }.get(severity, logging.INFO)
        logging.getLogger("bot.trace").log(level, "%s", name, extra={"properties": str(properties or {})})

    def track_metric(
        self,
        name: str,
        value: float,
        tel_type: TelemetryDataPointType = None,
        count: int | None = None,
        min_val: float | None = None,
        max_val: float | None = None,
        std_dev: float | None = None,
        properties: dict[str, object] | None = None,
    ) -> None:
        if name in self._instruments.reported:
            self._instruments.reported[name] = float(value)
        else:
            log.debug("track_metric %s is not exported; define the metric in telemetry/catalog.py", name)

    def track_pageview(self, name: str, url: str, duration: int = 0, properties=None, measurements=None) -> None:
        return None

    def track_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # requests are traced by the HTTP server instrumentation

    def track_dependency(self, *args: Any, **kwargs: Any) -> None:
        return None  # outgoing calls are traced by the HTTP client instrumentation

    def flush(self) -> None:
        self._telemetry.force_flush()
