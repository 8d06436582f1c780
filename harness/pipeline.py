"""One team, end to end: validate, build, measure against the interleaved reference, score, write the row.

The README's "How the numbers are made", in code, for one team: run_team is `harness run` (and each team a
Ray node runs); the batch shares its sequence from the build on (built_team_row). Every failure of the
team's (bad manifest, failed setup, crash, timeout, malformed predictions) becomes a status and a one-line
reason on its row; only a failure of the harness itself (the reference cannot run, the data cannot be read)
raises HarnessError (harness.config).
"""

from __future__ import annotations

import os
import secrets
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from harness import __version__
from harness.backends.base import Backend, Built
from harness.crosscheck import unaccounted_files
from harness.data_files import maps_note
from harness.box import cpu_description, round_snapshot
from harness.config import HarnessError, RunConfig
from harness.gpu import GpuMonitor, gpu_busy_reason
from harness.measurement import ReferenceFailed, WorkerSpec, measure_against_reference, worker_log
from harness.paths import REFERENCE_PREDICTOR
from harness.progress import Progress, no_progress
from harness.records import Environment, MeasuredSide, ReferenceResult, TaskResult, side_timing
from harness.results import TeamResult, results_frame, write_result_json, write_results_csv
from harness.row_flags import half_width_flags, measurement_flags
from harness.safe_files import fresh_dir
from harness.scoring import ReferenceTask, TaskOutcome, borderline_flags, ranked_score, score_team
from harness.spec import Spec, TaskSpec
from harness.submission import Submission, SubmissionError, folder_label, load_submission
from harness.tasks import TaskDataError, get_task
from harness.timekeeper import TimingPlan

Say = Callable[[str], None]


@dataclass
class PreparedData:
    """Label-free inputs (only the timekeeper holds them; it sends them batch by batch) and the gold."""

    inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    gold: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def prepare_inputs(spec: Spec, data_dir: Path, max_examples: int | None) -> PreparedData:
    """Strip labels from every task's gold file; only these inputs ever reach team code."""
    prepared = PreparedData()
    for task_spec in spec.tasks:
        task = get_task(task_spec.name)
        try:
            gold = task.read_gold(Path(data_dir) / task_spec.gold_file)
        except TaskDataError as exc:
            raise HarnessError(f"{exc} (data folder {data_dir}: pass --data-dir with the spec's gold files)") from exc
        if max_examples is not None:
            gold = gold[:max_examples]
        if not gold:
            raise HarnessError(f"{task_spec.gold_file} in {data_dir} holds no examples")
        prepared.gold[task_spec.name] = gold
        prepared.inputs[task_spec.name] = task.strip_labels(gold)
    return prepared


def task_outcome(name: str, info: TaskResult) -> TaskOutcome:
    """The scoring view of one task's record in TeamResult.tasks (fresh or read back from result.json)."""
    if not info.ok:
        return TaskOutcome(name, error=str(info.error or "failed"))
    rounds = tuple(tuple(r) for r in info.timing.get("scored_rounds_s", ()))
    target = info.timing.get("target_half_width") or 0.0
    return TaskOutcome(name, info.score, int(info.params or 0), float(info.time_s or 0.0), rounds=rounds,
                       target_half_width=float(target))


def reference_task(info: ReferenceResult) -> ReferenceTask:
    return ReferenceTask(int(info.params), info.time_s, tuple(tuple(r) for r in info.rounds_s))


def task_info(task: TaskSpec, gold: list[dict[str, Any]], measured: MeasuredSide | None,
              predictions: list[dict[str, Any]] | None) -> TaskResult:
    """Score one task's first-sight predictions (held in host memory) against gold, ranked by the spec's
    metric (scoring.ranked_score); the TeamResult.tasks record."""
    if measured is None:
        return TaskResult.failure("not run")
    if not measured.get("ok") or predictions is None:
        return TaskResult.failure(measured.get("error"))
    scored = ranked_score(task, gold, predictions)
    params = measured["params"]
    timing = side_timing({k: v for k, v in measured.items() if k not in ("ok", "params")})
    return TaskResult(score=scored.score, metrics=dict(scored.metrics), problems=tuple(scored.problems),
                      n_gold=scored.n_gold, n_pred=scored.n_pred, params=params["counted"], param_report=params,
                      dtypes=tuple(params.get("dtypes", [])), time_s=measured["time_s"],
                      time_per_example_s=measured["time_per_example_s"], timing=timing,
                      caching_suspected=measured["caching_suspected"])


