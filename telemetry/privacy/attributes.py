"""Redaction of attribute values (spans, events, log records), and reading the SDK's attributes without its proxies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from telemetry.privacy.text import redact

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
        "gen_ai.conversation.id",  # the conversation's keyed hash (telemetry/genai.py)
        "gen_ai.response.id",  # the model server's completion id
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
    changes = redacted_changes(plain)
    return {**plain, **changes} if changes else None


def redacted_changes(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
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
