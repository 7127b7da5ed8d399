"""Pseudonymisation and redaction applied before any exporter sees a span or a log record.

Conversation and user ids leave the process only as keyed hashes. Free text (message text, exception messages,
log bodies) is scanned for identifiers — e-mail addresses, phone numbers, payment cards, IBANs, national ids and IP
addresses — which are replaced by a placeholder naming the kind.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor


class Hasher:
    """Keyed hash (HMAC-SHA256, 128 bits shown) so ids can be counted and joined but not reversed."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key_is_ephemeral = key is None
        self._key = key or secrets.token_bytes(32)
        self._cache: dict[str, str] = {}

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        cached = self._cache.get(value)
        if cached is None:
            cached = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) >= 10_000:  # bounded: a flood of distinct ids must not grow memory
                self._cache.clear()
            self._cache[value] = cached
        return cached


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# UUIDs are identifiers of machines and activities, not people; matched first so no digit run inside is redacted.
_ISO_DATE = r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\b"  # timestamps, not phone numbers
_UUID = r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"
_EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"
_IBAN = r"\b[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,30}\b"
_US_SSN = r"\b\d{3}-\d{2}-\d{4}\b"
_UK_NINO = r"\b[A-CEGHJ-PR-TW-Za-ceghj-pr-tw-z]{2}[ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[A-Da-d]\b"
_IPV4 = r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]*\d)"
_IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%\w+)?(?![\w:])"
# Digit groups with optional + and separators: phone numbers, card numbers and long national ids.
_NUMBER = r"(?<![\w+])\+?\(?\d[\d \-.()/]{5,}\d(?!\w)"

_PATTERN = re.compile(
    "|".join(
        f"(?P<{name}>{pattern})"
        for name, pattern in (
            ("uuid", _UUID),
            ("date", _ISO_DATE),
            ("email", _EMAIL),
            ("ipv6", _IPV6),
            ("ipv4", _IPV4),
            ("ssn", _US_SSN),
            ("nino", _UK_NINO),
            ("iban", _IBAN),
            ("number", _NUMBER),
        )
    )
)
# What every identifier that `_replace` rewrites has: an "@" (e-mail), two colons (IPv6: "::" at least) or four
# digits (an IPv4 address has four numbers; national ids, IBANs, phone and card numbers have more). Text with none
# of them is returned as it is without running the patterns (most attribute values: locales, versions, names).
_WORTH_SCANNING = re.compile(r"@|:[^:]*+:|\d(?:\D*+\d){3}")
_CACHE_LIMIT = 1024
_CACHEABLE_LENGTH = 256
_redacted: dict[str, str] = {}


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    text = match.group()
    if kind in ("uuid", "date"):
        return text
    if kind == "ipv6":
        try:
            ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            return text
        return "[IP]"
    if kind == "ipv4":
        return "[IP]"
    if kind == "email":
        return "[EMAIL]"
    if kind in ("ssn", "nino"):
        return "[ID]"
    if kind == "iban":
        return "[IBAN]" if sum(c.isdigit() for c in text) >= 8 else text
    digits = re.sub(r"\D", "", text)
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "[CARD]"
    if len(digits) >= 7:
        return "[PHONE]" if text.lstrip().startswith(("+", "(")) or len(digits) <= 15 else "[NUMBER]"
    return text


def redact(text: str) -> str:
    """Replace identifiers in free text with placeholders such as [EMAIL] or [CARD]."""
    if not _WORTH_SCANNING.search(text):
        return text
    # A turn redacts the same values several times (its activity id is on the span and on two events).
    clean = _redacted.get(text)
    if clean is None:
        clean = _PATTERN.sub(_replace, text)
        if len(text) <= _CACHEABLE_LENGTH:
            if len(_redacted) >= _CACHE_LIMIT:  # bounded: distinct texts must not grow memory
                _redacted.clear()
            _redacted[text] = clean
    return clean


def redact_uncached(text: str) -> str:
    """`redact` without its shortcuts: every pattern on every text (the reference the tests compare it with)."""
    return _PATTERN.sub(_replace, text)


# Infrastructure attributes whose values are addresses of our own services, not of people.
_NOT_PERSONAL = frozenset(
    {
        "server.address",
        "server.port",
        "url.full",
        "url.scheme",
        "http.route",
        "url.path",
        "ai.operation.name",  # the request's route name
        "client.address",  # anonymised to its network by the HTTP instrumentation
        # Already pseudonymised: a keyed hash can look like an IBAN or a card number to the patterns.
        "bot.conversation.hash",
        "bot.user.hash",
        "enduser.pseudo.id",
        "session.id",
        "conversationId",
        "fromId",
        "recipientId",
    }
)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list) and any(isinstance(item, str) for item in value):
        return tuple(redact(item) if isinstance(item, str) else item for item in value)
    return value


def plain_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The attributes as a dict, for reading. The SDK's BoundedAttributes is a Python MutableMapping over a dict:
    each `in`, `get` and item through it costs a Python call; the dict inside is read directly when it is there."""
    if not attributes:
        return {}
    if type(attributes) is dict:
        return attributes
    inner = getattr(attributes, "_dict", None)
    return inner if isinstance(inner, dict) else dict(attributes)


def span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """`plain_attributes` of a span (ReadableSpan.attributes wraps them in a read-only proxy, one layer more)."""
    attributes = getattr(span, "_attributes", None)
    return plain_attributes(attributes if isinstance(attributes, Mapping) else span.attributes)


def redact_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A redacted copy, or None when nothing had to change."""
    if not attributes:
        return None
    plain = plain_attributes(attributes)
    changes = _changes(plain)
    return {**plain, **changes} if changes else None


def _changes(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The redacted values of the attributes redaction changes, or None."""
    changed: dict[str, Any] | None = None
    for key, value in attributes.items():
        if key in _NOT_PERSONAL:
            continue
        clean = redact(value) if type(value) is str else _redact_value(value)
        if clean is not value and clean != value:
            if changed is None:
                changed = {}
            changed[key] = clean
    return changed


class RedactingSpanProcessor(SpanProcessor):
    """Wraps the exporting processor; hands it a redacted copy of each ended span."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redact_span(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def redact_span(span: ReadableSpan) -> ReadableSpan:
    plain = span_attributes(span)
    changes = _changes(plain)
    attributes = {**plain, **changes} if changes else None
    events: list[Event] | None = None
    for index, event in enumerate(span.events):
        clean = redact_attributes(event.attributes)
        if clean is not None:
            if events is None:
                events = list(span.events)
            events[index] = Event(event.name, clean, event.timestamp)
    description = span.status.description
    clean_description = redact(description) if description else description
    if attributes is None and events is None and clean_description == description:
        return span
    status = span.status
    if clean_description != description:
        status = type(status)(status.status_code, clean_description)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes if attributes is not None else span.attributes,
        events=events if events is not None else span.events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingLogProcessor(LogRecordProcessor):
    """Runs before the exporting processors and redacts the record in place."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        if isinstance(record.body, str):
            record.body = redact(record.body)
        changes = _changes(plain_attributes(record.attributes))
        if changes:
            for key, value in changes.items():
                record.attributes[key] = value  # type: ignore[index]

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