def reference_result(measured: MeasuredSide) -> ReferenceResult:
    """The reference's record of one task: its counted parameters, its verified precision, its timing."""
    rest = {k: v for k, v in measured.items() if k not in ("params", "precision")}
    return ReferenceResult(params=measured["params"]["counted"], timing=side_timing(rest),
                           precision=measured.get("precision"))


def weight_file_flags(backend: Backend, built: Built, counts: list[int], limit: int,
                      code: dict | None = None) -> list[str]:
    """weights_unaccounted when the weight files of the built environment imply far more than was counted:
    a local build's whole folder (the team's copy and its venv), or every place a Docker build could write.
    Every data file counts; code is what the team's workers mapped executable (`code`, read by the host
    after load: data_files.executable_mappings; None when unread: then no file is code, and the flag says so).

    The files hold every task's model, so they are set against the sum of the per-task counts (a team with
    one model per task ships four): generous to a team whose tasks share an encoder, never unfair to one
    whose tasks do not."""
    if not counts or max(counts) >= limit:
        return []    # nothing counted, or over the limit anyway
    files = backend.weight_file_bytes(built, code) if code is not None else backend.weight_file_bytes(built)
    reason = unaccounted_files(sum(counts), limit, files)
    return [reason + " over all tasks' models" + maps_note(code)] if reason else []


def task_counts(tasks: dict[str, TaskResult]) -> list[int]:
    """The parameter count of each task's model, for the tasks that were counted."""
    return [int(info.params) for info in tasks.values() if info.params is not None]


def finish(result: TeamResult, config: RunConfig, started: float, write_csv: bool = True) -> TeamResult:
    """Stamp the duration and write the team's JSON record (and its CSV row). Whatever in the record cannot be
    written (a value a worker's bytes put there that no check foresaw) makes the row harness_failed with the
    reason, its traceback in OUT/TEAM/harness_error.log: one team's row never ends a batch, and the batch's
    leaderboard is built from rows that are known to write."""
    result = replace(result, duration_s=round(time.time() - started, 3))
    try:
        _write_row(result, config, write_csv)
    except Exception as exc:      # the record or the row could not be made: this team's row says so
        log = record_harness_failure(result, config, exc, "writing this team's row")
        kept = {name: _writable(getattr(result, name)) for name in ROW_IDENTITY}
        result = TeamResult(**{**kept, "status": "harness_failed", "error": (
            f"the harness could not write this team's row ({type(exc).__name__}: {exc!s:.300}); see {log}")})
        _write_row(result, config, write_csv)
    return result


# What a row keeps of its result when the rest could not be written: who, what and when, all harness-made.
ROW_IDENTITY = ("team", "status", "backend", "spec_name", "spec_sha256", "team_hash", "harness_version",
                "started_at", "duration_s", "team_dir", "settings_key")


def _writable(value: Any) -> Any:
    """A string with whatever UTF-8 cannot encode escaped (a folder name of undecodable bytes reads back
    with surrogates); anything else as it is."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def _write_row(result: TeamResult, config: RunConfig, write_csv: bool) -> None:
    results_frame([result], config.spec)          # the row can be built (counts fit, values convert)
    write_result_json(result, config.out_dir / result.team / "result.json")
    if write_csv:
        write_results_csv([result], config.out_dir / "results.csv", config.spec)


def record_harness_failure(result: TeamResult, config: RunConfig, exc: Exception, doing: str) -> Path:
    """The traceback of a harness failure while `doing` something for this team, in OUT/TEAM/harness_error.log
    (written as UTF-8 with anything unencodable escaped); returns the log's path."""
    log = config.out_dir / result.team / "harness_error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    text = f"while {doing}:\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    log.write_bytes(text.encode("utf-8", errors="backslashreplace"))
    return log


