"""`python -m bot` with the start-up settings proposed for it (`tune_after_start` in loadtest/benchmark/workers.py):
the benchmark's `ours-tuned` target, to measure the proposal before bot/__main__.py adopts it.

The only difference to `python -m bot` is one call, made right after the bot's sites started listening (where its
banner is printed).
"""

from __future__ import annotations

import sys

import bot.__main__ as entry
from loadtest.benchmark.workers import tune_after_start

_banner = entry.banner


def _banner_then_tune(*args: object, **kwargs: object) -> str:
    text = _banner(*args, **kwargs)  # type: ignore[arg-type]
    tune_after_start()
    return text


if __name__ == "__main__":
    entry.banner = _banner_then_tune
    sys.exit(entry.main())
