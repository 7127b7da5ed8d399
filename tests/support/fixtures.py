"""Pytest fixtures for the stand-ins; import them into conftest.py to make them available."""

from collections.abc import Iterator

import pytest

from tests.support import netguard
from tests.support.channel import ChannelStandIn
from tests.support.ingestion import AZURE_SDK_OFFLINE_ENV, IngestionStandIn


@pytest.fixture
def ingestion() -> Iterator[IngestionStandIn]:
    with IngestionStandIn() as standin:
        yield standin


@pytest.fixture
def channel() -> Iterator[ChannelStandIn]:
    with ChannelStandIn() as standin:
        yield standin


@pytest.fixture
def azure_sdk_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set before creating any Azure Monitor exporter in the test."""
    for name, value in AZURE_SDK_OFFLINE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)


@pytest.fixture
def no_outside_connections() -> Iterator[None]:
    """Errors the test (at teardown) if anything tried to reach beyond 127.0.0.1 while it ran."""
    failure = ""
    try:
        with netguard.no_outside_connections():
            yield
    except AssertionError as error:
        failure = str(error)
    if failure:
        pytest.fail(failure, pytrace=False)
