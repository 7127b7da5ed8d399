from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loadtest.model_standin import ModelStandIn
from tests.support.botserver import RunningBot, running_bot
from tests.support.channel import ChannelStandIn
from tests.support.fixtures import azure_sdk_offline, channel, ingestion, no_outside_connections
from tests.support.ingestion import IngestionStandIn

__all__ = ["azure_sdk_offline", "bot", "channel", "ingestion", "no_outside_connections"]


@pytest.fixture(autouse=True)
def _guard_network(no_outside_connections: None) -> None:
    """Every test fails if anything it ran tried to reach beyond 127.0.0.1."""


@pytest.fixture
async def bot(
    ingestion: IngestionStandIn, channel: ChannelStandIn, azure_sdk_offline: None, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    """The bot with telemetry exported to the Application Insights stand-in, text export opted in."""
    env = {"BOT_LOG_PERSONAL_INFORMATION": "true", "BOT_REPLY_TIMEOUT_SECONDS": "2"}
    async with running_bot(env, connection_string=ingestion.connection_string, storage=tmp_path / "ai") as running:
        yield running


@pytest.fixture
def model() -> Iterator[ModelStandIn]:
    """The OpenAI-compatible model stand-in (loadtest/model_standin.py) on an ephemeral 127.0.0.1 port."""
    with ModelStandIn() as standin:
        yield standin
