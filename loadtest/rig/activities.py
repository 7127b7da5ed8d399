"""Bot Framework activities as a channel posts them (JSON, camelCase keys), with the one bot account every client of
the tests and the load test addresses.

The fields are those the Emulator sends (Bot Framework Activity schema:
https://github.com/microsoft/botframework-sdk/blob/main/specs/botframework-activity/botframework-activity.md)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Activity = dict[str, Any]

BOT_ACCOUNT: Mapping[str, str] = {"id": "bot", "name": "Bot"}
EXPECT_REPLIES = "expectReplies"


def timestamps() -> tuple[str, str]:
    """(`timestamp` in UTC, `localTimestamp` with the local offset), to the millisecond, as the Emulator writes them."""
    now = datetime.now(UTC)
    return (
        now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        now.astimezone().isoformat(timespec="milliseconds"),
    )


def activity(
    type: str,
    *,
    channel_id: str,
    service_url: str,
    conversation_id: str,
    user: Mapping[str, str],
    text: str | None = None,
    **fields: Any,
) -> Activity:
    """An activity from `user` (id, name) to the bot; `fields` are added or override the defaults (e.g. `id`,
    `deliveryMode`)."""
    timestamp, local_timestamp = timestamps()
    built: Activity = {
        "type": type,
        "id": uuid.uuid4().hex,
        "timestamp": timestamp,
        "localTimestamp": local_timestamp,
        "channelId": channel_id,
        "serviceUrl": service_url,
        "from": {**user, "role": "user"},
        "recipient": {**BOT_ACCOUNT, "role": "bot"},
        "conversation": {"id": conversation_id},
        "locale": "en-US",
    }
    if text is not None:
        built["text"] = text
        built["textFormat"] = "plain"
    built.update(fields)
    return built


def members_added(user: Mapping[str, str]) -> list[dict[str, str]]:
    """`membersAdded` of the conversationUpdate a channel sends when a user opens a conversation: the bot and them."""
    return [dict(BOT_ACCOUNT), dict(user)]


@dataclass(frozen=True)
class Address:
    """Where one user's activities go: the channel, the serviceUrl the bot replies to, the conversation."""

    channel_id: str
    service_url: str
    conversation_id: str
    user: Mapping[str, str]

    def activity(self, type: str, text: str | None = None, **fields: Any) -> Activity:
        return activity(
            type,
            channel_id=self.channel_id,
            service_url=self.service_url,
            conversation_id=self.conversation_id,
            user=self.user,
            text=text,
            **fields,
        )

    def conversation_update(self, **fields: Any) -> Activity:
        """What a channel sends when the user opens the conversation."""
        return self.activity("conversationUpdate", membersAdded=members_added(self.user), **fields)
