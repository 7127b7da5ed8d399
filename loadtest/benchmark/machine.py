"""The machine a benchmark ran on, written beside its figures (a figure means little without it)."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from loadtest.benchmark import wrk

PACKAGES = (
    "botbuilder-core",
    "aiohttp",
    "opentelemetry-sdk",
    "azure-monitor-opentelemetry-exporter",
    "opentelemetry-exporter-prometheus",
    "msrest",
)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    model = platform.processor() or "-"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count() or 1,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk.wrk_version(),
        "packages": {name: _version(name) for name in PACKAGES},
    }
