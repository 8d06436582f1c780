"""Batch sizes for the bundled sample data, so that a first run's caching audit can decide.

The bundled sample data (baselines/sample_data) holds a dozen examples a task (CMRC2018 nine questions): at
the spec's batch sizes (16; CMRC2018 8) each task is one batch or two, too few for the caching audit's
interval (six batches at 95%), so every row of a newcomer's first run said the audit could not decide. On
that folder only, each task is timed in the largest batches, at most the spec's, that make the audit's
minimum (two examples a batch; one for CMRC2018), and every row notes it. Any other data folder is timed at
the spec's batch sizes: the competition's timed unit is untouched. Growing the sample instead would cost
BERT-base about eight times the CPU time per run (96 examples a task at batches of 16), far over the demo's
few minutes.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from harness.paths import SAMPLE_DATA_DIR
from harness.spec import Spec
from harness.stats import min_audit_batches
from harness.tasks import TaskDataError, get_task


def audit_batch_size(examples: int, spec_batch_size: int, minimum: int) -> int:
    """The largest batch size, at most the spec's, that cuts `examples` into at least `minimum` batches (the
    last one may be short); the spec's own when no size can (fewer examples than batches needed)."""
    if examples < minimum:
        return spec_batch_size
    return next(size for size in range(spec_batch_size, 0, -1) if math.ceil(examples / size) >= minimum)


def examples_in(data_dir: Path, task: str, gold_file: str, max_examples: int | None) -> int:
    """How many examples the task's gold file gives the run; 0 when it cannot be read (the run's own reading
    of it, harness.pipeline.prepare_inputs, says why)."""
    try:
        gold = get_task(task).read_gold(Path(data_dir) / gold_file)
    except TaskDataError:
        return 0
    return len(gold[:max_examples] if max_examples is not None else gold)


def sample_batches(spec: Spec, data_dir: Path, max_examples: int | None) -> tuple[Spec, str]:
    """`spec` with each task's batch size cut down to audit_batch_size when `data_dir` is the bundled sample
    data, and the note every row of the run carries (""; `spec` unchanged, for any other folder, or when no
    size changed)."""
    if Path(data_dir).resolve() != SAMPLE_DATA_DIR.resolve():
        return spec, ""
    minimum = min_audit_batches(spec.timing.confidence)
    tasks = tuple(replace(task, batch_size=audit_batch_size(count, task.batch_size, minimum))
                  if (count := examples_in(data_dir, task.name, task.gold_file, max_examples)) else task
                  for task in spec.tasks)
    changed = [f"{new.name} {new.batch_size} (spec {old.batch_size})" for old, new in zip(spec.tasks, tasks)
               if new.batch_size != old.batch_size]
    if not changed:
        return spec, ""
    return replace(spec, tasks=tasks), (f"bundled sample data timed in batches smaller than the spec's, so that "
                                        f"each task makes the caching audit's {minimum}: {', '.join(changed)}")
