"""Azurite for the tests (loadtest/azurite.py): skipped where it is not installed, a failure in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.azurite import Azurite, missing

__all__ = ["Azurite", "require_azurite", "running_azurite"]


def require_azurite() -> None:
    absent = missing()
    if absent:
        message = f"the blob state tests need Azurite ({absent}): run bash infra/dev/install.sh --test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def running_azurite(workspace: Path) -> Iterator[Azurite]:
    """For a fixture: `yield from running_azurite(tmp_path / "azurite")`."""
    require_azurite()
    azurite = Azurite(workspace)
    azurite.start()
    try:
        yield azurite
    finally:
        azurite.stop()
