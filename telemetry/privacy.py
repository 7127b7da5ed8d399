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
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


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
            # surrogatepass: a client may send lone surrogates ("\ud800") in any id
            cached = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
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


# Every pattern below runs in time linear in its input: each may start only where a run of the characters it is
# made of starts (a lookbehind), its repetitions are of disjoint character classes or bounded, and no repetition is
# nested in another over the same characters. tests/test_privacy.py measures that on adversarial inputs.
# UUIDs and timestamps are identifiers of machines and events, not people; matched first and kept.
_ISO_DATE = (  # years 1900-2099 with a real month and day: "0299-70-20" is a phone number
    r"(?<!\d)(?:19|20)\d{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?(?!\d)"
)
_UUID = r"(?<![\w-])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\w-])"
# Secrets: JSON web tokens, keys and passwords in connection strings or "name=value" form, well-known API key shapes,
# and long base64 runs (storage account keys, SAS signatures).
_JWT = r"(?<![\w-])eyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]*"
_SECRET_NAMES = (
    r"account[_ ]?key|shared[_ ]?access[_ ]?(?:key|signature)|sig|password|passwd|pwd|client[_-]?secret|api[_-]?key"
    r"|access[_-]?token|auth[_-]?token|secret|token|authorization"
)
_NAMED_SECRET = (
    rf"(?<![\w-])(?P<secret_name>(?i:{_SECRET_NAMES})\s{{0,3}}[=:]\s{{0,3}}(?i:bearer\s{{1,3}})?|(?i:bearer)\s{{1,3}})"
    r"(?=[^\s;,&\"'<>]{6})[^\s;,&\"'<>]+"
)
_API_KEY = (
    r"(?<![\w-])(?:(?:sk|pk|rk)[-_][\w-]{16,}|(?:gh[pousr]|github_pat)_\w{20,}|xox[abprs]-[\w-]{10,}"
    r"|AKIA[0-9A-Z]{16}|AIza[\w-]{30,})"
)
_BASE64 = r"(?<![\w+/=-])[A-Za-z0-9+/]{40,}={0,2}(?![\w+/=-])"
# E-mail addresses: quoted or unquoted local part (any letters), a domain of any letters, or the address spelled out
# ("jane dot doe at contoso dot com", "jane [at] contoso.com").
_LOCAL = r"[\w.%+\-!#$&'*/=?^`{|}~]"
_EMAIL = rf"(?:\"[^\"\n]{{1,64}}\"|(?<!{_LOCAL}){_LOCAL}+)@(?:[\w-]+(?:\.[\w-]+)+|\[[0-9A-Fa-f.:]+\])"
_SPELLED_AT = r"(?:\s*[\[({<]\s*(?i:at)\s*[\])}>]\s*|\s+(?i:at)\s+)"
_SPELLED_DOT = r"(?:\s*[\[({<]\s*(?i:dot)\s*[\])}>]\s*|\s+(?i:dot)\s+|\.)"
_SPELLED_EMAIL = (
    rf"(?<![\w.+-])[\w+-]+(?:{_SPELLED_DOT}[\w+-]+){{0,4}}{_SPELLED_AT}[\w-]+(?:{_SPELLED_DOT}[\w-]+){{0,3}}"
    rf"{_SPELLED_DOT}[^\W\d_]{{2,}}(?![\w@+-]|\.\w|{_SPELLED_AT})"
)
_MAC = (
    r"(?<![\w:.-])(?:[0-9A-Fa-f]{2}(?P<mac_separator>[:-])[0-9A-Fa-f]{2}(?:(?P=mac_separator)[0-9A-Fa-f]{2}){4}"
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})(?![\w:.-])"
)
_IBAN = r"(?<![\w-])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,30}(?!\w)"
_US_SSN = r"(?<![\w-])\d{3}[- ]\d{2}[- ]\d{4}(?![\w-])"
_UK_NINO = r"(?<!\w)[A-CEGHJ-PR-TW-Za-ceghj-pr-tw-z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Da-d](?!\w)"
_PASSPORT = (
    r"(?<!\w)(?P<passport_word>(?i:passport)(?:\s{0,3}(?i:no|nr|number|num|#)\.?)?(?:\s{1,3}(?i:is))?"
    r"\s{0,3}[:#]?\s{0,3})[A-Za-z0-9]{6,9}(?!\w)"
)
# IPv4 also when glued to letters ("ip10.20.30.40"), not inside a longer dotted number.
_IPV4 = r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)"
_IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%\w{1,32})?(?![\w:])"
# Digit groups with optional +, separators and an extension: phone numbers, card numbers and long national ids.
_NUMBER = r"(?<![\w+])\+?\(?\d[\d \-.()/_]{5,}\d(?:\s{0,2}(?i:ext|x|#)\.?\s{0,2}\d{1,6})?(?!\w)"
# A document number: eight or nine capitals and digits with both in it (passports, id cards).
_DOCUMENT = r"(?<![\w-])[A-Z0-9]{8,9}(?![\w-])"

