"""Logging wiring: console lines carry trace and span ids; the bot's records are exported once, the SDKs' never.

Only the `bot` and `telemetry` logger trees are exported. Exporting the root logger would also export azure-core's
and the exporter's own records, which are produced while exporting: an endless loop.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider

from telemetry.config import TelemetryConfig
from telemetry.privacy import redact

EXPORTED_LOGGERS = ("bot", "telemetry")
# httpx2/httpx/openai: the model client logs a line per request at INFO (the chat span already says it all).
QUIET_LOGGERS = ("azure", "msrest", "urllib3", "opentelemetry", "msal", "aiohttp.access", "httpx2", "httpx", "openai")
CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"


class TraceContextFilter(logging.Filter):
    """Adds the active trace and span ids to console records and redacts what the record says."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = "-"
            record.span_id = "-"
        message = record.getMessage()
        clean = redact(message).replace("\r", "\\r").replace("\n", "\\n").replace("\x1b", "\\x1b")
        if clean != message:
            record.msg, record.args = clean, None
        return True


def configure_logging(
    config: TelemetryConfig, logger_provider: LoggerProvider, *, console: bool = True
) -> list[tuple[logging.Logger, logging.Handler]]:
    """Attach handlers; returns them so shutdown can detach them again."""
    attached: list[tuple[logging.Logger, logging.Handler]] = []
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, config.log_level))
    root = logging.getLogger()
    if console and not any(isinstance(h, ConsoleHandler) for h in root.handlers):
        handler = ConsoleHandler()
        handler.setFormatter(ConsoleFormatter(CONSOLE_FORMAT))
        handler.addFilter(TraceContextFilter())
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.WARNING, config.log_level))
        attached.append((root, handler))
    export = LoggingHandler(level=config.log_level, logger_provider=logger_provider)
    for name in EXPORTED_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(config.log_level)
        logger.addHandler(export)
        attached.append((logger, export))
    return attached


def _escape(text: str) -> str:
    return text.replace("\r", "\\r").replace("\x1b", "\\x1b")


class ConsoleFormatter(logging.Formatter):
    """Tracebacks and stacks redacted like messages. Their lines stay lines, for reading, but each continuation line
    starts with "  | ": text in an exception message cannot pass for a log line of its own."""

    def format(self, record: logging.LogRecord) -> str:
        cached = record.exc_text  # another handler may have cached the traceback unredacted
        record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatException(self, ei: Any) -> str:
        return self._clean(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._clean(super().formatStack(stack_info))

    @staticmethod
    def _clean(text: str) -> str:
        lines = [_escape(redact(line)) for line in text.splitlines()]
        return "\n".join(f"  | {line}" for line in lines)


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (a distinct type, so it is installed once)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        return None
