"""Deadline-bounded polling: the only way the load test (and the stand-ins it shares with the tests) waits."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _timeout_error(message: str, timeout: float, last: object) -> AssertionError:
    shown = repr(last)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return AssertionError(f"timed out after {timeout:g}s waiting for {message} (last value: {shown})")


def wait_until(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.01, message: str = "condition"
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises AssertionError naming `message` if `timeout` seconds pass first. The predicate is evaluated at least
    once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(message, timeout, value)
        time.sleep(min(interval, remaining))


async def wait_until_async(
    predicate: Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not a cancellation scope
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Async variant of `wait_until`; `predicate` may return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(message, timeout, value)
        await asyncio.sleep(min(interval, remaining))
