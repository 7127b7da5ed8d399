"""An exception's message and stack trace with the ids in them replaced, before they are recorded on a span."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote


def masked_exception(
    error: BaseException, ids: Iterable[str | None], mask: Callable[[str], str] | Mapping[str, str]
) -> dict[str, str]:
    """`exception.message` and `exception.stacktrace` of `error` with every id in them (as it is, and
    percent-encoded as in a URL) replaced by its keyed hash, or with the given replacements."""
    replacements = dict(mask) if isinstance(mask, Mapping) else {}
    if callable(mask):
        for value in ids:
            if value and len(value) >= 3:  # shorter ids would mask ordinary words
                hashed = mask(value)
                replacements[value] = hashed
                replacements[quote(value.encode("utf-8", "surrogatepass"), safe="")] = hashed
    message = str(error)
    stacktrace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for raw in sorted((key for key in replacements if key), key=len, reverse=True):
        message = message.replace(raw, replacements[raw])
        stacktrace = stacktrace.replace(raw, replacements[raw])
    return {"exception.message": message, "exception.stacktrace": stacktrace}
