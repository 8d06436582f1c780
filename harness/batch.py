"""The organizers' nightly batch: every team folder, resumable, cached, one batch per box at a time.

Every team is timed against its own reference worker, interleaved round by round inside its measurement
(harness.timekeeper), so no reference run is shared between teams. On this box the next team's image builds in
the background while the current team is measured (harness.local_engine; builds use CPUs, never the GPU). A
team whose content, harness version, spec and run settings are unchanged since its last completed result is
not run again: its result is reused and the summary says so, unless its build failed (the cause may be the
box, a mirror or the runner image rather than the team, so a failed build is always tried again) or the batch
is told to rebuild. The reference is timed only inside a team's measurement: a batch of failed builds times
nothing. One team's failure is a row, never the end of the batch.
After the teams, each box (or Ray slot) that timed any of them runs the A/A row (harness.calibration): the
reference against a copy of itself, through the same protocol; a box not proven fair flags the rows it timed.
The teams left to run and the A/A rows go to an engine (harness.engine): this box's (harness.local_engine) by
default, a Ray cluster's (harness.ray_engine) with --engine ray; everything else here is the same for both.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from harness import __version__
from harness.calibration import apply_calibration, calibration_record, write_calibration
from harness.config import HarnessError, RunConfig
from harness.engine import BatchProgress, Engine
from harness.local_engine import LocalEngine
from harness.pipeline import finish, load_team, prepare_inputs, reference_task, task_outcome
from harness.progress import TimingEvent
from harness.report import write_report
from harness.results import TeamResult, results_frame
from harness.scoring import score_team
from harness.submission import MANIFEST, Submission, team_folders_in

LOCK_NAME = "batch.lock"
RETRIED_STATUSES = ("build_failed", "harness_failed")   # never served from the cache: the box may be the cause


class SilentProgress:
    def start(self, total: int) -> None:
        pass

    def stage(self, message: str) -> None:
        pass

    def timing(self, event: TimingEvent) -> None:
        pass

    def team_done(self, result: TeamResult, cached: bool) -> None:
        pass


@dataclass
class BatchSummary:
    started_at: str
    finished_at: str = ""
    teams: int = 0
    cached: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    compliant: int = 0
    reference_runs: int = 0
    gpu: str = ""
    harness_version: str = __version__
    out_dir: str = ""
    calibration: list[dict[str, Any]] = field(default_factory=list)   # the A/A record of each box or slot


@contextmanager
def box_lock(lock_dir: Path) -> Iterator[None]:
    """Hold the box's batch lock (released by the kernel if this process dies), or say who holds it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / LOCK_NAME
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown process"
        handle.close()
        raise HarnessError(f"another batch holds this box ({holder}; lock {path}): wait for it to finish") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    handle.flush()
    try:
        yield
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def team_folders(submissions_dir: Path) -> list[Path]:
    """Every sub-folder is a team (one without a manifest becomes an invalid_submission row)."""
    if not submissions_dir.is_dir():
        raise HarnessError(f"{submissions_dir} is not a folder of team folders")
    folders = team_folders_in(submissions_dir)
    if not folders:
        raise HarnessError(f"{submissions_dir} holds no team folders (each with a {MANIFEST})")
    return folders


