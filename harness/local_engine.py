"""`harness batch --engine local` (the default): the teams one after the other on this box.

Each team is timed against its own reference worker, interleaved round by round inside its measurement
(harness.timekeeper); the reference is built once for the batch, and the next team's image builds in the
background while the current team is measured (builds use CPUs, never the GPU). The A/A row
(harness.calibration) then runs here, on the same inputs and the same reference build. harness.engine is
the interface; harness.batch keeps the cache, the lock and the outputs.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from harness.backends.base import Built
from harness.calibration import local_box, run_calibration
from harness.config import HarnessError, RunConfig
from harness.engine import BatchProgress
from harness.pipeline import PreparedData, build_team, built_team_row
from harness.progress import no_progress
from harness.results import TeamResult
from harness.submission import Submission


class LocalEngine:
    """harness.engine's Engine on this box: one team after the other, then the A/A row here."""

    def __init__(self) -> None:
        self._box = local_box()
        self._built = 0                       # teams whose build worked: each was timed against the reference
        self._inputs: tuple[PreparedData, Built] | None = None   # what measure_all timed on, for calibrate

    def measure_all(self, todo: list[tuple[TeamResult, Submission]], config: RunConfig, prepared: PreparedData,
                    settings_key: str, progress: BatchProgress) -> list[TeamResult]:
        """One team after the other, each against its own interleaved reference; the next build runs meanwhile.
        `settings_key` is already on each row (harness.batch)."""
        ref_built = config.backend.build_reference(config.reference_dir, config.out_dir / "reference")
        self._inputs, self._built = (prepared, ref_built), 0
        done: list[TeamResult] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="build") as builder:
            pending: Future[tuple[TeamResult, Built]] = builder.submit(build_team, *todo[0], config)
            for index, (_, submission) in enumerate(todo):
                started = time.time()
                progress.stage(f"{submission.team}: building")
                result, built = pending.result()
                if index + 1 < len(todo):
                    pending = builder.submit(build_team, *todo[index + 1], config)
                row = built_team_row(result, submission, built, config, prepared, lambda: ref_built, started,
                                     progress.stage, getattr(progress, "timing", no_progress), in_batch=True)
                done.append(row)
                self._built += built.ok
                progress.team_done(row, cached=False)
        return done

    def reference_runs(self, measured: list[TeamResult]) -> int:
        """The teams that built (each was measured against the reference, or its row says why not)."""
        return self._built

    def box_of(self, result: TeamResult) -> str:
        """This box (its host name), for every team."""
        return self._box

    def calibrate(self, boxes: list[str], config: RunConfig, progress: BatchProgress) -> list[dict[str, Any]]:
        """The A/A row on this box, on the inputs and the reference build the teams were timed on."""
        if self._inputs is None:
            raise HarnessError("the local engine calibrates the box its teams were timed on: measure_all first")
        prepared, ref_built = self._inputs
        records = []
        for box in boxes:
            progress.stage(f"A/A: the reference against a copy of itself on {box}")
            records.append(run_calibration(config, prepared, ref_built, box))
        return records