_KINDS = (
    ("uuid", _UUID),
    ("date", _ISO_DATE),
    ("jwt", _JWT),
    ("named_secret", _NAMED_SECRET),
    ("api_key", _API_KEY),
    ("email", _EMAIL),
    ("spelled_email", _SPELLED_EMAIL),
    ("passport", _PASSPORT),
    ("mac", _MAC),
    ("ipv6", _IPV6),
    ("ipv4", _IPV4),
    ("ssn", _US_SSN),
    ("nino", _UK_NINO),
    ("iban", _IBAN),
    ("number", _NUMBER),
    ("document", _DOCUMENT),
    ("base64", _BASE64),
)
_PATTERNS: dict[frozenset[str], re.Pattern[str]] = {}


def _pattern(excluded: frozenset[str]) -> re.Pattern[str]:
    """All patterns but the excluded kinds, as one alternation (compiled once per set)."""
    pattern = _PATTERNS.get(excluded)
    if pattern is None:
        pattern = re.compile("|".join(f"(?P<{name}>{regex})" for name, regex in _KINDS if name not in excluded))
        _PATTERNS[excluded] = pattern
    return pattern


_PATTERN = _pattern(frozenset())
# Characters that hide an identifier from the patterns without changing how it reads: dashes of every kind become
# "-", zero-width characters and soft hyphens disappear (NFKC already turns non-breaking and thin spaces into spaces
# and full-width digits and at signs into ASCII).
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"
_UNHIDE = str.maketrans({**{dash: "-" for dash in _DASHES}, **{char: None for char in _INVISIBLE}})
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# What every identifier `_replace` rewrites has: "@" (e-mail), two colons (IPv6: "::" at least), four digits, a
# dash, underscore, "=" or dot (MAC, keys, spelled-out addresses), a run of 8 or more word characters (keys,
# document numbers), or a spelled-out "at". Text with none of them skips the patterns (most short values).
_WORTH_SCANNING = re.compile(r"[@=_\-.:%]|\d(?:\D*+\d){3}|\w{8}|(?i:\bat\b)|[^\x00-\x7f]")
# Longer values are cut before they are scanned: redaction stays linear and bounded however large a request is.
# Application Insights keeps 8,192 characters of a property value; the cut drops the last, possibly partial, word.
MAX_REDACTED_LENGTH = 4096
TRUNCATION_MARK = " [TRUNCATED]"
_CACHE_LIMIT = 1024
_CACHEABLE_LENGTH = 256
_redacted: dict[str, str] = {}
# Long texts (message text with text export on) are redacted once and then met again, already redacted, in the log
# line, the console and the log record: the last few are remembered, and so is their redacted form as clean.
_LONG_CACHE_LIMIT = 64
_redacted_long: dict[str, str] = {}


