"""A test whose outside tool is not installed: skipped on a developer's machine, failed in CI (where install.sh
--test must have installed it)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_prerequisite(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
