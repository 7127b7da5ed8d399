"""Where conversation and user state live: `BOT_STATE_STORE` = memory | sqlite | blob (docs/scaling.md).

The stores implement botbuilder's `Storage` with its e-tag contract: an item read carries `e_tag`; writing it back
with that e-tag fails with `StateConflict` if another writer changed the item meanwhile; `e_tag` `"*"` (or none)
overwrites. `bot.storage.turns.ConversationTurnGuard` turns a conflict into a rerun of the turn.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from botbuilder.core import Storage, TurnContext

    from bot.settings import Settings

STORE_MEMORY = "memory"
STORE_SQLITE = "sqlite"
STORE_BLOB = "blob"
STORES = (STORE_MEMORY, STORE_SQLITE, STORE_BLOB)

OUTCOME_SUCCESS = "success"
OUTCOME_NOT_FOUND = "not_found"
OUTCOME_CONFLICT = "conflict"
OUTCOME_ERROR = "error"


class StateConflict(KeyError):
    """The item changed since it was read (a stale e-tag: HTTP 412); a KeyError, as MemoryStorage raises."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "Etag conflict"


class StateStoreError(RuntimeError):
    """The state store failed (unreachable, refused, malformed data). The message names the store and the cause."""


@dataclass(frozen=True)
class StoreTarget:
    """Where a store keeps its items, as telemetry describes it (no item names: they hold conversation ids)."""

    system: str
    server_address: str
    server_port: int | None
    container: str
    url: str


@dataclass
class StorageCall:
    """One call to the store's backend; the store fills in how it ended."""

    operation: str
    method: str
    status_code: int | None = None
    outcome: str = OUTCOME_SUCCESS
    error_type: str | None = None


class StorageObserver(Protocol):
    """Told about every backend call and every turn the guard reran or skipped (telemetry/storage.py)."""

    def observe(self, call: StorageCall, target: StoreTarget) -> contextlib.AbstractContextManager[None]: ...

    def rerun(self, context: TurnContext) -> None: ...

    def redelivery(self, context: TurnContext) -> None: ...


class NoObserver:
    @contextlib.contextmanager
    def observe(self, call: StorageCall, target: StoreTarget) -> Iterator[None]:
        yield

    def rerun(self, context: TurnContext) -> None:
        pass

    def redelivery(self, context: TurnContext) -> None:
        pass


# Keys a turn has read as absent, while it runs (set by bot.storage.turns for each run of a turn). botbuilder reads
# an empty state again at every use; a network store answers those reads from here instead of asking again. A key
# another instance creates meanwhile is still safe: this turn's write of it is a create, which then conflicts.
ABSENT_IN_TURN: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("absent_in_turn", default=None)


def is_conflict(error: BaseException) -> bool:
    """A stale e-tag from any botbuilder storage: ours raise StateConflict, MemoryStorage a KeyError saying so."""
    return isinstance(error, StateConflict) or (
        isinstance(error, KeyError) and str(error.args[0] if error.args else "").startswith("Etag conflict")
    )


def build_storage(settings: Settings, observer: StorageObserver | None = None) -> Storage | None:
    """The store `settings` ask for; None for memory (the app then makes botbuilder's MemoryStorage)."""
    if settings.state_store == STORE_BLOB:
        from bot.storage.blob import BlobStateStorage

        return BlobStateStorage.from_settings(settings, observer)
    if settings.state_store == STORE_SQLITE and settings.state_db:
        from bot.state import SqliteStateStorage

        return SqliteStateStorage(settings.state_db)
    return None


__all__ = [
    "ABSENT_IN_TURN",
    "OUTCOME_CONFLICT",
    "OUTCOME_ERROR",
    "OUTCOME_NOT_FOUND",
    "OUTCOME_SUCCESS",
    "STORES",
    "STORE_BLOB",
    "STORE_MEMORY",
    "STORE_SQLITE",
    "NoObserver",
    "StateConflict",
    "StateStoreError",
    "StorageCall",
    "StorageObserver",
    "StoreTarget",
    "build_storage",
    "is_conflict",
]