def run_settings_key(config: RunConfig) -> str:
    """What besides the team's content changes a result: harness, spec, data, sample size, backend, device, and
    the batch sizes timed (the spec's, or the bundled sample data's smaller ones: harness.sample_batches)."""
    inputs = hashlib.sha256()
    for task in config.spec.tasks:
        gold = Path(config.data_dir) / task.gold_file
        inputs.update(gold.read_bytes() if gold.is_file() else b"missing")
    parts = [__version__, config.spec.sha256, inputs.hexdigest(), str(config.max_examples), config.backend.name,
             config.device, ",".join(str(task.batch_size) for task in config.spec.tasks)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def cached_result(out_dir: Path, team_dir: Path, content_hash: str, settings: str) -> dict[str, Any] | None:
    """The last completed record of this team, if nothing that matters has changed since and its build worked."""
    for candidate in out_dir.glob("*/result.json"):
        try:
            record = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if (record.get("team_dir") == str(team_dir) and record.get("team_hash") == content_hash
                and record.get("settings_key") == settings and record.get("status") not in RETRIED_STATUSES):
            return record
    return None


def result_from_record(record: dict[str, Any], config: RunConfig) -> TeamResult:
    """Rebuild a TeamResult from its JSON record (the score is recomputed from the stored figures)."""
    result = TeamResult.from_dict({**record, "score": None})
    if record.get("score") is None:
        return result
    outcomes = {name: task_outcome(name, info) for name, info in result.tasks.items()}
    reference = {name: reference_task(r) for name, r in result.reference.items()}
    return replace(result, score=score_team(outcomes, reference, config.spec))


def leaderboard(results: list[TeamResult], config: RunConfig) -> pd.DataFrame:
    """Compliant teams by final score (best first), then the others by status and score, with the reason."""
    frame = results_frame(results, config.spec)
    frame["_compliant"] = frame["compliant"].astype(bool)
    frame["_score"] = pd.to_numeric(frame["score"], errors="coerce").fillna(float("-inf"))
    frame = frame.sort_values(["_compliant", "_score", "team"], ascending=[False, False, True], kind="stable")
    frame.insert(0, "rank", [str(i + 1) if c else "" for i, c in enumerate(frame["_compliant"])])
    return frame.drop(columns=["_compliant", "_score"]).reset_index(drop=True)


def run_batch(submissions_dir: Path, config: RunConfig, lock_dir: Path,
              progress: BatchProgress = SilentProgress(), reuse_results: bool = True,
              engine: Engine | None = None, calibrate: bool = True) -> BatchSummary:
    """Run every team folder and write leaderboard.csv, report.html, summary.json, calibration.json and .csv
    and per-team records.

    `reuse_results` False reruns every team even when its last result still holds (--rebuild). `engine`
    measures the teams and runs the A/A rows (harness.engine): by default a LocalEngine, one team after the
    other on this box; a RayEngine sends each team to a box slot of a Ray cluster (harness.ray_engine).
    Everything else (cache, lock, outputs) is the same either way. `calibrate` False skips the A/A row
    (--no-calibration): the calibration section then says it was not run."""
    summary = BatchSummary(started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           out_dir=str(config.out_dir))
    teams = team_folders(submissions_dir)
    summary.teams = len(teams)
    with box_lock(lock_dir):
        results = _run_teams(teams, config, progress, summary, reuse_results,
                             engine if engine is not None else LocalEngine(), calibrate)
    summary.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary.counts = {status: int(n) for status, n in pd.Series([r.status for r in results]).value_counts().items()}
    summary.compliant = sum(1 for r in results if r.score is not None and r.score.compliant)
    frame = leaderboard(results, config)
    out = config.out_dir
    frame.to_csv(out / "leaderboard.csv", index=False)
    (out / "summary.json").write_text(json.dumps(vars(summary), indent=2, default=str), encoding="utf-8")
    write_calibration(out, summary.calibration)
    write_report(frame, config.spec, out / "report.html",
                 summary={k: v for k, v in vars(summary).items() if k != "calibration"},
                 calibration=summary.calibration)
    return summary


def _run_teams(teams: list[Path], config: RunConfig, progress: BatchProgress, summary: BatchSummary,
               reuse_results: bool, engine: Engine, calibrate: bool = True) -> list[TeamResult]:
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    progress.start(len(teams))
    settings_key = run_settings_key(config)
    progress.stage("preparing inputs (labels stripped)")
    prepared = prepare_inputs(config.spec, config.data_dir, config.max_examples)
    loaded = [load_team(team, config) for team in teams]
    todo: list[tuple[TeamResult, Submission]] = []
    results: list[TeamResult] = []
    for team_dir, (result, submission) in zip(teams, loaded):
        record = (submission and reuse_results
                  and cached_result(out, team_dir.resolve(), submission.content_hash, settings_key))
        if record:
            cached = result_from_record(record, config)
            summary.cached.append(cached.team)
            results.append(cached)
            progress.team_done(cached, cached=True)
            continue
        result = replace(result, settings_key=settings_key, team_dir=str(team_dir.resolve()))
        if submission is None:
            results.append(finish(result, config, time.time(), write_csv=False))
            progress.team_done(result, cached=False)
        else:
            todo.append((result, submission))
    if not todo:
        return results
    measured = engine.measure_all(todo, config, prepared, settings_key, progress)
    summary.reference_runs += engine.reference_runs(measured)
    summary.gpu = summary.gpu or next((str(r.environment.device_name) for r in measured
                                       if r.environment.device_name), "")
    summary.calibration, measured = calibrate_boxes(measured, engine.box_of,
                                                    lambda boxes: engine.calibrate(boxes, config, progress), config,
                                                    calibrate)
    return results + measured


def timed_tonight(result: TeamResult) -> bool:
    """Whether the team was timed against the reference in this batch (a failed build never was)."""
    return bool(result.reference)


def calibrate_boxes(measured: list[TeamResult], box_of, run_aa, config: RunConfig,
                    calibrate: bool = True) -> tuple[list[dict[str, Any]], list[TeamResult]]:
    """The A/A record of every box that timed a team tonight (`run_aa(boxes)` runs them), and the rows with
    them applied to those each box timed (in the same order); with `calibrate` False, one record per box
    saying it was not run."""
    timed = [r for r in measured if timed_tonight(r)]
    boxes = list(dict.fromkeys(box_of(r) for r in timed))
    if not boxes:
        return [], measured
    records = run_aa(boxes) if calibrate else [calibration_record(box, why_not="--no-calibration") for box in boxes]
    return records, apply_calibration(measured, records, lambda r: box_of(r) if timed_tonight(r) else None,
                                      config.out_dir)