def _substitute(text: str, excluded: frozenset[str] = frozenset()) -> str:
    def replace(match: re.Match[str]) -> str:
        clean = _replace(match)
        if clean != match.group() or match.lastgroup in _KEPT:
            return clean
        # A near-miss (a number too short, an IBAN with few digits) may still hold an identifier of another kind:
        # fail closed and scan it again without this kind. Near-misses do not overlap, so this stays linear.
        return _substitute(clean, excluded | {match.lastgroup or ""})

    return _pattern(excluded).sub(replace, text)


_KEPT = frozenset({"uuid", "date"})


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    text = match.group()
    if kind in ("uuid", "date"):
        return text
    if kind in ("jwt", "api_key", "base64"):
        if kind == "base64" and not (
            any(c.isdigit() for c in text) and any(c.isupper() for c in text) and any(c.islower() for c in text)
        ):
            return text
        return "[SECRET]"
    if kind == "named_secret":
        return f"{match.group('secret_name')}[SECRET]"
    if kind == "passport":
        return f"{match.group('passport_word')}[ID]"
    if kind == "mac":
        return "[MAC]"
    if kind == "ipv6":
        try:
            ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            return text
        return "[IP]"
    if kind == "ipv4":
        return "[IP]"
    if kind in ("email", "spelled_email"):
        return "[EMAIL]"
    if kind in ("ssn", "nino"):
        return "[ID]"
    if kind == "iban":
        return "[IBAN]" if sum(c.isdigit() for c in text) >= 8 else text
    if kind == "document":
        count = sum(c.isdigit() for c in text)
        if count == len(text):
            return "[NUMBER]"
        return "[ID]" if count >= 5 else text
    digits = re.sub(r"\D", "", text)
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "[CARD]"
    if len(digits) >= 7:
        return "[PHONE]" if text.lstrip().startswith(("+", "(")) or len(digits) <= 15 else "[NUMBER]"
    return text


def normalise(text: str) -> str:
    """The text as the patterns read it: percent-escapes decoded, NFKC, every dash a "-", invisible characters gone.
    Unencodable text (lone surrogates) is replaced character by character rather than refused."""
    if "%" in text and _PERCENT_ESCAPE.search(text):
        text = unquote(text, errors="replace")
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_UNHIDE)
        if _has_surrogates(text):
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def truncate(text: str, limit: int = MAX_REDACTED_LENGTH) -> str:
    """At most `limit` characters, cut at a space where there is one (so no identifier is left half there)."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit // 2, limit)
    return text[: cut if cut > 0 else limit] + TRUNCATION_MARK


def redact(text: str) -> str:
    """Replace identifiers and secrets in free text with placeholders such as [EMAIL], [CARD] or [SECRET]."""
    if len(text) > MAX_REDACTED_LENGTH:
        text = truncate(text)
    elif not _WORTH_SCANNING.search(text):
        return text
    # A turn redacts the same values several times (its activity id is on the span and on two events).
    short = len(text) <= _CACHEABLE_LENGTH
    clean = _redacted.get(text) if short else _redacted_long.get(text)
    if clean is None:
        clean = _substitute(normalise(text))
        if short:
            if len(_redacted) >= _CACHE_LIMIT:  # bounded: distinct texts must not grow memory
                _redacted.clear()
            _redacted[text] = clean
        else:
            if len(_redacted_long) >= _LONG_CACHE_LIMIT:
                _redacted_long.clear()
            _redacted_long[text] = _redacted_long[clean] = clean
    return clean


def redact_uncached(text: str) -> str:
    """`redact` without its shortcuts: every pattern on every text (the reference the tests compare it with)."""
    return _substitute(normalise(truncate(text)))


def scan(text: str) -> str:
    """The patterns alone, on text of any length (what the linear-time tests measure)."""
    return _substitute(text)


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


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; redacts each span of a batch in the batch processor's thread, off the event loop."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([redact_span(span) for span in spans])

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
