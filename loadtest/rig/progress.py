"""The lines a long run prints as it goes, `[tag] message`, flushed at once (a pipe would otherwise hold them).

`python -m loadtest` echoes the lines of its Locust child that start with `[progress]`, so the tag is part of the
contract between the two processes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressLog:
    tag: str

    def line(self, message: str) -> None:
        print(f"{self.prefix} {message}", flush=True)

    @property
    def prefix(self) -> str:
        return f"[{self.tag}]"


# The runs that print such lines, each with its tag.
LOADTEST = ProgressLog("loadtest")  # python -m loadtest
LOCUST = ProgressLog("progress")  # the locustfile, in Locust's process: echoed by python -m loadtest
BENCHMARK = ProgressLog("benchmark")  # python -m loadtest.benchmark
