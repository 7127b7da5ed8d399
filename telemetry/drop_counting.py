"""Exact `otel.sdk.processor.*.processed{error.type="queue_full"}` counts.

The SDK's batch processor decides that a record is dropped by looking at the queue's length just before it inserts,
without a lock: when its export thread takes a batch out in between, a record is counted as dropped that was not (and
two threads inserting at once can evict a record nobody counts). Under bursts the count ran ahead of the real loss.

Here the queue itself counts: inserting and taking out hold one lock, and an insert counts a drop exactly when the
full deque evicted its oldest record. The SDK's own guess is ignored. Everything else (records handed to the
exporter, records refused after shutdown, the queue size) is counted by the SDK as before.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

QUEUE_FULL = "queue_full"  # the SDK's error.type for a record evicted from a full queue


class _DropCountingQueue(collections.deque[Any]):
    def __init__(self, maxlen: int, count_drop: Callable[[], None]) -> None:
        super().__init__((), maxlen)
        self._lock = threading.Lock()
        self._count_drop = count_drop

    def appendleft(self, item: Any) -> None:
        with self._lock:
            evicts = len(self) == self.maxlen
            super().appendleft(item)
        if evicts:
            self._count_drop()

    def pop(self) -> Any:  # type: ignore[override]  # deque.pop takes no index
        with self._lock:
            return super().pop()


class _SdkDropGuessIgnored:
    """The processor's metrics, except its racy `queue_full` guesses."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        self._inner.register_queue_size(get_queue_size)

    def drop_items(self, count: int, error_type: str = QUEUE_FULL) -> None:
        if error_type != QUEUE_FULL:
            self._inner.drop_items(count, error_type)

    def finish_items(self, count: int) -> None:
        self._inner.finish_items(count)


def count_drops_exactly(processor: object) -> str | None:
    """Make a BatchSpanProcessor or BatchLogRecordProcessor count its queue-full drops exactly; returns its
    `otel.component.name`, or None when the processor is not built the way this knows (then the SDK counts)."""
    batch = getattr(processor, "_batch_processor", None)
    queue = getattr(batch, "_queue", None)
    metrics: Any = getattr(batch, "_metrics", None)
    attributes = getattr(metrics, "_standard_attrs", None)
    if (
        type(queue) is not collections.deque
        or queue.maxlen is None
        or len(queue) != 0
        or not callable(getattr(metrics, "drop_items", None))
        or not isinstance(attributes, dict)
    ):
        log.debug("queue-full drops of %r are counted by the SDK", processor)
        return None

    def count_drop() -> None:
        metrics.drop_items(1, QUEUE_FULL)

    batch._queue = _DropCountingQueue(queue.maxlen, count_drop)  # type: ignore[union-attr]
    batch._metrics = _SdkDropGuessIgnored(metrics)  # type: ignore[union-attr]
    name = attributes.get("otel.component.name")
    return str(name) if name is not None else None


__all__ = ["QUEUE_FULL", "count_drops_exactly"]
