"""Load shapes, selectable by name: how many users chat at each moment, and what throughput the shape must reach.

Pure data and arithmetic: the locustfile turns a shape into Locust ticks, the runner reads durations and targets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CHANNEL = "channel"
EXPECT_REPLIES = "expectReplies"
TRANSPORTS = (CHANNEL, EXPECT_REPLIES)


@dataclass(frozen=True)
class Stage:
    until: float  # seconds since the start of the run at which this stage ends
    users: int
    spawn_rate: float  # users started (or stopped) per second to get there


@dataclass(frozen=True)
class Shape:
    name: str
    purpose: str
    stages: tuple[Stage, ...]
    target_turns_per_second: float  # the throughput SLO: turns sent / run duration must reach it
    think_time: tuple[float, float]  # seconds a user waits between messages (uniform)

    @property
    def duration(self) -> float:
        return self.stages[-1].until

    @property
    def peak_users(self) -> int:
        return max(stage.users for stage in self.stages)

    def tick(self, elapsed: float, limit: float | None = None) -> tuple[int, float] | None:
        """(users, spawn rate) for this moment, or None once the shape (or the time limit) is over."""
        end = self.duration if limit is None else min(self.duration, limit)
        if elapsed >= end:
            return None
        stage = next(stage for stage in self.stages if elapsed < stage.until)
        return stage.users, stage.spawn_rate

    def scaled(self, users: int | None = None, duration: float | None = None) -> Shape:
        """The same shape with `users` at its peak and/or stretched to last `duration` seconds; the throughput
        target scales with the users."""
        shape = self
        if users is not None and users != self.peak_users:
            factor = users / self.peak_users
            stages = tuple(
                Stage(s.until, max(1, round(s.users * factor)), max(1.0, s.spawn_rate * factor)) for s in self.stages
            )
            shape = dataclasses.replace(
                shape, stages=stages, target_turns_per_second=self.target_turns_per_second * factor
            )
        if duration is not None and duration != self.duration:
            stretch = duration / self.duration
            shape = dataclasses.replace(
                shape, stages=tuple(dataclasses.replace(s, until=s.until * stretch) for s in shape.stages)
            )
        return shape


def _ramp(start: int, step: int, peak: int, hold: float, spawn_rate: float) -> tuple[Stage, ...]:
    levels = range(start, peak + 1, step)
    return tuple(Stage(hold * (i + 1), users, spawn_rate) for i, users in enumerate(levels))


SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape(
            "smoke",
            "A few users for a short while: does everything work, end to end?",
            (Stage(20, 5, 5),),
            target_turns_per_second=2,
            think_time=(0.5, 1.5),
        ),
        Shape(
            "steady",
            "A constant, realistic load: the baseline for dashboards and alerts.",
            (Stage(180, 50, 10),),
            target_turns_per_second=18,
            think_time=(1.0, 3.0),
        ),
        Shape(
            "ramp",
            "Users added step by step until throughput stops growing with them: the knee.",
            _ramp(start=20, step=20, peak=300, hold=15, spawn_rate=20),
            target_turns_per_second=40,
            think_time=(0.5, 1.5),
        ),
        Shape(
            "spike",
            "A sudden tenfold burst and the recovery after it.",
            (Stage(30, 10, 10), Stage(60, 100, 50), Stage(90, 10, 50)),
            target_turns_per_second=12,
            think_time=(1.0, 3.0),
        ),
        Shape(
            "soak",
            "A moderate load for a long time: memory growth and latency drift.",
            (Stage(1800, 30, 5),),
            target_turns_per_second=12,
            think_time=(1.0, 3.0),
        ),
    )
}


def get_shape(name: str) -> Shape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"unknown shape {name!r}; choose one of {', '.join(SHAPES)}") from None
