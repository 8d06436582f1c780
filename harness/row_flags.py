"""A team's row's flags and notes from its task records: walks the tasks, asks each check for its wording, and
prefixes each task's with its name ("TASK: ").

The wording of each finding lives beside the check that makes its figure and takes one task's timing record
(or plain values): the probe's count (param_report flags), the caching audit (stats), the freeze (freezing),
the warm-up (timekeeper), predictions with problems and a speedup interval wider than its target (scoring),
device memory at load and the host-memory readings (crosscheck, kernel_memory), the device drain
(device_activity), ONNX Runtime providers (onnx_providers) and the two workers' environments (box). Flags are
findings (look at this team); notes are states of the run that say nothing about the team.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from harness.box import environment_flags, environment_notes
from harness.crosscheck import device_reasons
from harness.device_activity import drain_reasons
from harness.freezing import freeze_flags
from harness.kernel_memory import kernel_notes, memory_flags
from harness.onnx_providers import onnx_provider_flags
from harness.records import TaskResult
from harness.scoring import (TeamScore, prediction_problem_flags, speedup_half_width_flags,
                             task_half_width_flags)
from harness.spec import Spec
from harness.stats import caching_flags, caching_notes
from harness.timekeeper import warmup_notes

Reasons = Callable[[Mapping[str, Any]], list[str]]


def per_task(tasks: Mapping[str, TaskResult], reasons: Reasons) -> list[str]:
    """`reasons` of each task's timing record, each as "TASK: reason", task by task."""
    return [f"{name}: {reason}" for name, info in tasks.items() for reason in reasons(info.timing)]


def measurement_flags(spec: Spec, tasks: Mapping[str, TaskResult], team_env: Mapping[str, Any],
                      ref_env: Mapping[str, Any], notes: list[str] | None = None) -> list[str]:
    """Everything that makes a number less trustworthy, said on the row: the flags (findings: look at this
    team) are returned; states that are expected of a small or CPU run and say nothing about the team (the
    caching audit undecided for too few batches, warm-up not settled, timed on CPU) go to `notes`. The
    environments are the two workers' own words (records.Environment.worker); the device check's calibration
    on the reference is in each task's own record."""
    flags = []
    notes = [] if notes is None else notes
    for name, info in tasks.items():
        timing = info.timing
        audit = timing.get("caching_audit") or {}
        flags += [f"{name}: {flag}" for flag in info.param_report.get("flags", [])]
        flags += [f"{name}: {flag}" for flag in caching_flags(info.caching_suspected, audit)]
        notes += [f"{name}: {note}" for note in caching_notes(info.caching_suspected, audit)]
        flags += [f"{name}: {flag}" for flag in freeze_flags(timing)]
        notes += [f"{name}: {note}" for note in warmup_notes(timing, spec.timing.warmup_max_s)]
        flags += [f"{name}: {flag}" for flag in prediction_problem_flags(info.problems)]
    flags += per_task(tasks, device_reasons)
    flags += per_task(tasks, drain_reasons)
    flags += per_task(tasks, lambda timing: onnx_provider_flags(timing, team_env.get("device")))
    flags += per_task(tasks, memory_flags)
    notes += per_task(tasks, kernel_notes)
    flags += environment_flags(team_env, ref_env, spec.box.expected_gpu)
    notes += environment_notes(team_env)
    return flags


def half_width_flags(tasks: Mapping[str, TaskResult], score: TeamScore, spec: Spec) -> list[str]:
    """A speedup interval left wider than its target: the whole team's, then each task's, with the
    half-width reached against the target and why that task's rounds stopped (max_rounds or max_timing_s)."""
    return [*speedup_half_width_flags(score),
            *per_task(tasks, lambda timing: task_half_width_flags(timing, spec.timing.max_timing_s))]
