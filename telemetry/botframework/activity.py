"""Metric labels and span attributes read from an activity, bounded so a client cannot create new series or
oversized values by what it sends."""

from __future__ import annotations

import re

from botbuilder.schema import Activity, ActivityTypes
from botframework.connector import Channels

CHANNELS = frozenset(channel.value for channel in Channels)
ACTIVITY_TYPES = frozenset(kind.value for kind in ActivityTypes)


def bounded_label(value: object, known: frozenset[str]) -> str:
    """A metric label from request data: one of the known Bot Framework values, else `other` (or `unknown`), so
    a client cannot create new series by sending made-up channel ids or activity types."""
    if type(value) is str and value in known:
        return value
    if value is None or value == "":
        return "unknown"
    text = str(getattr(value, "value", value))  # botbuilder's enums by value: `message`, not `ActivityTypes.message`
    return text if text in known else "other"


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8}){0,6}")
MAX_ACTIVITY_ID_LENGTH = 128


def locale_tag(activity: Activity) -> str:
    """The activity's locale when it has the shape of a language tag (BCP 47), else `invalid`: a client can send any
    text there."""
    locale = activity.locale
    if not locale:
        return ""
    return locale if isinstance(locale, str) and _LANGUAGE_TAG.fullmatch(locale) else "invalid"


def bounded_activity_id(activity: Activity) -> str:
    """The activity id, at most 128 characters (redacted like all values before export)."""
    return str(activity.id or "")[:MAX_ACTIVITY_ID_LENGTH]


def channel_label(activity: Activity) -> str:
    return bounded_label(activity.channel_id, CHANNELS)


def activity_type_label(activity: Activity) -> str:
    return bounded_label(activity.type or ActivityTypes.message, ACTIVITY_TYPES)
