"""One team measured against the reference: both workers up at once, every task through the timekeeper.

The host starts a worker for the team and one for the BERT-base reference (each behind its own socket, in
its own process or container), hands every task to harness.timekeeper, scores the first-sight predictions
in memory against the gold it never sends, and only then writes files, into folders the team never had.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from harness import replies, stats
from harness.backends.base import Backend, Built, log_tail
from harness.crosscheck import (child_resident, device_overhead, peak_bytes, reset_peaks, resident_bytes,
                                tree_pids, unexplained_device, unexplained_memory)
from harness.gpu import device_memory_reading, process_memory_bytes
from harness.kernel_memory import KernelLedger
from harness.device_activity import DrainGuard
from harness.data_files import executable_mappings, merge_code_maps
from harness.precision import STRICT_FP32
from harness.probe import channel
from harness.progress import Progress, no_progress
from harness.records import MeasuredSide
from harness.safe_files import fresh_dir
from harness.spec import Spec
from harness.tasks import get_task
from harness.time_split import SplitRecorder, own_split_pass
from harness.timed_inputs import make_batches
from harness.timekeeper import SideTimes, TaskTimes, TimingPlan, host_gc_paused, measure_task
from harness.worker_link import WorkerFailed, WorkerLink, WorkerTimeout, call_together

@dataclass(frozen=True)
class WorkerSpec:
    """What to start and load on one side."""

    name: str                      # team or reference
    built: Built
    predictor: str                 # module:Class
    timeout_s: float
    options: Callable[[str], dict[str, Any]] = lambda task: {}
    precision: str = "free"


@dataclass
class Measured:
    """Everything the timekeeper learned about one team and the reference, per task."""

    tasks: dict[str, MeasuredSide] = field(default_factory=dict)         # team side, per task
    reference: dict[str, MeasuredSide] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    reference_environment: dict[str, Any] = field(default_factory=dict)
    timed_out: str = ""
    error: str = ""
    code_maps: dict | None = None    # files the team's workers mapped executable after load (None: unread)


class ReferenceFailed(RuntimeError):
    """The reference worker failed: no fair row can be written."""


@contextmanager
def running_worker(backend: Backend, side: WorkerSpec, log_path: Path) -> Iterator[WorkerLink]:
    """A started, connected worker; stopped, killed and cleaned up on the way out, whatever happened."""
    channel_dir = Path(tempfile.mkdtemp(prefix=f"harness-channel-{os.getpid()}-"))   # short: socket paths are limited
    os.chmod(channel_dir, 0o755)
    server, _ = channel.listen(channel_dir)
    handle = backend.start_worker(side.built, channel_dir, log_path)
    link = None
    try:
        link = WorkerLink.accept(side.name, server, handle.alive, time.monotonic() + side.timeout_s, handle.pid,
                                 handle)
        link.kernel = worker_ledger(handle)
        yield link
    except WorkerFailed as exc:
        if not exc.side:
            exc.side = side.name
        if isinstance(exc, WorkerTimeout) and exc.side == side.name:
            handle.kill()              # past its deadline: no polite stop
        raise
    finally:
        try:
            if link is not None:
                ledger(link).close()
                link.stop()            # a dead or killed worker only makes the polite stop fail quietly
        finally:
            handle.close()
            server.close()
            shutil.rmtree(channel_dir, ignore_errors=True)


def worker_cgroup(handle: Any) -> tuple[Any, str]:
    """The worker's memory cgroup from its backend's handle (harness.kernel_memory), or (None, why not)."""
    find = getattr(handle, "memory_cgroup", None)
    return find() if find is not None else (None, "this backend gives no cgroup for its workers")


def worker_ledger(handle: Any) -> KernelLedger:
    """A kernel memory ledger for the worker behind `handle` (a forked one's copy-on-write pages said)."""
    return KernelLedger(*worker_cgroup(handle), forked=bool(getattr(handle, "forked", False)),
                        required=bool(getattr(handle, "kernel_memory_required", True)))


NO_CGROUP = KernelLedger(None, "no cgroup: the worker was not started through running_worker")


def ledger(link: WorkerLink) -> KernelLedger:
    """The worker's kernel memory ledger (running_worker gives each one)."""
    return getattr(link, "kernel", NO_CGROUP)


def check_reference_precision(link: WorkerLink, precision: str) -> dict[str, Any]:
    """The reference's precision settings, verified against the spec's pin right before timing."""
    _, reply = link.call("precision")
    state = replies.precision(reply, link.name)
    if precision == "fp32-strict":
        wrong = {k: state.get(k) for k, v in STRICT_FP32.items() if state.get(k) != v}
        wrong.update({k: v for k, v in state.items() if k.endswith("fp32_precision") and v not in ("ieee", "none")})
        if wrong:
            raise ReferenceFailed(f"reference precision is not fp32-strict right before timing: {wrong}")
    return state


def side_record(side: SideTimes, rounds: list[list[float]], n_examples: int) -> MeasuredSide:
    time_s = statistics.fmean(sum(r) for r in rounds)
    return {"time_s": time_s, "time_per_example_s": time_s / n_examples, "load_s": side.load_s,
            "first_call_s": side.first_call_s, "warmup_windows_s": side.warmup_windows_s,
            "rounds_s": side.rounds, "scored_rounds_s": rounds}


def task_records(name: str, times: TaskTimes, n_examples: int, plan: TimingPlan
                 ) -> tuple[MeasuredSide, MeasuredSide]:
    """(team record, reference record) of one timed task; the team's T from first sight only unless the caching
    audit lets the later rounds count (stats.caching_audit)."""
    team, ref = times.team, times.reference
    audit = stats.caching_audit(team.rounds, team.flanks_s, ref.rounds, ref.flanks_s,
                                plan.caching_tolerance, confidence=plan.confidence)
    scored = team.rounds if audit.later_rounds_count else team.rounds[:1]
    team_record = side_record(team, scored, n_examples)
    team_record.update(caching_suspected=audit.suspected, first_sight_ratio=audit.team_ratio,
                       reference_first_sight_ratio=audit.reference_ratio, caching_audit=audit.record(),
                       first_sight_block=times.first_sight_block, first_sight_flanks_s=team.flanks_s,
                       orders=times.orders, warmup_settled=times.warmup_settled, warmup_s=times.warmup_s,
                       box=times.box, interval=vars(times.interval) if times.interval else None,
                       **times.interval_record(), **times.freezing.record(), device_drain=times.drain.as_dict(),
                       time_split=dict(times.time_split.get("team", {})))
    return team_record, {**side_record(ref, ref.rounds, n_examples),
                         "time_split": dict(times.time_split.get("reference", {}))}


def worker_log(log_dir: Path, task: str) -> Path:
    """The team worker's log for one task (a fresh worker per task)."""
    return log_dir / f"worker-{task}.log"


def measure_against_reference(backend: Backend, team: WorkerSpec, reference: WorkerSpec, spec: Spec,
                              inputs: dict[str, list[dict[str, Any]]], tasks: tuple[str, ...], plan: TimingPlan,
                              device: str, threads: int, log_dir: Path, predictions_dir: Path,
                              box_snapshot: Callable[[], dict[str, Any]] = dict,
                              progress: Progress = no_progress) -> tuple[Measured, dict]:
    """Time `tasks`; returns the measurements and the scored (first-sight) predictions. `progress` hears
    where each task's timing stands (harness.progress), numbered among `tasks`, between timed windows only.

    One reference worker serves every task; the team gets a fresh worker per task (its log
    worker-TASK.log), so no team code has run in it when the host reads the memory baseline, and nothing a
    team's code left running in one task (a finalizer, a thread) reaches the next. The team's deadline
    (`team.timeout_s`) covers all its workers together."""
    measured, predictions = Measured(), {}
    deadline = time.monotonic() + team.timeout_s
    log = log_dir / "worker.log"
    try:
        with backend.worker_pool(team.built, log_dir / "team-forkserver.log"), \
                backend.worker_pool(reference.built, log_dir / "reference-forkserver.log"), \
                running_worker(backend, reference, log_dir / "reference.log") as ref_link:
            for number, name in enumerate(tasks, 1):
                log = worker_log(log_dir, name)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerTimeout("team worker passed its deadline", "team")
                spawning = time.monotonic()
                with running_worker(backend, replace(team, timeout_s=remaining), log) as team_link:
                    start_s = time.monotonic() - spawning     # the team's fresh worker forked and connected
                    carry_on = _measure_task(team_link, ref_link, name, team, reference, spec, inputs, plan,
                                             device, threads, box_snapshot, measured, predictions,
                                             numbered(progress, number, len(tasks)))
                if "phase_s" in measured.tasks.get(name, {}):
                    measured.tasks[name]["phase_s"]["start"] = start_s
                measured.reference_environment = _environment(ref_link)
                if not carry_on:
                    break
    except WorkerTimeout as exc:
        if exc.side == "reference":
            raise ReferenceFailed(str(exc)) from exc
        measured.timed_out = f"timed out after {team.timeout_s:g} s and was killed"
    except WorkerFailed as exc:
        if exc.side == "reference":
            raise ReferenceFailed(str(exc)) from exc
        tail = log_tail(log, 1)
        measured.error = f"{exc}" + (f": {tail}" if tail else "")
    write_predictions(predictions, predictions_dir)
    return measured, predictions


def _measure_task(team_link: WorkerLink, ref_link: WorkerLink, name: str, team: WorkerSpec, reference: WorkerSpec,
                  spec: Spec, inputs: dict[str, list[dict[str, Any]]], plan: TimingPlan, device: str, threads: int,
                  box_snapshot: Callable[[], dict[str, Any]], measured: Measured,
                  predictions: dict[str, list[dict[str, Any]]], progress: Progress = no_progress) -> bool:
    """One task on a fresh team worker, into `measured`; False when the team's worker died (stop there)."""
    ts = spec.task(name)
    loads = {side.name: {"task": name, "device": device, "options": side.options(name),
                         "seed": plan.seed, "precision": side.precision, "threads": threads,
                         "team_dir": side.built.team_dir, "predictor": side.predictor}
             for side in (team, reference)}
    precision: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    try:
        preparing = time.monotonic()
        baseline = prepared_memory(team_link, ref_link, device)
        prepare_s = time.monotonic() - preparing
        with host_gc_paused():      # no full collection of the host's heap inside a timed call
            times = measure_task(team_link, ref_link, name, inputs[name], ts.batch_size, plan, loads,
                                 box_snapshot, lambda: precision.update(
                                     check_reference_precision(ref_link, reference.precision)),
                                 lambda: loaded.update(read_after_load(team_link, ref_link, baseline)), DrainGuard(),
                                 progress=progress, split=SplitRecorder())
        auditing = time.monotonic()      # the checks after the rounds: peaks, caching audit, both counts
        peaks = read_peaks(team_link, ref_link, baseline)
        team_record, ref_record = task_records(name, times, len(inputs[name]), plan)
        own = own_split_pass({"team": team_link, "reference": ref_link}, make_batches(inputs[name], ts.batch_size))
        team_record["time_split"]["own"], ref_record["time_split"]["own"] = own["team"], own["reference"]
        # the reference's worker runs no team code: nothing can hide in it, so no process-wide scan there
        team_reply, ref_reply = call_together((team_link, ref_link), "params",
                                              per_link=({}, {"scan_process": False}))
        team_params = replies.param_report(team_reply, team_link.name)
        ref_params = replies.param_report(ref_reply, ref_link.name)
        team_record["phase_s"] = {"prepare": prepare_s, **times.phase_s, "audit": time.monotonic() - auditing}
    except WorkerTimeout as exc:
        if exc.side == "reference":
            raise ReferenceFailed(str(exc)) from exc
        measured.tasks[name] = {"ok": False, "error": f"timed out after {team.timeout_s:g} s and was killed"}
        measured.environment = _environment(team_link)
        raise
    except WorkerFailed as exc:
        if exc.side == "reference":
            raise ReferenceFailed(str(exc)) from exc
        measured.tasks[name] = {"ok": False, "error": str(exc)}
        measured.environment = _environment(team_link)
        if not team_link_alive(team_link):
            measured.error = f"the team's worker died during {name}: {exc}"
            return False
        return True
    measured.code_maps = merge_code_maps(measured.code_maps, loaded.get("team_code"))
    counted = larger_count(loaded["team_params"], team_params)
    ran_on = str(ref_link.environment.get("device") or device)   # the reference's word (harness code), not the team's
    allowance = ts.peak_allowance_bytes(onnx=bool(counted.get("onnx_params")), device=ran_on)
    team_record.update(ok=True, params=counted, device_memory_bytes=worker_memory(team_link, device),
                       memory_growth_bytes=loaded["team_growth"], memory_peak_bytes=peaks["team"],
                       peak_unreadable=baseline.get("team_peak_unreadable") or peaks.get("team_why"),
                       baseline_note=baseline["team_note"],
                       **unexplained_memory(counted, loaded["team_growth"], peaks["team"]), **loaded["team_children"],
                       onnx_sessions=onnx_sessions(loaded["team_params"], team_params),
                       **ledger(team_link).record(allowance))
    ref_record.update(params=ref_params, precision=precision,
                      device_memory_bytes=worker_memory(ref_link, device),
                      memory_growth_bytes=loaded["reference_growth"], memory_peak_bytes=peaks["reference"],
                      **unexplained_memory(ref_params, loaded["reference_growth"], peaks["reference"]),
                      **ledger(ref_link).record(ts.peak_allowance_bytes(device=ran_on)))
    if device_checked(device, ref_link):
        team_device, ref_device = device_load_records(baseline, loaded, ref_params)
        team_record.update(team_device)
        ref_record.update(ref_device)
    measured.tasks[name], measured.reference[name] = team_record, ref_record
    measured.environment = _environment(team_link)
    predictions[name] = times.team.predictions[0]
    return True


def numbered(progress: Progress, number: int, tasks: int) -> Progress:
    """`progress` with each event marked as task `number` of `tasks` (no-op progress stays one)."""
    if progress is no_progress:
        return progress
    return lambda event: progress(replace(event, task_number=number, tasks=tasks))


def prepared_memory(team: WorkerLink, reference: WorkerLink, device: str) -> dict[str, Any]:
    """Both workers `prepare` (drop the last model, import their libraries, start their device); then the
    host reads each one's resident memory: the baseline of the memory cross-check. The team's worker is
    fresh for this task, so none of the team's code has run in it yet. The peaks start afresh here
    (reset_peaks); a peak that cannot be reset is said (`*_peak_unreadable`) and not read."""
    _, team_reply = call_together((reference, team), "prepare", device=device)
    baseline: dict[str, Any] = {"team": resident_bytes(team.host_pid), "reference": resident_bytes(reference.host_pid),
                                "team_note": replies.baseline_note(team_reply, team.name)}
    for name, link in (("team", team), ("reference", reference)):
        baseline[f"{name}_peak_unreadable"] = reset_peaks(link.host_pid)
        ledger(link).mark("baseline")
    if device != "cpu":
        baseline.update(device_readings(team, reference))
    return baseline


def device_readings(team: WorkerLink, reference: WorkerLink) -> dict[str, tuple[int | None, str]]:
    """Each worker's device memory now (NVML, its whole process tree by host pid): (bytes, why not)."""
    return {f"{name}_device": device_memory_reading(tree_pids(link.host_pid))
            for name, link in (("team", team), ("reference", reference))}


def device_checked(device: str, reference: WorkerLink) -> bool:
    """Whether the device check at load applies: a device other than the CPU was asked for and the reference's
    worker (harness code, on the same box) says it loaded on one; the team's own word is not asked."""
    return device != "cpu" and str(reference.environment.get("device") or "").split(":")[0] not in ("", "cpu")


def device_load_records(baseline: dict[str, Any], loaded: dict[str, Any],
                        ref_report: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(team, reference) device check at load (crosscheck.unexplained_device): the reference's growth beyond
    its counted device bytes is the calibration of the team's allowance, for this task, on this box."""
    missing = (None, "not read")
    ref_before, ref_after = baseline.get("reference_device", missing), loaded.get("reference_device", missing)
    overhead = device_overhead(ref_report, ref_before[0], ref_after[0])
    ref_why = ref_before[1] or ref_after[1]
    team = unexplained_device(loaded["team_params"], baseline.get("team_device", missing),
                              loaded.get("team_device", missing), overhead, ref_why)
    reference = unexplained_device(ref_report, ref_before, ref_after, None)
    reference["device_check_note"] = "" if overhead is not None else reference["device_check_note"]
    reference["device_allowance_bytes"] = None    # the calibration itself: nothing is allowed or flagged here
    return team, reference


def read_peaks(team: WorkerLink, reference: WorkerLink, baseline: dict[str, Any]) -> dict[str, Any]:
    """Each worker's peak resident memory since this task's prepare, less its baseline (None if unreadable,
    and `NAME_why` says why), and its cgroup's readings after the passes (kernel_memory)."""
    found: dict[str, Any] = {}
    for name, link in (("team", team), ("reference", reference)):
        peak, before = peak_bytes(link.host_pid), baseline.get(name)
        readable = not baseline.get(f"{name}_peak_unreadable") and peak is not None and before is not None
        found[name] = peak - before if readable else None
        if peak is None:
            found[f"{name}_why"] = ("the peak resident memory could not be read after the passes: a process of the "
                                    "worker's tree gave no VmHWM (gone, or exited and not yet reaped: a zombie)")
        elif before is None:
            found[f"{name}_why"] = "the resident memory after prepare (the peak's baseline) could not be read"
        ledger(link).mark("after_passes")
    return found


def read_after_load(team: WorkerLink, reference: WorkerLink, baseline: dict[str, Any]) -> dict[str, Any]:
    """What loading took, read by the host (resident memory, from /proc; device memory, from NVML, when the
    baseline has it), and the team's count after load."""
    found: dict[str, Any] = {}
    for name, link in (("team", team), ("reference", reference)):
        now, before = resident_bytes(link.host_pid), baseline.get(name)
        found[f"{name}_growth"] = now - before if now is not None and before is not None else None
        ledger(link).mark("after_load")
    found["team_children"] = child_resident(team.host_pid) or {}
    if "team_device" in baseline:
        found.update(device_readings(team, reference))
    found["team_code"] = executable_mappings(team.host_pid)   # code vs data for the weight-file check
    _, reply = team.call("params")
    found["team_params"] = replies.param_report(reply, team.name)
    for link in (team, reference):       # the passes' stretch begins here, after the count (kernel_memory)
        ledger(link).mark("before_passes")
    return found


def larger_count(after_load: dict[str, Any], after_passes: dict[str, Any]) -> dict[str, Any]:
    """The report with the larger count (the limit is checked on it), both counts and every flag kept."""
    report = dict(after_passes if after_passes["counted"] >= after_load["counted"] else after_load)
    report.update(counted_after_load=after_load["counted"], counted_after_passes=after_passes["counted"],
                  flags=list(dict.fromkeys([*after_load.get("flags", []), *after_passes.get("flags", [])])),
                  hidden_where=list(dict.fromkeys([*after_load.get("hidden_where", []),
                                                   *after_passes.get("hidden_where", [])])))
    return report


def onnx_sessions(after_load: dict[str, Any], after_passes: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The team's ONNX Runtime sessions and their providers (the team's own word, validated by replies), as
    reported after the passes: the sessions that were timed, a lazy predictor's first-call ones included (a
    session dropped before then did not run the passes). The after-load report's only when the later one
    does not carry the field; None when neither does."""
    return after_passes.get("onnx_sessions", after_load.get("onnx_sessions"))


def worker_memory(link: WorkerLink, device: str) -> int | None:
    """Device memory the worker holds after the timed passes, from NVML on the host (GPU only): the caching
    allocator's cache of the largest batch's activations included, so reported, never compared with
    anything (the weights are checked right after load: device_load_records)."""
    return process_memory_bytes(link.host_pid) if device != "cpu" else None


def team_link_alive(link: WorkerLink) -> bool:
    try:
        link.call("precision")
        return True
    except WorkerFailed:
        return False


def _environment(link: WorkerLink) -> dict[str, Any]:
    return {**link.environment, "protocol": link.hello.get("protocol")}


def predictions_file(task: str) -> str:
    return f"{task}_predict.json"


def write_predictions(predictions: dict[str, list[dict[str, Any]]], folder: Path) -> None:
    """The scored predictions in the official formats, into a folder made fresh (after the workers stopped)."""
    fresh_dir(folder)
    for name, records in predictions.items():
        get_task(name).write_predictions(records, folder / predictions_file(name))
