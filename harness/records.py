"""The records a row is made of, typed: a task's result, a side's timing, the environment and the placement
(and a side's record as the measurement hands it to the pipeline: MeasuredSide).

result.json (harness.results.TeamResult.to_dict) is these records' `to_dict`, and `from_dict` reads it back
(the batch's cache, a Ray node's reply, `harness score` of an old run): the format is the same as before the
records were typed (tests/unit/test_records.py reads a result.json written before). A side's timing is a
TypedDict, not a dataclass: it is one flat record merged from the timekeeper, the caching audit, the freezer,
the drain guard, the split, the kernel ledger and the memory and device checks, and its keys differ by side
(the reference has no caching audit), by device (the device check's keys only on a GPU) and by backend; a
key that is absent and one that is null are different things in result.json, which a dataclass would blur.
The environment keeps the worker's own word as it came (a mapping of scalars, checked by harness.replies:
what a worker says about itself is open-ended), with typed readers for what the harness uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, TypedDict


class SideTiming(TypedDict, total=False):
    """One side's record of one task, as result.json keeps it (the team's under tasks.TASK.timing, the
    reference's flat in reference.TASK). Grouped by what makes each key."""

    # the timekeeper, both sides (measurement.side_record)
    time_s: float                      # mean pass seconds over the rounds that count
    time_per_example_s: float
    load_s: float
    first_call_s: float
    warmup_windows_s: list[float]
    rounds_s: list[list[float]]        # rounds x batches, every round timed
    scored_rounds_s: list[list[float]]  # the rounds T is made of (first sight only unless the audit lets more count)
    time_split: dict[str, Any]         # harness.time_split: device and CPU busy shares, the team's own figure
    # the team's side only: the caching audit (stats.caching_audit) and the schedule
    caching_suspected: bool | None
    first_sight_ratio: float | None
    reference_first_sight_ratio: float | None
    caching_audit: dict[str, Any]
    first_sight_block: int
    first_sight_flanks_s: list[list[float]]
    orders: list[list[int]]
    warmup_settled: bool
    warmup_s: float
    box: list[dict[str, Any]]          # GPU clocks and temperatures between rounds (box.round_snapshot)
    interval: dict[str, Any] | None    # the task's speedup interval (stats.Interval)
    half_width: float | None           # timekeeper.TaskTimes.interval_record
    target_half_width: float
    half_width_met: bool | None
    timing_capped: bool
    timing_s: float
    rounds_stopped_by: str
    freeze_s: float                    # harness.freezing.FreezeLedger.record
    frozen_windows: int
    freeze_s_per_window: float
    freeze_unavailable: str
    device_drain: dict[str, Any]       # harness.device_activity.DrainGuard
    phase_s: dict[str, float]          # where the task's wall time went (start, prepare, load, ..., audit)
    # memory, read by the host (harness.crosscheck, measurement)
    device_memory_bytes: int | None
    memory_growth_bytes: int | None
    memory_peak_bytes: int | None
    peak_unreadable: str | None
    baseline_note: str
    explained_bytes: int
    resident_slack_bytes: int
    unexplained_resident_bytes: int | None
    unexplained_peak_bytes: int | None
    child_processes: int
    child_resident_bytes: int
    onnx_sessions: list[dict[str, Any]] | None   # the team's own word (harness.replies)
    # the kernel's accounting (harness.kernel_memory.KernelLedger.record)
    kernel_memory_source: str
    kernel_memory_note: str
    kernel_baseline: dict[str, int] | None
    kernel_after_load: dict[str, int] | None
    kernel_before_passes: dict[str, int] | None
    kernel_after_passes: dict[str, int] | None
    kernel_peak_load_bytes: int | None
    kernel_peak_count_bytes: int | None
    kernel_peak_passes_bytes: int | None
    kernel_peak_note: str
    kernel_memory_required: bool
    kernel_forked_note: str
    kernel_held_load_growth_bytes: int | None
    kernel_held_passes_growth_bytes: int | None
    kernel_held_task_growth_bytes: int | None
    kernel_peak_passes_growth_bytes: int | None
    kernel_peak_task_growth_bytes: int | None
    peak_allowance_bytes: int
    # the device check at load, GPU only (crosscheck.unexplained_device)
    device_baseline_bytes: int | None
    device_after_load_bytes: int | None
    device_load_growth_bytes: int | None
    device_explained_bytes: int | None
    device_reference_overhead_bytes: int | None
    device_allowance_bytes: int | None
    unexplained_device_bytes: int | None
    device_check_note: str


class MeasuredSide(SideTiming, total=False):
    """A side's record of one task as harness.measurement hands it to the pipeline: its timing, whether the
    task ran (`ok`), why not (`error`), the parameter report as the worker gave it (`params`, checked by
    harness.replies; the count is params["counted"]) and, for the reference, its verified precision."""

    ok: bool
    error: str
    params: dict[str, Any]
    precision: dict[str, Any]


def side_timing(record: Mapping[str, Any] | None) -> SideTiming:
    """A side's timing record from result.json (or an empty one)."""
    return SideTiming(**dict(record or {}))   # type: ignore[typeddict-item]


