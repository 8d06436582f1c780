"""The A/A row: the reference timed against a second copy of itself, to prove a box (or a Ray slot) fair.

Each night, on each box or slot that timed teams, the batch runs BERT-base against BERT-base through exactly
the protocol a team goes through (harness.measurement.measure_against_reference, the reference's WorkerSpec
on both sides, the team's timing plan). Both sides run the same code on the same inputs, so the speedup
should be 1.00x: whatever the box does to one side and not the other (a slot that favours the first worker,
drift the interleaving fails to share, a noisy neighbour) shows as a speedup away from 1.

The fairness rule is an equivalence test: a box is fair when the A/A interval lies wholly inside
[1 - tolerance, 1 + tolerance] (1.00 +- 3%): the box has shown, at the spec's confidence, that it biases
neither side by more than the tolerance. It is unfair when the interval lies wholly outside that band (a
bias beyond the tolerance is shown), and undecided otherwise: the interval straddles a bound, because it is
too wide to tell (half-width above the tolerance) or because it sits off-centre. Undecided is flagged like
unfair: a box that cannot show it is fair has not proven it, and a team 3% from a limit deserves to know.
Every team row the box timed that night carries a flag with the A/A figures; so do they when the A/A could
not run (a check that cannot run says so). The second copy is harness code: no team-only check (memory,
caching, parameter limits) applies to it; it only yields the interval.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness import stats
from harness.backends.base import Built
from harness.box import round_snapshot
from harness.config import HarnessError, RunConfig
from harness.gpu import GpuMonitor
from harness.measurement import Measured, ReferenceFailed, measure_against_reference
from harness.pipeline import PreparedData, prepare_inputs, refuse_busy_gpu, reference_worker, worker_threads
from harness.results import TeamResult, write_result_json
from harness.safe_files import fresh_dir, write_new_text
from harness.timekeeper import TimingPlan

TOLERANCE = 0.03                     # a fair box biases neither side by more than 3%
CALIBRATION_DIR = "@calibration"     # OUT/@calibration: logs of the A/A run; "@" is in no team name
FLAGGED_VERDICTS = ("unfair", "undecided", "failed")
_SLACK = 1e-9                        # bounds are inclusive: an interval ending at exactly 1.03 is inside


def judge(low: float, high: float, tolerance: float = TOLERANCE) -> tuple[str, str]:
    """(verdict, reason) of an A/A interval [low, high]: fair, unfair or undecided (see the module's rule)."""
    floor, ceiling = 1 - tolerance, 1 + tolerance
    band = f"1.00 ± {tolerance:.0%} [{floor:.2f}, {ceiling:.2f}]"
    half_width = (high - low) / 2
    if floor - _SLACK <= low and high <= ceiling + _SLACK:
        return "fair", f"the interval lies inside {band}"
    if low > ceiling + _SLACK:
        return "unfair", f"the interval lies above {band}: the box favours the second worker (the team's side)"
    if high < floor - _SLACK:
        return "unfair", f"the interval lies below {band}: the box favours the first worker (the reference's side)"
    if half_width > tolerance:
        return "undecided", (f"the interval straddles {band} and is too wide to tell (half-width "
                             f"{half_width:.1%} against the {tolerance:.0%} tolerance)")
    return "undecided", f"the interval straddles a bound of {band}: a bias beyond {tolerance:.0%} is not ruled out"


def calibration_record(box: str, interval: stats.Interval | None = None, tolerance: float = TOLERANCE,
                       why_not: str = "", failed: bool = False, **extra: Any) -> dict[str, Any]:
    """The `calibration` record (BRIEF's shared name): figures, verdict and the box they belong to.

    `fair` is True or False once an A/A ran, False when it failed (the box is not proven fair), None when it
    was not run on purpose (--no-calibration)."""
    record: dict[str, Any] = {"box": box, "speedup": None, "low": None, "high": None, "half_width": None,
                              "tolerance": tolerance, "confidence": None, "ran": False, "verdict": "not_run",
                              "fair": None, "reason": "", "why_not": why_not}
    if interval is not None:
        verdict, reason = judge(interval.low, interval.high, tolerance)
        record.update(speedup=interval.point, low=interval.low, high=interval.high,
                      half_width=interval.half_width, confidence=interval.confidence, ran=True,
                      verdict=verdict, fair=verdict == "fair", reason=reason)
    elif failed:
        record.update(verdict="failed", fair=False, reason=f"the A/A run failed: {why_not}")
    record.update(extra)
    return record


def calibration_flag(record: dict[str, Any]) -> str | None:
    """The flag a team row timed on this box gets, naming the A/A figures; None when the box is fair or the
    A/A was not run on purpose."""
    if record.get("verdict") not in FLAGGED_VERDICTS:
        return None
    if record["verdict"] == "failed":
        return (f"box not calibrated: the A/A run (BERT-base against itself) on {record['box']} failed: "
                f"{record['why_not']}")
    return (f"box not proven fair: A/A (BERT-base against itself) on {record['box']} "
            f"{record['speedup']:.3f}x [{record['low']:.3f}, {record['high']:.3f}], {record['verdict']}: "
            f"{record['reason']}")


def aa_interval(measured: Measured, tasks: Iterable[str], confidence: float) -> stats.Interval:
    """The A/A speedup over every task, from all rounds of both sides (no caching audit: both are harness)."""
    copy_rounds, ref_rounds = [], []
    for name in tasks:
        copy, ref = measured.tasks.get(name, {}), measured.reference.get(name, {})
        if not copy.get("ok") or not ref.get("rounds_s"):
            raise HarnessError(f"{name}: {copy.get('error') or 'not timed on both sides'}")
        copy_rounds.append(copy["rounds_s"])
        ref_rounds.append(ref["rounds_s"])
    return stats.speedup_interval(copy_rounds, ref_rounds, confidence=confidence)


def local_box() -> str:
    """This box's name in the calibration section (the local engine: the host the batch runs on)."""
    return socket.gethostname()


def aa_plan(spec, run_seed: int) -> TimingPlan:
    """The team's timing plan with the GPU target at half the tolerance: an A/A timed only to +-3% could sit
    inside [0.97, 1.03] only if centred exactly, so a fair box would read undecided most nights. Half leaves
    room for a bias of up to 1.5% to read fair. Still bounded by max_rounds and max_timing_s; on a CPU (no
    target there) the plan is the team's."""
    return replace(TimingPlan.from_spec(spec, run_seed), target_half_width=TOLERANCE / 2)


def run_calibration(config: RunConfig, prepared: PreparedData, ref_built: Built, box: str,
                    work: Path | None = None) -> dict[str, Any]:
    """Time the reference against a second copy of itself on this box; its calibration record. Never raises
    for a failure of the run: the record says it failed, and why."""
    spec, started = config.spec, time.time()
    work = work or config.out_dir / CALIBRATION_DIR
    run_seed = secrets.randbits(32)
    plan = aa_plan(spec, run_seed)
    reference = reference_worker(spec, ref_built, plan)
    copy = replace(reference, name="team")    # the timekeeper's second side; harness code, not a team's
    extra: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "tasks": list(spec.task_names), "logs": str(work), "run_seed": run_seed}
    try:
        fresh_dir(work)                       # last night's logs go; nothing left there is written through
        busy = refuse_busy_gpu(config)
        with GpuMonitor() as gpu:
            measured, _ = measure_against_reference(
                config.backend, copy, reference, spec, prepared.inputs, spec.task_names,
                plan, config.device, worker_threads(spec, plan), work,
                work / "predictions", round_snapshot)
        if measured.timed_out or measured.error:
            raise HarnessError(measured.timed_out or measured.error)
        interval = aa_interval(measured, spec.task_names, plan.confidence)
    except (HarnessError, ReferenceFailed) as exc:
        return calibration_record(box, why_not=str(exc), failed=True, duration_s=round(time.time() - started, 3),
                                  **extra)
    except Exception as exc:           # a harness bug: the calibration says so, the batch goes on
        return calibration_record(box, why_not=f"{type(exc).__name__}: {exc}", failed=True,
                                  duration_s=round(time.time() - started, 3), **extra)
    rounds = {name: len(measured.reference[name]["rounds_s"]) for name in spec.task_names}
    notes = [*gpu.flags(), *([f"timed although {busy}"] if busy else [])]
    return calibration_record(box, interval, rounds=rounds, device=measured.environment.get("device"),
                              device_name=measured.environment.get("device_name"), notes=notes,
                              gpu=gpu.summary(), duration_s=round(time.time() - started, 3), **extra)


