"""The competition spec: every rule the harness enforces, read once from TOML into frozen dataclasses.

Nothing about NLPCC 2020 is hard-coded elsewhere: limits, the formula, task settings and timing settings all
come from a spec file, so another competition is another file.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"
DEFAULT_SPEC = SPECS_DIR / "nlpcc2020.toml"
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
    warmup_batches: int
    rounds: int
    seed: int
    noisy_spread: float


@dataclass(frozen=True)
class Reference:
    padding: str
    doc_stride: int


@dataclass(frozen=True)
class Sandbox:
    timeout_s: float
    memory: str
    shm_size: str
    pids_limit: int
    cpus: float


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


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    limits: Limits
    formula: Formula
    timing: Timing
    reference: Reference
    sandbox: Sandbox
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


_TYPES = {int: (int,), float: (int, float), str: (str,), tuple[str, ...]: (list,)}


def _build(cls: type, table: Any, where: str, path: Path, extra: dict[str, Any] | None = None) -> Any:
    """Build one dataclass from one TOML table, naming `path` and the key on any problem."""
    if not isinstance(table, dict):
        raise SpecError(f"{path}: [{where}] must be a table")
    wanted = {f.name: f.type for f in fields(cls) if f.name not in (extra or {})}
    unknown = sorted(set(table) - set(wanted))
    if unknown:
        raise SpecError(f"{path}: unknown key {where}.{unknown[0]} (known keys: {', '.join(wanted)})")
    values = dict(extra or {})
    for key, type_name in wanted.items():
        if key not in table:
            raise SpecError(f"{path}: missing key {where}.{key}")
        value = table[key]
        kind = {"int": int, "float": float, "str": str, "tuple[str, ...]": tuple[str, ...]}[type_name]
        if isinstance(value, bool) or not isinstance(value, _TYPES[kind]):
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
    if spec.timing.rounds < 1 or spec.timing.warmup_batches < 0:
        raise SpecError(f"{path}: timing.rounds must be >= 1 and timing.warmup_batches >= 0")
    if spec.reference.padding not in ("max_length", "longest"):
        raise SpecError(f"{path}: reference.padding must be 'max_length' or 'longest'")
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
        if task.batch_size < 1 or task.max_seq_length < 1:
            raise SpecError(f"{path}: {where}.batch_size and max_seq_length must be >= 1")


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
                "sandbox": Sandbox, "box": Box}
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
