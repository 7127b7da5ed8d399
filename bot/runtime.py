"""Interpreter settings for a bot process that has started serving (`python -m bot` and each of its workers).

On by default; `BOT_TUNE_RUNTIME=false` turns them off (docs/performance.md measures both).
"""

from __future__ import annotations

import gc
import sys

# Thread switch interval while the exporters' threads convert telemetry: see tune_after_start.
SWITCH_INTERVAL_SECONDS = 0.0005


def tune_after_start() -> None:
    """Process settings for a bot that has started serving (measured in docs/performance.md).

    - `gc.freeze()`: the ~110,000 objects of start-up (mostly the imported SDKs) leave the cyclic collector's
      generations. Without it every full collection walks them all: a 100-170 ms stall of the event loop every few
      seconds under load, and ~30 % of a turn's CPU at saturation.
    - `sys.setswitchinterval(0.5 ms)`: the exporters' threads hold the GIL for up to the switch interval (5 ms by
      default) each time the event loop gives it up for a system call; with several calls per callback the loop
      waited tens of milliseconds per callback while a batch was converted.

    Called once the sites listen, so that everything start-up created is frozen, and nothing a turn creates.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
