"""Workaround: a malformed Activity is a 500 (msrest raises), or is silently accepted with wrong types.

Defect (botbuilder 4.17.1 / msrest 0.7.1): `Activity().deserialize` raises msrest errors, or accepts wrong types (a
number where a string belongs), for malformed activities.
Why this way: the fields the bot routes and answers by are checked first, and whatever the parser refuses becomes a
`ValueError` naming the problem, which the app answers with 400.
Tests that fail without it:
- tests/test_compat.py::test_malformed_activities_become_value_errors_naming_the_problem
"""

from __future__ import annotations

from typing import Any

from botbuilder.schema import Activity
from msrest.exceptions import DeserializationError

from bot.fastpath.schema_codec import SCHEMA_CODEC

_STRING_FIELDS = ("type", "id", "text", "channelId", "serviceUrl", "locale", "deliveryMode", "replyToId", "name")
_ACCOUNT_FIELDS = ("from", "recipient", "conversation")


def parse_activity(body: Any) -> Activity:
    """A botbuilder Activity from a JSON value, or ValueError saying what is wrong with it."""
    if not isinstance(body, dict):
        raise ValueError(f"the body must be a JSON object (an Activity), got {type(body).__name__}")
    for name in _STRING_FIELDS:
        if name in body and body[name] is not None and not isinstance(body[name], str):
            raise ValueError(f"field '{name}' must be a string")
    for name in _ACCOUNT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"field '{name}' must be an object")
        if isinstance(value, dict) and value.get("id") is not None and not isinstance(value["id"], str):
            raise ValueError(f"field '{name}.id' must be a string")
    try:
        activity = SCHEMA_CODEC.deserialize(Activity, body)
    except (DeserializationError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"not a valid Activity: {type(error).__name__}") from None
    if not activity.type:
        raise ValueError("the Activity has no 'type'")
    return activity
