"""Pseudonyms: conversation and user ids leave the process only as keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


class Hasher:
    """Keyed hash (HMAC-SHA256, 128 bits shown) so ids can be counted and joined but not reversed."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key_is_ephemeral = key is None
        self._key = key or secrets.token_bytes(32)
        self._cache: dict[str, str] = {}

    def __call__(self, value: str | None) -> str:
        if not value:
            return ""
        cached = self._cache.get(value)
        if cached is None:
            # surrogatepass: a client may send lone surrogates ("\ud800") in any id
            cached = hmac.new(self._key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) >= 10_000:  # bounded: a flood of distinct ids must not grow memory
                self._cache.clear()
            self._cache[value] = cached
        return cached
