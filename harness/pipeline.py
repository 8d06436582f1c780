"""One team, end to end: validate, build, measure between two reference runs, score, write the row.

This is DESIGN.md's data flow in code. Every failure of the team's (bad manifest, failed setup, crash,
timeout, malformed predictions) becomes a status and a one-line reason on its row; only a failure of the
harness itself (the reference cannot run, the data cannot be read) raises HarnessError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from harness import __version__
from harness.backends.base import Backend, Built
from harness.gpu import GpuMonitor, gpu_busy_reason
from harness.probe.manifest import ProbeTask, RunManifest, predictions_file
from harness.results import TeamResult, write_result_json, write_results_csv
from harness.scoring import ReferenceTask, TaskOutcome, bracket_reference, score_team
from harness.spec import Spec
from harness.submission import Submission, SubmissionError, load_submission
from harness.tasks import TaskDataError, get_task
from harness.tasks.base import write_json_lines

REPO_DIR = Path(__file__).resolve().parent.parent
REFERENCE_DIR = REPO_DIR / "baselines" / "bert_reference"
REFERENCE_PREDICTOR = "predictor:Predictor"
SAMPLE_DATA_DIR = REPO_DIR / "baselines" / "sample_data"
DEMO_TEAM_DIR = REPO_DIR / "baselines" / "demo_team"

Say = Callable[[str], None]


class HarnessError(RuntimeError):
    """A failure of the harness or its inputs, not of a team: the run cannot produce a fair row."""


@dataclass(frozen=True)
class RunConfig:
    spec: Spec
    backend: Backend
    data_dir: Path = SAMPLE_DATA_DIR
    out_dir: Path = Path("results")
    max_examples: int | None = None
    device: str = "auto"
    timeout_s: float | None = None
    reference_dir: Path = REFERENCE_DIR
    allow_busy_gpu: bool = False

    @property
    def probe_timeout_s(self) -> float:
        return self.timeout_s if self.timeout_s is not None else self.spec.sandbox.timeout_s


@dataclass
class PreparedData:
    """Label-free inputs for the probe (written to inputs_dir) and the gold kept on the host."""

    inputs_dir: Path
    gold: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def prepare_inputs(spec: Spec, data_dir: Path, work_dir: Path, max_examples: int | None) -> PreparedData:
    """Strip labels from every task's gold file; only these inputs ever reach team code."""
    prepared = PreparedData(work_dir.resolve() / "inputs")
    prepared.inputs_dir.mkdir(parents=True, exist_ok=True)
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
        write_json_lines(task.strip_labels(gold), prepared.inputs_dir / task_spec.input_file)
    return prepared


def probe_manifest(spec: Spec, built: Built, predictor: str, tasks: tuple[str, ...], inputs_dir: Path,
                   device: str, reference: bool) -> RunManifest:
    probe_tasks = []
    for name in tasks:
        ts = spec.task(name)
        options = ({"max_seq_length": ts.max_seq_length, "padding": spec.reference.padding,
                    "doc_stride": spec.reference.doc_stride, "seed": spec.timing.seed} if reference else {})
        probe_tasks.append(ProbeTask(ts.name, ts.input_file, ts.batch_size, options))
    t = spec.timing
    return RunManifest(team_dir=built.team_dir, predictor=predictor, inputs_dir=str(inputs_dir),
                       tasks=tuple(probe_tasks), warmup_batches=t.warmup_batches, rounds=t.rounds, seed=t.seed,
                       noisy_spread=t.noisy_spread, device=device)


@dataclass(frozen=True)
class ReferenceRun:
    """One timing of the reference on some tasks, and the environment it ran in."""

    tasks: dict[str, ReferenceTask]
    environment: dict[str, Any]


def measure_reference(config: RunConfig, built: Built, prepared: PreparedData, tasks: tuple[str, ...],
                      out_dir: Path) -> ReferenceRun:
    """Time the BERT-base reference on `tasks`; its failure is the harness's, so it raises."""
    manifest = probe_manifest(config.spec, built, REFERENCE_PREDICTOR, tasks, prepared.inputs_dir,
                              config.device, reference=True)
    # --timeout is for team code; the reference always gets the spec's own limit
    run = config.backend.run(built, manifest, out_dir, config.spec.sandbox.timeout_s, out_dir / "probe.log")
    if not run.ok:
        raise HarnessError(f"the BERT-base reference failed ({run.error}); see {run.log_path}")
    measured = {name: ReferenceTask(int(t["params"]["counted"]), float(t["timing"]["median_round_s"]), 0.0)
                for name, t in run.measurements["tasks"].items()}
    return ReferenceRun(measured, run.measurements.get("environment", {}))