@dataclass(frozen=True)
class TaskResult:
    """The team on one task: the score of its first-sight predictions against the gold, its counted
    parameters, its time, and its timing record; or, for a task that failed or did not run, the error."""

    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    n_gold: int = 0
    n_pred: int = 0
    params: int | None = None
    param_report: dict[str, Any] = field(default_factory=dict)   # the count, as the team's worker reported it
    dtypes: tuple[str, ...] = ()
    time_s: float | None = None
    time_per_example_s: float | None = None
    timing: SideTiming = field(default_factory=SideTiming)
    caching_suspected: bool | None = None
    error: str | None = None
    failed: bool = False               # result.json holds only the error then

    @property
    def ok(self) -> bool:
        return not self.failed

    @classmethod
    def failure(cls, error: str | None) -> TaskResult:
        return cls(error=error, failed=True)

    def to_dict(self) -> dict[str, Any]:
        if self.failed:
            return {"error": self.error}
        return {"score": self.score, "metrics": dict(self.metrics), "problems": list(self.problems),
                "n_gold": self.n_gold, "n_pred": self.n_pred, "params": self.params,
                "param_report": dict(self.param_report), "dtypes": list(self.dtypes), "time_s": self.time_s,
                "time_per_example_s": self.time_per_example_s, "timing": dict(self.timing),
                "caching_suspected": self.caching_suspected}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> TaskResult:
        """A failed task's record holds "error" alone; a scored one never holds it."""
        if "error" in record:
            return cls.failure(record["error"])
        return cls(score=record.get("score"), metrics=dict(record.get("metrics") or {}),
                   problems=tuple(record.get("problems") or ()), n_gold=int(record.get("n_gold") or 0),
                   n_pred=int(record.get("n_pred") or 0), params=record.get("params"),
                   param_report=dict(record.get("param_report") or {}), dtypes=tuple(record.get("dtypes") or ()),
                   time_s=record.get("time_s"), time_per_example_s=record.get("time_per_example_s"),
                   timing=side_timing(record.get("timing")), caching_suspected=record.get("caching_suspected"))


@dataclass(frozen=True)
class ReferenceResult:
    """The BERT-base reference on one task, timed interleaved with the team: its counted parameters, its
    precision as verified right before timing, and its timing record (flat beside them in result.json)."""

    params: int
    timing: SideTiming = field(default_factory=SideTiming)
    precision: dict[str, Any] | None = None

    @property
    def time_s(self) -> float:
        return float(self.timing["time_s"])

    @property
    def rounds_s(self) -> list[list[float]]:
        return list(self.timing.get("rounds_s") or [])

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"params": self.params, **self.timing}
        if self.precision is not None:
            record["precision"] = dict(self.precision)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ReferenceResult:
        rest = {k: v for k, v in record.items() if k not in ("params", "precision")}
        return cls(params=int(record["params"]), timing=side_timing(rest), precision=record.get("precision"))


@dataclass(frozen=True)
class Environment:
    """Where the team ran: the team worker's own word about itself (device, torch, threads ...: scalars,
    checked by harness.replies, kept as they came), the host's GPU and CPU readings, and the reference
    worker's word. Empty ({} in result.json) when no worker was heard from."""

    worker: Mapping[str, Any] = field(default_factory=dict)
    gpu: dict[str, Any] | None = None          # harness.gpu.GpuMonitor.summary
    box: dict[str, Any] | None = None          # harness.box.cpu_description
    reference: Mapping[str, Any] | None = None  # the reference worker's word

    @property
    def device(self) -> str | None:
        return self.worker.get("device")

    @property
    def device_name(self) -> str | None:
        return self.worker.get("device_name")

    @property
    def torch_version(self) -> str | None:
        return self.worker.get("torch")

    @property
    def cuda_version(self) -> str | None:
        return self.worker.get("cuda")

    @property
    def threads(self) -> int | None:
        return self.worker.get("torch_threads")

    @property
    def harness_version(self) -> str | None:
        return self.worker.get("harness_version")

    def to_dict(self) -> dict[str, Any]:
        record = dict(self.worker)
        for name in ("gpu", "box", "reference"):
            if getattr(self, name) is not None:
                record[name] = dict(getattr(self, name))
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Environment:
        worker = {k: v for k, v in record.items() if k not in ("gpu", "box", "reference")}
        return cls(worker=worker, gpu=record.get("gpu"), box=record.get("box"), reference=record.get("reference"))


@dataclass(frozen=True)
class Placement:
    """Where `batch --engine ray` timed a team: the node and its Ray id, the worker process, when the node
    took and finished the job, the box slot (i of N, its CPU set, GPU index and model), how many tries it took
    and the node faults on the way. Empty ({} in result.json) on the local engine. Every key is written for
    a team timed on the cluster, null where the node could not say (no Ray node id, a misconfigured slot)."""

    node: str | None = None
    pid: int | None = None
    node_id: str | None = None
    node_started: float | None = None
    node_ended: float | None = None
    slot: int | None = None
    slots: int | None = None
    cpu_set: str | None = None
    gpu_index: int | None = None
    gpu_name: str | None = None
    attempts: int | None = None
    node_faults: tuple[str, ...] = ()

    @property
    def on_cluster(self) -> bool:
        return self.attempts is not None or self.node is not None

    def to_dict(self) -> dict[str, Any]:
        if not self.on_cluster:
            return {}
        return {**asdict(self), "node_faults": list(self.node_faults)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Placement:
        known = {name: record.get(name) for name in cls.__dataclass_fields__ if name != "node_faults"}
        return cls(**known, node_faults=tuple(record.get("node_faults") or ()))
