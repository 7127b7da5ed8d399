"""Speed rewrites of botbuilder internals: each does exactly what the library does, faster, and a property test
proves the two equal (tests/test_compat.py). None fixes a defect; those are in bot/compat/.

- `schema_codec`: botbuilder's schema models to and from JSON without msrest's generic (de)serialiser.
- `state_fingerprint`: whether a turn changed the bot state, told by a pickle instead of jsonpickle.
- `activity_copy`: outgoing activities copied without `copy.deepcopy`'s generic dispatch.

How much each saves is measured in docs/performance.md.
"""

from __future__ import annotations

from bot.fastpath.activity_copy import patch_outgoing_activity_copy
from bot.fastpath.state_fingerprint import patch_bot_state_fingerprint


def install() -> None:
    """Put the rewrites in place of botbuilder's code (idempotent); the adapter calls it."""
    patch_bot_state_fingerprint()
    patch_outgoing_activity_copy()