def calibrate_box(config: RunConfig) -> dict[str, Any]:
    """`harness doctor --calibrate`: the A/A row on this box, alone (inputs prepared, reference built here).
    Its logs go to OUT/@calibration."""
    prepared = prepare_inputs(config.spec, config.data_dir, config.max_examples)
    ref_built = config.backend.build_reference(config.reference_dir, config.out_dir / "reference")
    if not ref_built.ok:
        raise HarnessError(f"the reference did not build: {ref_built.error} (see {ref_built.log_path})")
    return run_calibration(config, prepared, ref_built, local_box())


def calibration_line(record: dict[str, Any]) -> str:
    """One line for a person: where, the figures, the verdict and why."""
    if not record.get("ran"):
        return f"A/A on {record['box']}: {record['verdict']}: {record.get('why_not') or record.get('reason')}"
    return (f"A/A on {record['box']}: {record['speedup']:.3f}x [{record['low']:.3f}, {record['high']:.3f}] "
            f"({record['confidence']:.0%} interval, half-width {record['half_width']:.1%}, tolerance "
            f"{record['tolerance']:.0%}): {record['verdict']}: {record['reason']}")


def apply_calibration(results: Iterable[TeamResult], calibrations: list[dict[str, Any]], box_of,
                      out_dir: Path) -> list[TeamResult]:
    """`results`, each team row timed tonight given its box's calibration record and, when the box was not
    proven fair, a flag naming the A/A figures, its record written again. `box_of(result)` names the box a
    row was timed on (None: not timed tonight). Each record learns how many rows its box timed and flagged
    (rows_timed, rows_flagged)."""
    results = list(results)
    by_box = {record["box"]: record for record in calibrations}
    placed = {index: by_box[box] for index, result in enumerate(results) if (box := box_of(result)) in by_box}
    for record in calibrations:
        on_box = sum(1 for r in placed.values() if r is record)
        record.update(rows_timed=on_box, rows_flagged=on_box if calibration_flag(record) else 0)
    for index, record in placed.items():
        flag = calibration_flag(record)
        results[index] = replace(results[index], calibration=dict(record),
                                 flags=(*results[index].flags, *([flag] if flag else [])))
        write_result_json(results[index], out_dir / results[index].team / "result.json")
    return results


CSV_COLUMNS = ["box", "verdict", "fair", "speedup", "low", "high", "half_width", "tolerance", "confidence",
               "rows_timed", "rows_flagged", "device_name", "reason", "why_not"]


def write_calibration(out_dir: Path, calibrations: list[dict[str, Any]]) -> None:
    """calibration.json (every record in full) and calibration.csv (one row per box) beside leaderboard.csv."""
    write_new_text(out_dir / "calibration.json",
                   json.dumps({"calibration": calibrations}, ensure_ascii=False, indent=2, default=str))
    frame = pd.DataFrame([{c: record.get(c) for c in CSV_COLUMNS} for record in calibrations], columns=CSV_COLUMNS)
    frame.to_csv(out_dir / "calibration.csv", index=False)
