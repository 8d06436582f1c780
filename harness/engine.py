"""Where a batch's teams are measured: the engine interface the batch calls, and what the batch tells whoever
watches it.

harness.batch keeps the cache, the lock and the outputs; an engine measures the teams left to run (each team's
build, measurement against its own reference worker and scoring, its row and OUT/TEAM written) and then runs the
A/A row on each box or slot that timed any of them (harness.calibration). Two engines: harness.local_engine (one
team after the other on this box, the default) and harness.ray_engine (each team on a box slot of a Ray cluster).
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.config import RunConfig
from harness.pipeline import PreparedData
from harness.progress import TimingEvent
from harness.results import TeamResult
from harness.submission import Submission


class BatchProgress(Protocol):
    """What the batch tells whoever watches it (the CLI draws it with rich)."""

    def start(self, total: int) -> None: ...

    def stage(self, message: str) -> None: ...

    def timing(self, event: TimingEvent) -> None:
        """Where the current team's timing stands (harness.progress), between timed windows only."""

    def team_done(self, result: TeamResult, cached: bool) -> None: ...


class Engine(Protocol):
    """Somewhere to measure the teams a batch must run."""

    def measure_all(self, todo: list[tuple[TeamResult, Submission]], config: RunConfig, prepared: PreparedData,
                    settings_key: str, progress: BatchProgress) -> list[TeamResult]:
        """Each team's build, measurement and scoring, its row and OUT/TEAM written, in the order they finish.
        `prepared`: the batch's label-free inputs (an engine that measures elsewhere prepares its own from the
        same data folder); `settings_key`: what the rows record as their settings (harness.batch)."""
        ...

    def reference_runs(self, measured: list[TeamResult]) -> int:
        """How many of `measured` were timed against the reference (the summary's reference_runs)."""
        ...

    def box_of(self, result: TeamResult) -> str:
        """The box or slot a measured team was timed on (the calibration section's `box`)."""
        ...

    def calibrate(self, boxes: list[str], config: RunConfig, progress: BatchProgress) -> list[dict[str, Any]]:
        """The A/A record of each of `boxes`, each run where its teams were timed (after measure_all)."""
        ...
