"""Result rows: a fixed, documented column order, written through pandas as CSV, plus one JSON record per team.

The per-task block repeats for every task of the spec, in spec order, between the team-level columns and the
environment columns. README.md documents every column (a test keeps the two in step).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from harness.precision import STRICT_FP32
from harness.records import Environment, Placement, ReferenceResult, TaskResult
from harness.safe_files import write_new_text
from harness.scoring import TeamScore
from harness.spec import Spec

TEAM_COLUMNS = {
    "team": "team name from harness.toml",
    "status": "ok, partial (some tasks failed), invalid_submission, build_failed, timeout, probe_failed or harness_failed (the harness could not measure this team: the reference failed beside it in a batch, or a harness bug, traceback in TEAM/harness_error.log)",
    "score": "final score res = 0.8*P/100 + 0.1*(1 - S/(0.9*S_bert)) + 0.1*(1 - T/T_bert), empty when no task ran",
    "P": "mean ranking score over the spec's tasks, 0-100 (failed tasks count 0)",
    "params": "S: counted parameters, aggregated over tasks as the spec says (NLPCC 2020: the largest task model)",
    "params_ok": "params below the spec's limit (12,000,000, strict)",
    "speedup": "T_bert / T over the tasks both ran (same inputs, batch size and device, timed interleaved)",
    "speedup_low": "low bound of the speedup's 95% confidence interval (bootstrap over rounds and batches, widened to a t interval over rounds)",
    "speedup_high": "high bound of the speedup's 95% confidence interval",
    "speed_verdict": "pass (speedup_low >= 8x), fail (speedup_high < 8x), borderline (the interval straddles 8x after the spec's round budget) or unknown",
    "speed_ok": "True on pass, False on fail, empty when borderline",
    "compliant": "params_ok and speed_ok (a borderline row is not compliant)",
    "speedup_half_width": "the interval's half-width relative to the speedup, (speedup_high - speedup_low) / 2 / speedup (0.03: +-3%)",
    "half_width_met": "whether speedup_half_width reached the spec's target (timing.target_half_width on a GPU: 0.03); empty without a target (on a CPU); a miss is flagged with why rounds stopped",
    "reason": "why the row is not compliant, or which tasks failed",
    "flags": "findings, each meaning 'look at this team': caching_suspected, borderline, weights outside what the predictor shows, weights_unaccounted (weight files implying more parameters, resident or peak memory beyond the counted bytes, device memory at load beyond the counted device bytes and its allowance), device memory, peak memory, the device drain or the freeze not checked (and why), queued device work of another process in the reference's windows, ONNX Runtime on CPU providers on a GPU box, a GPU other than the spec's `expected_gpu`, throttling, a busy GPU timed anyway, a box not proven fair by its A/A row, predictions with problems, thread counts or devices that differ, a speedup interval wider than its target (the half-width reached, per task, and why rounds stopped)",
    "notes": "states of the run that are not findings about the team: timed on CPU (indicative only), the caching audit undecided (the later rounds left out of T on a point estimate alone, or too few batches for an interval), warm-up not settled within `warmup_max_s`, the bundled sample data timed in batches smaller than the spec's",
    "T_s": "T: team time in seconds (mean pass over the timed rounds, first sight only unless the caching audit lets the later rounds count; aggregated over tasks as the spec says)",
    "T_bert_s": "T_bert: reference time in seconds over the same tasks (mean pass, timed interleaved with the team)",
    "S_bert": "reference parameters, aggregated like params",
    "reference_precision": "the reference's pinned precision as verified right before timing (fp32-strict: TF32 off)",
    "run_seed": "seed drawn for this run: batch order and warm-up inputs",
}
TASK_COLUMNS = {
    "{task}_score": "the task's ranking metric, 0-100 (accuracy, macro F1 or EM)",
    "{task}_time_per_example_ms": "mean-pass time per example in milliseconds (the timed unit: one batch's round trip)",
    "{task}_params": "counted parameters of the task's model",
    "{task}_device_busy": "the team's device busy share in its timed windows, 0-1: NVML's per-process utilization samples of its processes, read by the host (README \"Where the time goes\"); the rest of its time is host work. Empty on a CPU, or when unreadable (the split note says why)",
    "{task}_reference_device_busy": "the same for the BERT-base reference",
    "{task}_cpu_busy": "the team worker's CPU seconds per wall second in its timed windows (user + system of all its host processes, psutil, read by the host): 1.0 is one core busy throughout",
    "{task}_reference_cpu_busy": "the same for the BERT-base reference",
    "{task}_team_own_forward_share": "share of predict() spent inside the model's forward on an untimed pass over its first 4 batches, as the team's own worker reports it (hooks on its top-level torch modules): the team's own figure, never used in a verdict",
    "{task}_split_note": "why a figure of the split above could not be read (no NVML, MIG, pids not visible, no torch module found), by side; empty when all were read",
}
TRAILING_COLUMNS = {
    "device": "cuda or cpu (cpu timings are indicative only)",
    "device_name": "GPU model, or cpu",
    "torch_version": "torch inside the team's environment",
    "cuda_version": "CUDA version torch was built with, empty on CPU builds",
    "harness_version": "version of this harness",
    "backend": "docker or local",
    "timed_on": "where the team was timed (batch --engine ray): the Ray node's hostname, its box slot when the node has several (slot i/N, CPU set, GPU index), the GPU model; empty on the local engine. The record's placement has the tries and node faults",
    "spec_name": "competition spec name",
    "spec_sha256": "hash of the spec file",
    "team_hash": "sha256 of the team folder's content",
    "started_at": "UTC start time, ISO 8601",
    "duration_s": "wall time of the whole run for this team, seconds",
    "error": "one-line reason when something failed",
}


def columns(spec: Spec) -> list[str]:
    per_task = [c.format(task=t) for t in spec.task_names for c in TASK_COLUMNS]
    return [*TEAM_COLUMNS, *per_task, *TRAILING_COLUMNS]


@dataclass(frozen=True)
class TeamResult:
    """Everything known about one team's run; the CSV row and the JSON record are views of it. Each stage
    (the submission read, the build, the measurement, where a batch timed it, its box's calibration) makes a
    new row from the last (dataclasses.replace); its parts are frozen records too (harness.records)."""

    team: str
    status: str
    backend: str
    spec_name: str
    spec_sha256: str
    team_hash: str = ""
    harness_version: str = ""
    started_at: str = ""
    duration_s: float = 0.0
    error: str = ""
    score: TeamScore | None = None
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    reference: dict[str, ReferenceResult] = field(default_factory=dict)
    environment: Environment = field(default_factory=Environment)
    flags: tuple[str, ...] = ()        # findings: look at this team
    notes: tuple[str, ...] = ()        # states of the run that are not findings
    logs: dict[str, str] = field(default_factory=dict)
    run_seed: int | None = None        # batch order and warm-up inputs of this run
    reference_precision: dict[str, Any] = field(default_factory=dict)
    team_dir: str = ""                 # where the team was read from (the batch cache matches on it)
    settings_key: str = ""             # hash of what else decides the result (harness, spec, data, sample size)
    placement: Placement = field(default_factory=Placement)   # batch --engine ray: node, slot, attempts, faults
    build_s: float | None = None       # wall seconds of the build (near 0 when cached); None: not built
    calibration: dict[str, Any] = field(default_factory=dict)  # batch: the A/A record of the box that timed it

    def __post_init__(self) -> None:
        """Flags and notes kept as tuples (a list given is copied); a part that is not its record is refused
        here, where every row is made, rather than found when the row is written."""
        for name in ("flags", "notes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        parts = (("tasks", TaskResult), ("reference", ReferenceResult))
        wrong = [f"{name}[{key!r}]" for name, kind in parts for key, part in getattr(self, name).items()
                 if not isinstance(part, kind)]
        wrong += [name for name, kind in (("environment", Environment), ("placement", Placement))
                  if not isinstance(getattr(self, name), kind)]
        if wrong:
            raise TypeError(f"TeamResult parts that are not their records: {', '.join(wrong)} "
                            "(build them with harness.records' from_dict)")

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (result.json), keys in field order."""
        record: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "score":
                value = asdict(value) if value is not None else None
            elif name in ("tasks", "reference"):
                value = {task: part.to_dict() for task, part in value.items()}
            elif name in ("environment", "placement"):
                value = value.to_dict()
            elif name in ("flags", "notes"):
                value = list(value)
            record[name] = value
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> TeamResult:
        """A TeamResult from its JSON record (keys it does not know are left out; the stored score as it was:
        the batch recomputes it from the stored figures)."""
        fields = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        fields["tasks"] = {k: TaskResult.from_dict(v) for k, v in (record.get("tasks") or {}).items()}
        fields["reference"] = {k: ReferenceResult.from_dict(v) for k, v in (record.get("reference") or {}).items()}
        fields["environment"] = Environment.from_dict(record.get("environment") or {})
        fields["placement"] = Placement.from_dict(record.get("placement") or {})
        fields["score"] = team_score(record["score"]) if record.get("score") is not None else None
        fields["flags"], fields["notes"] = tuple(record.get("flags") or ()), tuple(record.get("notes") or ())
        return cls(**fields)


def team_score(record: Mapping[str, Any]) -> TeamScore:
    """A TeamScore from its JSON form (its tuples came back as lists)."""
    known = {k: v for k, v in record.items() if k in TeamScore.__dataclass_fields__}
    return TeamScore(**{**known, "failed_tasks": tuple(known.get("failed_tasks") or ()),
                        "reasons": tuple(known.get("reasons") or ())})


def _task_cells(task: str, info: TaskResult | None, reference: ReferenceResult | None) -> dict[str, Any]:
    per_example = info.time_per_example_s if info is not None else None
    team_split = (info.timing.get("time_split") if info is not None else None) or {}
    ref_split = (reference.timing.get("time_split") if reference is not None else None) or {}
    return {f"{task}_score": info.score if info is not None else None,
            f"{task}_time_per_example_ms": per_example * 1000 if per_example is not None else None,
            f"{task}_params": info.params if info is not None else None,
            f"{task}_device_busy": team_split.get("device_busy"),
            f"{task}_reference_device_busy": ref_split.get("device_busy"),
            f"{task}_cpu_busy": team_split.get("cpu_busy"),
            f"{task}_reference_cpu_busy": ref_split.get("cpu_busy"),
            f"{task}_team_own_forward_share": (team_split.get("own") or {}).get("forward_share"),
            f"{task}_split_note": split_note(team_split, ref_split)}


def split_note(team: dict[str, Any], reference: dict[str, Any]) -> str | None:
    """The split's notes of both sides in one cell ("team: ...; reference: ..."), None when there is none."""
    parts = []
    for side, record in (("team", team), ("reference", reference)):
        notes = list(record.get("notes") or [])
        own = record.get("own") or {}
        if own.get("note"):
            notes.append(f"own figure: {own['note']}")
        parts += [f"{side}: {note}" for note in notes]
    return "; ".join(parts) or None


def precision_label(state: dict[str, Any]) -> str | None:
    """A short cell for the verified precision state (the full settings stay in the JSON record)."""
    if not state:
        return None
    strict = all(state.get(k) == v for k, v in STRICT_FP32.items())
    return "fp32-strict" if strict else ";".join(f"{k}={v}" for k, v in sorted(state.items()))


def placement_text(placement: Placement) -> str | None:
    """Where a team was timed, for a person: `node`, then `slot i/N (CPUs c, GPU g)` when the node had
    several slots, then the GPU model; None when nothing says (the local engine)."""
    if not placement.node:
        return None
    parts = [str(placement.node)]
    if (placement.slots or 1) > 1:
        gpu = f", GPU {placement.gpu_index}" if placement.gpu_index is not None else ""
        parts.append(f"slot {int(placement.slot or 0) + 1}/{placement.slots} (CPUs {placement.cpu_set}{gpu})")
    if placement.gpu_name:
        parts.append(str(placement.gpu_name))
    return " ".join(parts)


def result_row(result: TeamResult, spec: Spec) -> dict[str, Any]:
    s = result.score
    env = result.environment
    row: dict[str, Any] = {
        "team": result.team, "status": result.status,
        "score": s.res if s else None, "P": s.P if s else None, "params": s.S if s else None,
        "params_ok": s.params_ok if s else False, "speedup": s.speedup if s else None,
        "speedup_low": s.speedup_low if s else None, "speedup_high": s.speedup_high if s else None,
        "speedup_half_width": s.speedup_half_width if s else None, "half_width_met": s.half_width_met if s else None,
        "speed_verdict": s.speed_verdict if s else None,
        "speed_ok": s.speed_ok if s else False, "compliant": s.compliant if s else False,
        "reason": "; ".join(s.reasons) if s else result.error,
        "flags": "; ".join(result.flags), "notes": "; ".join(result.notes),
        "T_s": s.T if s else None, "T_bert_s": s.T_bert if s else None,
        "S_bert": s.S_bert if s else None, "reference_precision": precision_label(result.reference_precision),
        "run_seed": result.run_seed,
        "device": env.device, "device_name": env.device_name, "torch_version": env.torch_version,
        "cuda_version": env.cuda_version, "harness_version": result.harness_version or env.harness_version,
        "backend": result.backend, "timed_on": placement_text(result.placement), "spec_name": result.spec_name, "spec_sha256": result.spec_sha256,
        "team_hash": result.team_hash, "started_at": result.started_at, "duration_s": result.duration_s,
        "error": result.error,
    }
    for task in spec.task_names:
        row.update(_task_cells(task, result.tasks.get(task), result.reference.get(task)))
    return {column: row.get(column) for column in columns(spec)}


def results_frame(results: list[TeamResult], spec: Spec) -> pd.DataFrame:
    frame = pd.DataFrame([result_row(r, spec) for r in results], columns=columns(spec))
    counts = ["params", "S_bert", "run_seed", *(f"{t}_params" for t in spec.task_names)]
    frame[counts] = frame[counts].astype("Int64")  # parameter counts stay integers beside empty cells
    return frame


def write_results_csv(results: list[TeamResult], path: Path, spec: Spec, replace_teams: bool = True) -> Path:
    """Write rows to `path`; rows already there for other teams are kept (same columns), this run's replace them."""
    frame = results_frame(results, spec)
    if replace_teams and path.exists():
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(old.columns) == columns(spec):
            kept = old[~old["team"].isin(frame["team"])]
            frame = pd.concat([kept.astype(object), frame.astype(object)], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def write_result_json(result: TeamResult, path: Path) -> Path:
    """The JSON record, created anew: a link or FIFO left where it goes is removed, never written through."""
    return write_new_text(path, json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
