"""Redaction of free text: normalised so that nothing hides an identifier, cut to a bounded length, scanned once."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

from telemetry.privacy.patterns import substitute

# Characters that hide an identifier from the patterns without changing how it reads: dashes of every kind become
# "-", zero-width characters and soft hyphens disappear (NFKC already turns non-breaking and thin spaces into spaces
# and full-width digits and at signs into ASCII).
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"
_UNHIDE = str.maketrans({**{dash: "-" for dash in _DASHES}, **{char: None for char in _INVISIBLE}})
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# What every identifier the patterns rewrite has: "@" (e-mail), two colons (IPv6: "::" at least), four digits, a
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
        clean = substitute(normalise(text))
        if short:
            if len(_redacted) >= _CACHE_LIMIT:  # bounded: distinct texts must not grow memory
                _redacted.clear()
            _redacted[text] = clean
        else:
            if len(_redacted_long) >= _LONG_CACHE_LIMIT:
                _redacted_long.clear()
            _redacted_long[text] = _redacted_long[clean] = clean
    return clean
