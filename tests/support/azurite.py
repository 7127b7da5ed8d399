"""Azurite for the tests (loadtest/azurite.py): skipped where it is not installed, a failure in CI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from loadtest.azurite import Azurite, missing
from tests.support.prerequisites import missing_prerequisite

__all__ = ["Azurite", "require_azurite", "running_azurite"]


def require_azurite() -> None:
    absent = missing()
    if absent:
        missing_prerequisite(f"the blob state tests need Azurite ({absent}): run bash infra/dev/install.sh --test")


def running_azurite(workspace: Path) -> Iterator[Azurite]:
    """For a fixture: `yield from running_azurite(tmp_path / "azurite")`."""
    require_azurite()
    azurite = Azurite(workspace)
    azurite.start()
    try:
        yield azurite
    finally:
        azurite.stop()
