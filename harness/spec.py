"""The competition spec: every rule the harness enforces, read once from TOML into frozen dataclasses.

Nothing about NLPCC 2020 is hard-coded elsewhere: limits, the formula, task settings and timing settings all
come from a spec file, so another competition is another file.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from harness.paths import DEFAULT_SPEC
from harness.precision import PRECISIONS
from harness.tasks import TASKS
from harness.crosscheck import PEAK_SLACK_BYTES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

AGGREGATES = ("max", "sum", "mean")


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Limits:
    max_params: int
    min_speedup: float


@dataclass(frozen=True)
class Formula:
    score_weight: float
    size_weight: float
    time_weight: float
    size_factor: float
    size_aggregate: str
    time_aggregate: str


@dataclass(frozen=True)
class Timing:
    warmup_min_s: float
    warmup_max_s: float
    settle_tolerance: float
    rounds: int
    max_rounds: int
    confidence: float
    caching_tolerance: float
    threads: int
    seed: int
    # Optional keys (a spec written before them keeps working): the half-width the speedup interval of each
    # task is timed down to, relative ((high - low) / 2 / speedup; 0: no target), on a GPU and on a CPU, and
    # the seconds of rounds after which no round is added, whatever the interval (the minimum always runs).
    target_half_width: float = 0.03
    target_half_width_cpu: float = 0.0
    max_timing_s: float = 30.0


@dataclass(frozen=True)
class Reference:
    padding: str
    doc_stride: int
    precision: str


@dataclass(frozen=True)
class Sandbox:
    """Bounds on one probe run (Docker backend: the container; local backend: the subprocess's timeout)."""

    timeout_s: float
    memory: str
    shm_size: str
    pids_limit: int
    cpus: float
    tmp_size: str             # the tmpfs on /tmp
    log_max_size: str         # the container log, capped by the engine; the host reads at most this much


@dataclass(frozen=True)
class Build:
    """Bounds on building one team's image from its setup script; exceeding one is a build_failed row."""

    timeout_s: float          # wall clock for the whole build; the build is killed after it
    memory: str               # memory (and memory+swap) of each build step
    cpus: int                 # CPUs a build step may use
    network: bool             # whether setup scripts reach the network (pip install); false for air-gapped boxes
    max_image_growth: str     # how much larger than the runner image a team image may be


def parse_size(text: str) -> int:
    """Bytes in a size such as "512m", "16g" or "1024" (k, m, g, t: powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 512m, 16g)")
    return int(float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " "))


@dataclass(frozen=True)
class Box:
    expected_gpu: str


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metrics: tuple[str, ...]
    ranking_metric: str
    input_file: str
    gold_file: str
    max_seq_length: int
    batch_size: int
    # Host memory an honest model of the competition's size takes during this task's timed passes above what it
    # held after load (its activations, the allocator's caches): the peak checks' allowance (crosscheck,
    # kernel_memory). Calibrated on the bundled teams and the reference (bench/memory_growth.py), never
    # guessed; "" (a spec written before it): crosscheck.PEAK_SLACK_BYTES, the largest any honest load took.
    peak_allowance: str = ""
    # The same for a model run by ONNX Runtime, whose arena keeps what the largest batch took ("": peak_allowance).
    peak_allowance_onnx: str = ""
    # The same on a GPU, where the CUDA libraries load kernels for the team's shapes on first use, in host
    # memory too ("": PEAK_SLACK_BYTES, above the 282-502 MiB peaks honest tiny models took on an H200).
    peak_allowance_gpu: str = ""

    def peak_allowance_bytes(self, onnx: bool = False, device: str = "cpu") -> int:
        """The peak allowance in bytes: on a GPU the GPU one; else a model whose count found ONNX initializers
        gets the ONNX one."""
        if device.split(":")[0] not in ("", "cpu"):
            return parse_size(self.peak_allowance_gpu) if self.peak_allowance_gpu else PEAK_SLACK_BYTES
        text = (self.peak_allowance_onnx if onnx else "") or self.peak_allowance
        return parse_size(text) if text else PEAK_SLACK_BYTES


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    limits: Limits
    formula: Formula
    timing: Timing
    reference: Reference
    sandbox: Sandbox
    build: Build
    box: Box
    tasks: tuple[TaskSpec, ...]
    path: Path
    sha256: str

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"spec {self.name!r} has no task {name!r}; it has: {', '.join(self.task_names)}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self.tasks)


_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,), tuple[str, ...]: (list,)}


def _build(cls: type, table: Any, where: str, path: Path, extra: dict[str, Any] | None = None) -> Any:
    """Build one dataclass from one TOML table, naming `path` and the key on any problem; a key whose field has
    a default may be left out."""
    if not isinstance(table, dict):
        raise SpecError(f"{path}: [{where}] must be a table")
    wanted = {f.name: f.type for f in fields(cls) if f.name not in (extra or {})}
    optional = {f.name for f in fields(cls) if f.default is not MISSING}
    unknown = sorted(set(table) - set(wanted))
    if unknown:
        raise SpecError(f"{path}: unknown key {where}.{unknown[0]} (known keys: {', '.join(wanted)})")
    values = dict(extra or {})
    for key, type_name in wanted.items():
        if key not in table:
            if key in optional:
                continue
            raise SpecError(f"{path}: missing key {where}.{key}")
        value = table[key]
        kind = {"int": int, "float": float, "str": str, "bool": bool, "tuple[str, ...]": tuple[str, ...]}[type_name]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, _TYPES[kind]):
            raise SpecError(f"{path}: {where}.{key} must be {type_name}, got {value!r}")
        if kind is tuple[str, ...]:
            if not all(isinstance(item, str) for item in value):
                raise SpecError(f"{path}: {where}.{key} must be a list of strings, got {value!r}")
            value = tuple(value)
        values[key] = float(value) if kind is float else value
    return cls(**values)


def _check(spec: Spec) -> None:
    """Rules that single keys cannot express; raise SpecError naming the key."""
    path = spec.path
    if spec.limits.max_params <= 0:
        raise SpecError(f"{path}: limits.max_params must be positive")
    if spec.limits.min_speedup <= 0:
        raise SpecError(f"{path}: limits.min_speedup must be positive")
    for key in ("size_aggregate", "time_aggregate"):
        if getattr(spec.formula, key) not in AGGREGATES:
            raise SpecError(f"{path}: formula.{key} must be one of {', '.join(AGGREGATES)}")
    if spec.formula.size_factor <= 0:
        raise SpecError(f"{path}: formula.size_factor must be positive")
    _check_timing(spec.timing, path)
    if spec.reference.precision not in PRECISIONS:
        raise SpecError(f"{path}: reference.precision must be one of {', '.join(PRECISIONS)}")
    if spec.reference.padding not in ("max_length", "longest"):
        raise SpecError(f"{path}: reference.padding must be 'max_length' or 'longest'")
    sizes = [("sandbox", key) for key in ("memory", "shm_size", "tmp_size", "log_max_size")]
    for section, key in [*sizes, ("build", "memory"), ("build", "max_image_growth")]:
        where, value = f"{section}.{key}", getattr(getattr(spec, section), key)
        try:
            parse_size(value)
        except ValueError as exc:
            raise SpecError(f"{path}: {where}: {exc}") from None
    if spec.build.timeout_s <= 0 or spec.build.cpus < 1:
        raise SpecError(f"{path}: build.timeout_s must be positive and build.cpus >= 1")
    if not spec.tasks:
        raise SpecError(f"{path}: no [[tasks]] defined")
    seen: set[str] = set()
    for i, task in enumerate(spec.tasks):
        where = f"tasks[{i}]"
        if task.name in seen:
            raise SpecError(f"{path}: {where}.name {task.name!r} appears twice")
        seen.add(task.name)
        if task.ranking_metric not in task.metrics:
            raise SpecError(f"{path}: {where}.ranking_metric {task.ranking_metric!r} is not in its metrics")
        module = TASKS.get(task.name)
        if module is not None and task.ranking_metric not in module.metrics:
            raise SpecError(f"{path}: {where}.ranking_metric {task.ranking_metric!r} is not a metric the "
                            f"{task.name} scorer computes ({', '.join(module.metrics)})")
        if task.batch_size < 1 or task.max_seq_length < 1:
            raise SpecError(f"{path}: {where}.batch_size and max_seq_length must be >= 1")
        for key in ("peak_allowance", "peak_allowance_onnx", "peak_allowance_gpu"):
            try:
                parse_size(getattr(task, key) or "0")
            except ValueError as exc:
                raise SpecError(f"{path}: {where}.{key}: {exc}") from None


def _check_timing(t: Timing, path: Path) -> None:
    if t.rounds < 2:
        raise SpecError(f"{path}: timing.rounds must be >= 2 (the caching audit compares first sight with the later rounds)")
    if t.max_rounds < t.rounds:
        raise SpecError(f"{path}: timing.max_rounds must be >= timing.rounds")
    if not 0 < t.confidence < 1:
        raise SpecError(f"{path}: timing.confidence must be between 0 and 1 (e.g. 0.95)")
    if t.warmup_min_s < 0 or t.warmup_max_s < t.warmup_min_s:
        raise SpecError(f"{path}: timing.warmup_min_s must be >= 0 and timing.warmup_max_s >= warmup_min_s")
    if t.settle_tolerance <= 0 or t.caching_tolerance <= 0:
        raise SpecError(f"{path}: timing.settle_tolerance and timing.caching_tolerance must be positive")
    if t.threads < 0:
        raise SpecError(f"{path}: timing.threads must be >= 0 (0: as many as the sandbox's CPUs)")
    for key in ("target_half_width", "target_half_width_cpu"):
        if not 0 <= getattr(t, key) < 1:
            raise SpecError(f"{path}: timing.{key} must be >= 0 and < 1 (relative, e.g. 0.03 for +-3%; 0: no target)")
    if not t.max_timing_s > 0:
        raise SpecError(f"{path}: timing.max_timing_s must be positive (seconds of rounds per task)")


def load_spec(path: str | Path | None = None) -> Spec:
    """Read and validate a spec file (the bundled NLPCC 2020 spec when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_SPEC
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}") from exc
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from exc

    sections = {"limits": Limits, "formula": Formula, "timing": Timing, "reference": Reference,
                "sandbox": Sandbox, "build": Build, "box": Box}
    known = {"name", "title", "tasks", *sections}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"{path}: unknown key {unknown[0]} (known: {', '.join(sorted(known))})")
    for key in ("name", "title"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise SpecError(f"{path}: missing key {key} (a non-empty string)")
    built = {key: _build(cls, raw.get(key), key, path) for key, cls in sections.items()}
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list):
        raise SpecError(f"{path}: missing key tasks (use [[tasks]] tables)")
    tasks = tuple(_build(TaskSpec, table, f"tasks[{i}]", path) for i, table in enumerate(tasks_raw))
    spec = Spec(name=raw["name"], title=raw["title"], tasks=tasks, path=path.resolve(),
                sha256=hashlib.sha256(raw_bytes).hexdigest(), **built)
    _check(spec)
    return spec