def task_outcome(name: str, info: dict[str, Any]) -> TaskOutcome:
    """The scoring view of one task's record in TeamResult.tasks (fresh from task_info or read back from result.json)."""
    if "score" not in info:
        return TaskOutcome(name, error=str(info.get("error") or "failed"))
    return TaskOutcome(name, info["score"], int(info["params"]), float(info["time_s"]))


def task_info(name: str, gold: list[dict[str, Any]], measured: dict[str, Any] | None, probe_dir: Path
              ) -> dict[str, Any]:
    """Score one task's predictions on the host, where the gold labels are; the record for TeamResult.tasks."""
    if measured is None:
        return {"error": "not run"}
    if not measured.get("ok"):
        return {"error": measured.get("error")}
    task = get_task(name)
    try:
        records, problems = task.read_predictions(probe_dir / predictions_file(name))
    except TaskDataError as exc:
        return {"error": str(exc)}
    scored = task.score(gold, records, problems)
    timing, params = measured["timing"], measured["params"]
    return {"score": scored.score, "metrics": scored.metrics, "problems": list(scored.problems),
            "n_gold": scored.n_gold, "n_pred": scored.n_pred, "params": params["counted"],
            "param_report": params, "time_s": timing["median_round_s"],
            "time_per_example_s": timing["time_per_example_s"], "timing": timing,
            "consistent_across_rounds": measured.get("consistent_across_rounds", True)}


def measurement_flags(spec: Spec, tasks: dict[str, dict[str, Any]], team_env: dict[str, Any],
                      ref_env: dict[str, Any], reference: dict[str, ReferenceTask]) -> list[str]:
    """Everything that makes a number less trustworthy, said on the row."""
    flags = []
    for name, info in tasks.items():
        for flag in info.get("param_report", {}).get("flags", []):
            flags.append(f"{name}: {flag}")
        if info.get("timing", {}).get("noisy"):
            flags.append(f"{name}: rounds differ by {info['timing']['spread']:.0%} (noisy box)")
        if info.get("consistent_across_rounds") is False:
            flags.append(f"{name}: predictions differ between timing rounds (the first round is scored)")
        if info.get("problems"):
            flags.append(f"{name}: {len(info['problems'])} prediction problem(s), e.g. {info['problems'][0]}")
    drift = max((r.drift for r in reference.values()), default=0.0)
    if drift > spec.timing.noisy_spread:
        flags.append(f"reference runs before and after the team differ by {drift:.0%}")
    if team_env.get("device") and ref_env.get("device") and team_env["device"] != ref_env["device"]:
        flags.append(f"team ran on {team_env['device']} but the reference on {ref_env['device']}: speedup not comparable")
    if team_env.get("device") == "cpu":
        flags.append("timed on CPU: indicative only, the competition times on the GPU box")
    expected = spec.box.expected_gpu
    if expected and team_env.get("device_name") not in (None, expected):
        flags.append(f"GPU is {team_env.get('device_name')}, the spec expects {expected}")
    return flags


def finish(result: TeamResult, config: RunConfig, started: float, write_csv: bool = True) -> TeamResult:
    """Stamp the duration and write the team's JSON record (and its CSV row)."""
    result.duration_s = round(time.time() - started, 3)
    write_result_json(result, config.out_dir / result.team / "result.json")
    if write_csv:
        write_results_csv([result], config.out_dir / "results.csv", config.spec)
    return result


