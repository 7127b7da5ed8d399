"""Data the bot keeps in conversation and user state, and where it keeps it when processes share it."""

from __future__ import annotations

import asyncio
import copy
import fcntl
import os
import pickle
import sqlite3
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botbuilder.core import Storage

from bot.storage import StateConflict

DIALOG_STATE_PROPERTY = "DialogState"
FEEDBACK_PROFILE_PROPERTY = "FeedbackProfile"


@dataclass
class FeedbackProfile:
    """What the user told the feedback dialog; the comment text itself is never kept."""

    count: int = 0
    last_rating: int | None = None
    last_had_comment: bool = False

    def record(self, rating: int, has_comment: bool) -> None:
        self.count += 1
        self.last_rating = rating
        self.last_had_comment = has_comment

    # Stored as a plain dict so that any botbuilder storage (memory, blob, Cosmos DB) can serialize it.
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FeedbackProfile:
        if not isinstance(data, dict):
            return cls()
        rating = data.get("last_rating")
        return cls(
            count=int(data.get("count", 0)),
            last_rating=int(rating) if rating is not None else None,
            last_had_comment=bool(data.get("last_had_comment", False)),
        )


class SqliteStateStorage(Storage):
    """botbuilder `Storage` in a SQLite file shared by the processes of one host (`BOT_STATE_DB`).

    The worker processes of `python -m bot --workers N` share it: a conversation's turns land on whichever worker the
    kernel picked for the connection. Same contract as `MemoryStorage`: read returns stored items, write refuses an
    item whose e-tag is neither `*` nor the stored one (KeyError "Etag conflict"), every write stores a new e-tag.
    Unlike `MemoryStorage`, an item without e-tag (read as absent) is refused if it exists by then, as in the blob
    store (bot/storage/blob.py): the first turns of a conversation must not overwrite each other.
    Items are pickled: the file is private to the bot (created 0600), as the memory of `MemoryStorage` is. Its calls
    run off the event loop, on one thread per process. Across hosts use a network storage (Cosmos DB, Blob storage).
    """

    def __init__(self, path: str | os.PathLike[str], busy_timeout_ms: int = 5000) -> None:
        super().__init__()
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-storage")
        if not Path(self.path).exists():
            Path(self.path).touch(mode=0o600)
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute("PRAGMA synchronous = NORMAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, etag TEXT NOT NULL, value BLOB NOT NULL)"
        )
        # Writers queue on a lock file: SQLite's own busy handler polls with sleeps of up to 100 ms.
        self._write_lock = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def read(self, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        return dict(await self._run(self._read, list(keys)))

    async def write(self, changes: dict[str, Any]) -> None:
        if changes is None:
            raise Exception("Changes are required when writing")
        if changes:
            await self._run(self._write, dict(changes))

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self._run(self._delete, list(keys))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._connection.close()
        os.close(self._write_lock)

    def _read(self, keys: list[str]) -> dict[str, Any]:
        marks = ",".join("?" * len(keys))
        rows = self._connection.execute(f"SELECT key, value FROM state WHERE key IN ({marks})", keys).fetchall()
        return {key: pickle.loads(value) for key, value in rows}

    def _write(self, changes: dict[str, Any]) -> None:
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            self._write_locked(changes)
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def _write_locked(self, changes: dict[str, Any]) -> None:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for key, change in changes.items():
                new_value = copy.deepcopy(change)
                row = connection.execute("SELECT etag FROM state WHERE key = ?", (key,)).fetchone()
                stored_etag = row[0] if row else None
                new_etag = new_value.get("e_tag") if isinstance(new_value, dict) else getattr(new_value, "e_tag", None)
                if new_etag == "":
                    raise Exception("storage.write(): etag missing")
                if stored_etag is not None and new_etag is not None and new_etag not in ("*", stored_etag):
                    raise StateConflict(f"Etag conflict.\nOriginal: {new_etag}\r\nCurrent: {stored_etag}")
                if stored_etag is not None and new_etag is None:  # read as absent, created meanwhile by another
                    raise StateConflict("Etag conflict: the item was created since it was read")
                etag = uuid.uuid4().hex
                if isinstance(new_value, dict):
                    new_value["e_tag"] = etag
                else:
                    new_value.e_tag = etag
                blob = pickle.dumps(new_value, protocol=pickle.HIGHEST_PROTOCOL)
                connection.execute(
                    "INSERT INTO state (key, etag, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET etag = excluded.etag, value = excluded.value",
                    (key, etag, blob),
                )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def _delete(self, keys: list[str]) -> None:
        marks = ",".join("?" * len(keys))
        self._connection.execute(f"DELETE FROM state WHERE key IN ({marks})", keys)
