"""Workaround: the signing keys of Bot Framework tokens are fetched with a blocking call on the event loop.

Defect (botbuilder 4.17.1): `_OpenIdMetadata` fetches the keys with `requests.get` on the event loop and no timeout
(on the first authenticated request, then daily): a slow metadata endpoint freezes every conversation.
Why this way: the same fetch runs in a worker thread, with a timeout.
Tests that fail without it:
- tests/test_compat.py::test_signing_keys_are_fetched_on_a_thread_with_a_timeout
- tests/test_auth.py::test_a_slow_metadata_endpoint_does_not_block_other_requests
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import requests
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata

OPENID_TIMEOUT_SECONDS = 10.0


def _fetch_signing_keys(metadata_url: str) -> list[dict[str, Any]]:
    configuration = requests.get(metadata_url, timeout=OPENID_TIMEOUT_SECONDS)
    configuration.raise_for_status()
    keys = requests.get(configuration.json()["jwks_uri"], timeout=OPENID_TIMEOUT_SECONDS)
    keys.raise_for_status()
    return list(keys.json()["keys"])


async def _refresh_off_the_loop(self: _OpenIdMetadata) -> None:
    if self.last_updated > datetime.now() - timedelta(minutes=1):
        return  # refreshed meanwhile by a concurrent request
    self.keys = await asyncio.get_running_loop().run_in_executor(None, _fetch_signing_keys, self.url)
    self.last_updated = datetime.now()


def patch_openid_metadata_fetch() -> None:
    _OpenIdMetadata._refresh = _refresh_off_the_loop