def load_team(team_dir: Path, config: RunConfig) -> tuple[TeamResult, Submission | None]:
    """A fresh result for the team, and its submission (None, with the reason on the row, when invalid)."""
    result = TeamResult(team=folder_label(team_dir), status="invalid_submission", backend=config.backend.name,
                        spec_name=config.spec.name, spec_sha256=config.spec.sha256, harness_version=__version__,
                        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        submission = load_submission(team_dir, config.spec)
    except SubmissionError as exc:
        return replace(result, error=str(exc)), None
    return replace(result, team=submission.team, team_hash=submission.content_hash), submission


def build_team(result: TeamResult, submission: Submission, config: RunConfig) -> tuple[TeamResult, Built]:
    """Build the team into a fresh output folder (nothing an earlier run left there is written through); the
    row with the build's time and log, or why it failed."""
    work_dir = fresh_dir(config.out_dir / submission.team)
    building = time.monotonic()
    try:
        built = config.backend.build(submission, work_dir)
        build_s = round(time.monotonic() - building, 3)     # near 0 for a cached build
    except SubmissionError as exc:  # the folder changed under us, or cannot be read while copying
        return (replace(result, status="invalid_submission", error=str(exc)),
                Built(False, "", "", work_dir / "build.log", error=str(exc)))
    result = replace(result, build_s=build_s, logs={**result.logs, "build": str(built.log_path)})
    if not built.ok:
        result = replace(result, status="build_failed", error=built.error)
    return result, built


def refuse_busy_gpu(config: RunConfig) -> str | None:
    """Measurements need the GPU to themselves: refuse another process on it, or (by option) return the
    reason so that the row is flagged."""
    busy = gpu_busy_reason()
    if busy and not config.allow_busy_gpu:
        raise HarnessError(f"{busy}: stop it before timing, or pass --allow-busy-gpu to time anyway (flagged)")
    return busy


def reference_options(spec: Spec, plan: TimingPlan) -> Callable[[str], dict[str, Any]]:
    return lambda task: {"max_seq_length": spec.task(task).max_seq_length, "padding": spec.reference.padding,
                         "doc_stride": spec.reference.doc_stride, "seed": plan.seed}


def reference_worker(spec: Spec, ref_built: Built, plan: TimingPlan) -> WorkerSpec:
    """The BERT-base reference's side as a team's measurement starts it (the A/A row starts two of them)."""
    return WorkerSpec("reference", ref_built, REFERENCE_PREDICTOR, spec.sandbox.timeout_s,
                      reference_options(spec, plan), spec.reference.precision)


def worker_threads(spec: Spec, plan: TimingPlan) -> int:
    """The same torch thread count for both workers: the plan's, or the sandbox's CPUs on this box."""
    return plan.threads or max(1, min(len(os.sched_getaffinity(0)), int(spec.sandbox.cpus)))


def measure_team(result: TeamResult, submission: Submission, built: Built, config: RunConfig,
                 prepared: PreparedData, ref_built: Built, busy: str | None, say: Say = lambda message: None,
                 progress: Progress = no_progress) -> TeamResult:
    """Time the team against the reference, interleaved, on the timekeeper; score on the host; the measured
    row. `result` carries the run's seed (measure_or_record draws it); `busy` is why the GPU was not free when
    the run was let time anyway (refuse_busy_gpu). `progress` hears where each task's timing stands
    (harness.progress: between timed windows only), named for the team."""
    spec, work = config.spec, config.out_dir / submission.team
    plan = TimingPlan.from_spec(spec, result.run_seed)
    team = WorkerSpec("team", built, submission.predictor, config.probe_timeout_s)
    reference = reference_worker(spec, ref_built, plan)
    say(f"{submission.team}: timing {', '.join(submission.tasks)} against BERT-base, interleaved")
    try:
        with GpuMonitor() as gpu:
            measured, predictions = measure_against_reference(
                config.backend, team, reference, spec, prepared.inputs, submission.tasks,
                plan, config.device, worker_threads(spec, plan), work,
                work / "predictions", round_snapshot,
                progress if progress is no_progress else lambda event: progress(replace(event, team=submission.team)))
    except ReferenceFailed as exc:
        raise HarnessError(f"the BERT-base reference failed ({exc}); see {work / 'reference.log'}") from exc
    logs = {**result.logs, **{f"worker_{name}": str(worker_log(work, name)) for name in submission.tasks
                              if worker_log(work, name).exists()}, "reference": str(work / "reference.log")}
    references = {name: reference_result(r) for name, r in measured.reference.items()}
    tasks = {name: task_info(spec.task(name), prepared.gold[name], measured.tasks.get(name), predictions.get(name))
             for name in submission.tasks}
    outcomes = {name: task_outcome(name, info) for name, info in tasks.items()}
    score = score_team(outcomes, {name: reference_task(r) for name, r in references.items()}, spec)
    notes = list(config.notes)
    flags = [*measurement_flags(spec, tasks, measured.environment, measured.reference_environment, notes),
             *weight_file_flags(config.backend, built, task_counts(tasks), spec.limits.max_params,
                                measured.code_maps),
             *gpu.flags(), *([f"timed although {busy}"] if busy else []),
             *borderline_flags(score, spec), *half_width_flags(tasks, score, spec)]
    errors = "; ".join(f"{n}: {t['error']}" for n, t in measured.tasks.items() if not t.get("ok"))
    if measured.timed_out:
        status, error = "timeout", measured.timed_out
    elif not any(o.ok for o in outcomes.values()):
        status, error = "probe_failed", errors or measured.error or "no task produced predictions"
    elif score.failed_tasks:
        status, error = "partial", errors or measured.error or "some tasks failed"
    else:
        status, error = "ok", result.error
    return replace(result, logs=logs, reference=references, tasks=tasks, score=score, notes=tuple(notes),
                   flags=tuple(flags), status=status, error=error,
                   reference_precision=next((r.get("precision") for r in measured.reference.values()), {}),
                   environment=Environment(worker=dict(measured.environment), gpu=gpu.summary(),
                                           box=cpu_description(), reference=dict(measured.reference_environment)))


def measure_or_record(result: TeamResult, submission: Submission, built: Built, config: RunConfig,
                      prepared: PreparedData, ref_built: Built, say: Say = lambda message: None,
                      reference_failure_is_a_row: bool = False, progress: Progress = no_progress) -> TeamResult:
    """measure_team's row, with a failure the harness did not foresee recorded on the team's row (status
    harness_failed, the exception in one line, its traceback in OUT/TEAM/harness_error.log) instead of
    ending the run: whatever one team's worker did, a batch goes on with the next team. A reference that
    failed beside this team is a row too in a batch (reference_failure_is_a_row); `harness run` says it.
    The run's seed is drawn here once the GPU is known free, so that a failed row keeps it."""
    seeded = result
    try:
        busy = refuse_busy_gpu(config)
        seeded = replace(result, run_seed=secrets.randbits(32))   # drawn per run, recorded, never announced
        return measure_team(seeded, submission, built, config, prepared, ref_built, busy, say, progress)
    except HarnessError as exc:
        if not reference_failure_is_a_row:
            raise
        return replace(seeded, status="harness_failed", error=str(exc))
    except Exception as exc:      # a harness bug a worker's bytes found: that team's row, never the batch's end
        log = record_harness_failure(seeded, config, exc, "measuring this team")
        return replace(seeded, status="harness_failed",
                       error=f"the harness failed while measuring this team ({type(exc).__name__}: {exc}); see {log}")


def built_team_row(result: TeamResult, submission: Submission, built: Built, config: RunConfig,
                   prepared: PreparedData, reference: Callable[[], Built], started: float,
                   say: Say = lambda message: None, progress: Progress = no_progress,
                   in_batch: bool = False) -> TeamResult:
    """The one-team sequence `run` and `batch` share once the team's build is in: a team that built is measured
    against the reference (`reference()`: built for this run, or the batch's one build), whatever the harness
    did not foresee recorded on the row (measure_or_record; in a batch a failed reference is a row too), and
    the row is written (finish: `run` writes results.csv, a batch its leaderboard once every team is done)."""
    if built.ok:
        result = measure_or_record(result, submission, built, config, prepared, reference(), say,
                                   reference_failure_is_a_row=in_batch, progress=progress)
    return finish(result, config, started, write_csv=not in_batch)


def run_team(team_dir: Path, config: RunConfig, say: Say = lambda message: None,
             progress: Progress = no_progress) -> TeamResult:
    """Run one team against the interleaved reference and write its CSV row and JSON record; `say` hears
    each step, `progress` where each task's timing stands (harness.progress)."""
    started = time.time()
    result, submission = load_team(team_dir, config)
    if submission is None:
        return finish(result, config, started)
    say(f"{submission.team}: preparing inputs (labels stripped) from {config.data_dir}")
    prepared = prepare_inputs(config.spec, config.data_dir, config.max_examples)
    say(f"{submission.team}: building ({config.backend.name} backend, running {submission.setup})")
    result, built = build_team(result, submission, config)
    return built_team_row(result, submission, built, config, prepared,
                          lambda: config.backend.build_reference(config.reference_dir, config.out_dir / "reference"),
                          started, say, progress)
