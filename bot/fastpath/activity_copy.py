"""Speed rewrite: outgoing activities copied without `copy.deepcopy`'s generic dispatch.

Why: `TurnContext.send_activities` deep-copies every outgoing activity with `copy.deepcopy`, which walks each of an
Activity's ~50 attributes through its generic dispatch: a noticeable share of a turn with suggested actions.
`copy_activity` makes the same copy (shared references and cycles kept, via the same memo) for schema models, lists
and dicts, and hands anything else to `copy.deepcopy`; `shallow_copy` does the same for the three `copy.copy` calls
of the conversation reference built for each send.
Tests proving it equals the library and is used:
- tests/test_compat.py::test_an_outgoing_activity_is_copied_as_deepcopy_copies_it
- tests/test_compat.py::test_sending_copies_activities_without_copy_deepcopy
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import Any

from botbuilder.core import turn_context as botbuilder_turn_context
from msrest.serialization import Model

# Immutable values a deep copy returns as they are.
_SHARED_TYPES = frozenset({str, int, float, bool, type(None), bytes, complex})
_PLAIN_MODELS: dict[type, bool] = {}


def _is_plain_model(kind: type) -> bool:
    """An msrest model whose deep copy is its class plus a deep copy of its `__dict__` (no copy hooks of its own)."""
    plain = _PLAIN_MODELS.get(kind)
    if plain is None:
        hooks = ("__deepcopy__", "__setstate__", "__slots__", "__getnewargs__", "__getnewargs_ex__")
        plain = _PLAIN_MODELS[kind] = (
            issubclass(kind, Model)
            and kind.__reduce_ex__ is object.__reduce_ex__
            and kind.__reduce__ is object.__reduce__
            and kind.__new__ is object.__new__
            and not any(hasattr(kind, hook) for hook in hooks)
        )
    return plain


def copy_activity(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """`copy.deepcopy(value)`, several times faster for botbuilder's schema models."""
    return _deep_copy(value, {} if memo is None else memo)


def _deep_copy(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _SHARED_TYPES:
        return value
    key = id(value)
    done = memo.get(key)
    if done is not None:
        return done
    result: Any
    if kind is list:
        result = memo[key] = []
        result.extend(item if type(item) in _SHARED_TYPES else _deep_copy(item, memo) for item in value)
    elif kind is dict:
        result = memo[key] = {}
        for name, item in value.items():
            copied = item if type(item) in _SHARED_TYPES else _deep_copy(item, memo)
            result[name if type(name) in _SHARED_TYPES else _deep_copy(name, memo)] = copied
    elif _is_plain_model(kind):
        result = memo[key] = object.__new__(kind)
        state = result.__dict__
        for name, item in value.__dict__.items():
            state[name] = item if type(item) in _SHARED_TYPES else _deep_copy(item, memo)
    elif isinstance(value, Enum):
        return value  # what copy.deepcopy returns for an enum member (ActivityTypes.message, ...)
    else:
        return copy.deepcopy(value, memo)
    return result


def shallow_copy(value: Any) -> Any:
    """`copy.copy(value)`: TurnContext copies the conversation's accounts for every send."""
    kind = type(value)
    if kind in _SHARED_TYPES:
        return value
    if kind is list:
        return list(value)
    if _is_plain_model(kind):
        result = object.__new__(kind)
        result.__dict__.update(value.__dict__)
        return result
    return copy.copy(value)


def patch_outgoing_activity_copy() -> None:
    botbuilder_turn_context.deepcopy = copy_activity
    botbuilder_turn_context.copy = shallow_copy
