"""Speed rewrite: whether a turn changed the bot state, told by a pickle instead of jsonpickle.

Why: `BotState` finds out whether a turn changed the conversation or user state by comparing
`str(jsonpickle.Pickler().flatten(state))` before and after, computed four times per turn and state: a noticeable share
of a turn. A pickle of the state tells the same (equal pickles, equal state); a state pickle refuses is fingerprinted
botbuilder's way, and a mix of the two only ever reads as "changed", which saves once more.
Tests proving it equals the library and is used:
- tests/test_compat.py::test_bot_state_changes_are_detected_without_jsonpickle
- tests/test_compat.py::test_state_that_cannot_be_pickled_is_fingerprinted_the_stock_way
"""

from __future__ import annotations

import pickle

from botbuilder.core.bot_state import CachedBotState

_STOCK_FINGERPRINT = CachedBotState.compute_hash


def _state_fingerprint(self: CachedBotState, obj: object) -> object:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # not picklable (a lambda, a lock, ...): botbuilder's jsonpickle way, slow but total
        return _STOCK_FINGERPRINT(self, obj)


def patch_bot_state_fingerprint() -> None:
    CachedBotState.compute_hash = _state_fingerprint
