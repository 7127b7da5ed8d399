"""A store in the process (memory, SQLite) measured like the blob store: one observed call per read, write, delete."""

from __future__ import annotations

from typing import Any

from botbuilder.core import Storage

from bot.storage import OUTCOME_CONFLICT, OUTCOME_ERROR, StorageCall, StorageObserver, StoreTarget, is_conflict


class ObservedStorage(Storage):
    """Wraps `inner`, telling `observer` about each call; behaviour and errors are the inner store's."""

    def __init__(self, inner: Storage, system: str, observer: StorageObserver) -> None:
        super().__init__()
        self.inner = inner
        self._observer = observer
        self.target = StoreTarget(system=system, server_address="", server_port=None, container="", url="")

    async def _observed(self, operation: str, function: Any, argument: Any) -> Any:
        call = StorageCall(operation=operation, method="")
        with self._observer.observe(call, self.target):
            try:
                return await function(argument)
            except Exception as error:
                call.outcome = OUTCOME_CONFLICT if is_conflict(error) else OUTCOME_ERROR
                call.error_type = type(error).__qualname__
                raise

    async def read(self, keys: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._observed("read", self.inner.read, keys)
        return result

    async def write(self, changes: dict[str, Any]) -> None:
        await self._observed("write", self.inner.write, changes)

    async def delete(self, keys: list[str]) -> None:
        await self._observed("delete", self.inner.delete, keys)
