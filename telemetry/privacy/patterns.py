"""The patterns that find identifiers and secrets in free text, and what each match is replaced by."""

from __future__ import annotations

import ipaddress
import re


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


def substitute(text: str, excluded: frozenset[str] = frozenset()) -> str:
    def replace(match: re.Match[str]) -> str:
        clean = _replace(match)
        if clean != match.group() or match.lastgroup in _KEPT:
            return clean
        # A near-miss (a number too short, an IBAN with few digits) may still hold an identifier of another kind:
        # fail closed and scan it again without this kind. Near-misses do not overlap, so this stays linear.
        return substitute(clean, excluded | {match.lastgroup or ""})

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