def load_team(team_dir: Path, config: RunConfig) -> tuple[TeamResult, Submission | None]:
    """A fresh result for the team, and its submission (None, with the reason on the row, when invalid)."""
    result = TeamResult(team=Path(team_dir).name, status="invalid_submission", backend=config.backend.name,
                        spec_name=config.spec.name, spec_sha256=config.spec.sha256, harness_version=__version__,
                        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:
        submission = load_submission(team_dir, config.spec)
    except SubmissionError as exc:
        result.error = str(exc)
        return result, None
    result.team, result.team_hash = submission.team, submission.content_hash
    return result, submission


def build_team(result: TeamResult, submission: Submission, config: RunConfig) -> Built:
    built = config.backend.build(submission, config.out_dir / submission.team)
    result.logs["build"] = str(built.log_path)
    if not built.ok:
        result.status, result.error = "build_failed", built.error
    return built


def refuse_busy_gpu(config: RunConfig) -> str | None:
    """Measurements need the GPU to themselves: refuse another process on it, or (by option) return the
    reason so that the row is flagged."""
    busy = gpu_busy_reason()
    if busy and not config.allow_busy_gpu:
        raise HarnessError(f"{busy}: stop it before timing, or pass --allow-busy-gpu to time anyway (flagged)")
    return busy


def measure_team(result: TeamResult, submission: Submission, built: Built, config: RunConfig,
                 prepared: PreparedData, ref_built: Built, before: ReferenceRun, after_dir: Path,
                 say: Say = lambda message: None) -> ReferenceRun:
    """Probe the team, time the reference again, score on the host; returns the reference run after it."""
    spec, work = config.spec, config.out_dir / submission.team
    busy = refuse_busy_gpu(config)
    say(f"{submission.team}: running the probe on {', '.join(submission.tasks)}")
    manifest = probe_manifest(spec, built, submission.predictor, submission.tasks, prepared.inputs_dir,
                              config.device, reference=False)
    with GpuMonitor() as gpu:
        run = config.backend.run(built, manifest, work / "probe", config.probe_timeout_s, work / "probe.log")
    result.logs["probe"] = str(run.log_path)

    say("reference: timing BERT-base after the team")
    after = measure_reference(config, ref_built, prepared, tuple(before.tasks), after_dir)
    reference = bracket_reference({t: before.tasks[t] for t in submission.tasks},
                                  {t: after.tasks[t] for t in submission.tasks})
    result.reference = {name: vars(r) for name, r in reference.items()}

    measured = (run.measurements or {}).get("tasks", {})
    result.tasks = {name: task_info(name, prepared.gold[name], measured.get(name), work / "probe")
                    for name in submission.tasks}
    outcomes = {name: task_outcome(name, info) for name, info in result.tasks.items()}
    result.environment = {**(run.measurements or {}).get("environment", {}), "gpu": gpu.summary()}
    result.score = score_team(outcomes, reference, spec)
    result.flags = [*measurement_flags(spec, result.tasks, result.environment, before.environment, reference),
                    *gpu.flags(), *([f"timed although {busy}"] if busy else [])]
    if run.status == "timeout":
        result.status, result.error = "timeout", run.error
    elif not any(o.ok for o in outcomes.values()):
        result.status, result.error = "probe_failed", run.error or "no task produced predictions"
    elif result.score.failed_tasks:
        result.status, result.error = "partial", run.error or "some tasks failed"
    else:
        result.status = "ok"
    return after


def run_team(team_dir: Path, config: RunConfig, say: Say = lambda message: None) -> TeamResult:
    """Run one team between two reference runs and write its CSV row and JSON record."""
    started = time.time()
    result, submission = load_team(team_dir, config)
    if submission is None:
        return finish(result, config, started)
    say(f"{submission.team}: preparing inputs (labels stripped) from {config.data_dir}")
    prepared = prepare_inputs(config.spec, config.data_dir, config.out_dir / "_work", config.max_examples)
    say(f"{submission.team}: building ({config.backend.name} backend, running {submission.setup})")
    built = build_team(result, submission, config)
    if not built.ok:
        return finish(result, config, started)
    ref_dir = config.out_dir / "reference"
    ref_built = config.backend.build_reference(config.reference_dir, ref_dir)
    say("reference: timing BERT-base before the team")
    before = measure_reference(config, ref_built, prepared, submission.tasks, ref_dir / "before")
    measure_team(result, submission, built, config, prepared, ref_built, before, ref_dir / "after", say)
    return finish(result, config, started)
