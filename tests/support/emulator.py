"""Drives the bot's messaging endpoint the way the Bot Framework Emulator does."""

import json
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, NamedTuple, Self

import aiohttp

from loadtest.rig import activities
from loadtest.rig.activities import Activity


class BotResponse(NamedTuple):
    status: int
    body: Any  # decoded JSON, else text, else None for an empty body


class EmulatorClient:
    """Posts activities to `bot_url` claiming the conversation lives at `service_url`.

    Use as `async with EmulatorClient(...) as emulator:` or call `close()`; a session passed in is not closed.
    """

    def __init__(
        self,
        bot_url: str,
        service_url: str,
        *,
        channel_id: str = "emulator",
        conversation_id: str | None = None,
        user_id: str | None = None,
        user_name: str = "User",
        authorization: str | None = None,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.bot_url = bot_url
        self.service_url = service_url
        self.channel_id = channel_id
        self.conversation_id = conversation_id or f"{uuid.uuid4().hex}|livechat"
        self.user_id = user_id or uuid.uuid4().hex
        self.user_name = user_name
        self.authorization = authorization
        self.headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def user(self) -> dict[str, str]:
        return {"id": self.user_id, "name": self.user_name}

    @property
    def address(self) -> activities.Address:
        return activities.Address(self.channel_id, self.service_url, self.conversation_id, self.user)

    def activity(self, type: str, text: str | None = None, **fields: Any) -> Activity:
        """Build an Activity as JSON (camelCase keys); `fields` are added or override defaults."""
        return self.address.activity(type, text, **fields)

    async def post(self, activity: Activity, headers: Mapping[str, str] | None = None) -> BotResponse:
        """POST an activity to the bot; extra `headers` (e.g. `traceparent`) apply to this request only."""
        merged = {**self.headers, **(headers or {})}
        if self.authorization is not None:
            merged.setdefault("Authorization", self.authorization)
        session = self._get_session()
        async with session.post(self.bot_url, json=activity, headers=merged) as response:
            raw = await response.read()
            return BotResponse(response.status, _decode(raw))

    async def conversation_update(self, headers: Mapping[str, str] | None = None, **fields: Any) -> BotResponse:
        update = self.address.conversation_update(**fields)
        return await self.post(update, headers)

    async def send(self, text: str, headers: Mapping[str, str] | None = None, **fields: Any) -> BotResponse:
        return await self.post(self.activity("message", text, **fields), headers)

    async def expect_replies(self, text: str, headers: Mapping[str, str] | None = None, **fields: Any) -> BotResponse:
        """Send with deliveryMode "expectReplies": the bot answers inline with `{"activities": [...]}`."""
        return await self.send(text, headers, deliveryMode="expectReplies", **fields)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
