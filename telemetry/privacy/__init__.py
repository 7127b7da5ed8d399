"""Pseudonymisation and redaction applied before any exporter sees a span or a log record.

Conversation and user ids leave the process only as keyed hashes. Free text (message text, exception messages,
log bodies) is scanned for identifiers — e-mail addresses, phone numbers, payment cards, IBANs, national ids and IP
addresses — which are replaced by a placeholder naming the kind.

Modules: hashing (keyed hashes of ids), patterns (what an identifier looks like), text (redacting free text),
attributes (redacting attribute values), processors (where redaction sits before the exporters).
"""

from telemetry.privacy.attributes import plain_attributes, redact_attributes, span_attributes
from telemetry.privacy.hashing import Hasher
from telemetry.privacy.processors import (
    RedactingLogProcessor,
    RedactingSpanExporter,
    RedactingSpanProcessor,
    redact_span,
)
from telemetry.privacy.text import MAX_REDACTED_LENGTH, TRUNCATION_MARK, normalise, redact, truncate

__all__ = [
    "MAX_REDACTED_LENGTH",
    "TRUNCATION_MARK",
    "Hasher",
    "RedactingLogProcessor",
    "RedactingSpanExporter",
    "RedactingSpanProcessor",
    "normalise",
    "plain_attributes",
    "redact",
    "redact_attributes",
    "redact_span",
    "span_attributes",
    "truncate",
]
