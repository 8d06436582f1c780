"""Benchmark: the host memory each bundled team and the reference take beyond their counted weights.

Calibrates harness.crosscheck.RESIDENT_SLACK_BYTES and PEAK_SLACK_BYTES. Per team it does what the harness
does: a fresh worker per task; after its `prepare` (no team code run yet) the host reads its resident
memory (from /proc, the whole process tree), the baseline, and resets its peaks (clear_refs); `load`, the
resident memory read; three passes of predict() over the task's
sample data in batches of the spec's size; the peak (VmHWM) read. It prints the counted bytes the worker
reports, the resident and peak growth over the baseline, what they leave unexplained, and whether the row
would be flagged `weights_unaccounted`.

On a GPU (--device cuda) it also calibrates the device check at load (crosscheck.unexplained_device): the
host reads each fresh worker's device memory (NVML, its whole tree) after prepare and right after load, and
prints the growth beyond the device bytes the worker counted: the reference's figure is what the harness
takes as its allowance's base per task, the small teams' show whether an honest load stays inside that plus
DEVICE_MARGIN_BYTES, and the host growth beside it shows what the host copy of device weights and CUDA's
lazily loaded code take (crosscheck.HOST_COPY_BYTES). On the CPU the device figures are printed as n/a.

Each side is measured twice, side by side: with workers forked from the local backend's fork server (what
`harness run --backend local` does) and with workers started from scratch (what a Docker container is).

    python bench/memory_growth.py [--device cpu] [--teams demo_team,roberta_tiny_team,...] [--data-dir DIR]
        [--starts fork,plain]
Builds the teams with the local backend (their setup.sh) in a temporary folder; runs on a GPU box too.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import nullcontext
from pathlib import Path

from harness.backends.local import LocalBackend
from harness.crosscheck import (DEVICE_MARGIN_BYTES, PEAK_SLACK_BYTES, RESIDENT_SLACK_BYTES, device_allowance,
                                explained_device_bytes, memory_reasons, peak_bytes, reset_peaks, resident_bytes,
                                tree_pids, unexplained_memory)
from harness.gpu import device_memory_reading
from harness.measurement import WorkerSpec, running_worker
from harness.paths import REFERENCE_DIR, REFERENCE_PREDICTOR, SAMPLE_DATA_DIR
from harness.pipeline import prepare_inputs, reference_options
from harness.spec import load_spec
from harness.submission import load_submission

REPO = Path(__file__).resolve().parents[1]
TEAMS = ("demo_team", "roberta_tiny_team", "albert_tiny_team", "onnx_team")
MiB = 2**20


def measure(backend, side: WorkerSpec, tasks, device: str, options, precision: str, work: Path, spec,
            data_dir: Path, start: str):
    rows = []
    pool = backend.worker_pool(side.built, work / f"{side.name}-forkserver.log") if start == "fork" else nullcontext()
    with pool:
        for task in tasks:
            rows.append(measure_task(backend, side, task, device, options, precision, work, spec, data_dir, start))
    return rows


def measure_task(backend, side: WorkerSpec, task: str, device: str, options, precision: str, work: Path, spec,
                 data_dir: Path, start: str):
    with running_worker(backend, side, work / f"{side.name}-{task}-{start}.log") as link:   # fresh, as the harness
        link.call("prepare", device=device)
        baseline = resident_bytes(link.host_pid)
        device_before = device_reading(link.host_pid, device)
        unreadable = reset_peaks(link.host_pid)
        link.call("load", task=task, device=device, options=options(task), seed=2020, precision=precision,
                  threads=0, team_dir=side.built.team_dir, predictor=side.predictor)
        growth = resident_bytes(link.host_pid) - baseline
        device_after = device_reading(link.host_pid, device)
        examples = prepare_inputs(spec, data_dir, None).inputs[task]
        size = spec.task(task).batch_size
        for _ in range(3):
            for first in range(0, len(examples), size):
                link.call("predict", batch=examples[first:first + size])
        peak = None if unreadable else peak_bytes(link.host_pid) - baseline
        report = link.call("params")[1]["report"]
    found = unexplained_memory(report, growth, peak)
    flagged = bool(memory_reasons(found))
    on_device = device_figures(report, device_before, device_after)
    peak_text = "unreadable" if peak is None else f"{found['unexplained_peak_bytes'] / MiB:8.1f}"
    print(f"{side.name:>18} {task:>12} {start:>5}  counted {report['counted']:>12,} "
          f"({found['explained_bytes'] / MiB:6.1f} MiB)  growth {growth / MiB:7.1f}  beyond: resident "
          f"{found['unexplained_resident_bytes'] / MiB:7.1f} (slack {found['resident_slack_bytes'] / MiB:4.1f})  peak "
          f"{peak_text} MiB  {'FLAGGED' if flagged else 'ok'}",
          flush=True)
    print(f"{'':>18} {task:>12} {start:>5}  device: {on_device['text']}; host growth beyond the counted host "
          f"bytes {(growth - min(report.get('counted_cpu_bytes', 0), 4 * report['counted'])) / MiB:.1f} MiB",
          flush=True)
    return side.name, task, start, report["counted"], found, flagged, on_device


def device_reading(pid: int | None, device: str) -> tuple[int | None, str]:
    """The worker tree's device memory (NVML), or why not; n/a on the CPU."""
    if device == "cpu":
        return None, "n/a on the CPU"
    return device_memory_reading(tree_pids(pid))


def device_figures(report: dict, before: tuple[int | None, str], after: tuple[int | None, str]) -> dict:
    """The device growth at load, the counted device bytes and the growth beyond them (None when unread)."""
    counted = explained_device_bytes(report)
    if before[0] is None or after[0] is None:
        return {"beyond": None, "text": f"n/a ({before[1] or after[1]})"}
    growth = after[0] - before[0]
    return {"beyond": growth - counted,
            "text": f"growth at load {growth / MiB:.1f} MiB, counted {counted / MiB:.1f} MiB, beyond "
                    f"{(growth - counted) / MiB:.1f} MiB"}


def device_summary(rows: list, start: str) -> str:
    """Per task, the reference's device overhead at load (the allowance's base) and the worst small team
    beside it, against the allowance the harness would give (device_allowance)."""
    parts = []
    for task in dict.fromkeys(r[1] for r in rows if r[2] == start):
        ref = [r[6]["beyond"] for r in rows if r[0] == "reference" and r[1] == task and r[2] == start]
        teams = [r[6]["beyond"] for r in rows if r[0] != "reference" and r[1] == task and r[2] == start
                 and r[6]["beyond"] is not None]
        allowance = device_allowance(ref[0] if ref else None)
        if allowance is None or not teams:
            parts.append(f"{task} n/a")
            continue
        parts.append(f"{task}: reference {ref[0] / MiB:.1f}, teams at most {max(teams) / MiB:.1f} MiB beyond "
                     f"counted (allowance {allowance / MiB:.1f} = reference + {DEVICE_MARGIN_BYTES / MiB:.0f}; "
                     f"{sum(t > allowance for t in teams)} over)")
    return f"{start}: device at load: " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teams", default=",".join(TEAMS))
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DATA_DIR)
    parser.add_argument("--starts", default="fork,plain", help="fork (the local backend's fork server), plain "
                        "(a worker started from scratch, as in a container), or both")
    args = parser.parse_args()
    starts = args.starts.split(",")
    spec = load_spec(None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="memory-growth-") as tmp:
        backend = LocalBackend(Path(tmp) / "cache")
        for name in args.teams.split(","):
            submission = load_submission(REPO / "baselines" / name, spec)
            work = Path(tmp) / name
            work.mkdir()
            built = backend.build(submission, work)
            if not built.ok:
                raise SystemExit(f"{name}: setup failed, see {built.log_path}")
            side = WorkerSpec(name, built, submission.predictor, 900)
            for start in starts:
                rows += measure(backend, side, submission.tasks, args.device, lambda task: {}, "free", work, spec,
                                args.data_dir, start)
        reference = WorkerSpec("reference", backend.build_reference(REFERENCE_DIR, Path(tmp) / "reference"),
                               REFERENCE_PREDICTOR, 900)
        (Path(tmp) / "reference").mkdir(exist_ok=True)
        for start in starts:
            rows += measure(backend, reference, [t.name for t in spec.tasks], args.device, reference_options(spec),
                            spec.reference.precision, Path(tmp) / "reference", spec, args.data_dir, start)
    for start in starts:
        teams = [r for r in rows if r[0] != "reference" and r[2] == start]
        if not teams:
            continue
        worst = max(teams, key=lambda r: r[4]["unexplained_resident_bytes"] - r[4]["resident_slack_bytes"])
        worst_resident, worst_slack = worst[4]["unexplained_resident_bytes"], worst[4]["resident_slack_bytes"]
        peaks = [r[4]["unexplained_peak_bytes"] for r in teams if r[4]["unexplained_peak_bytes"] is not None]
        print(f"{start}: bundled teams beyond their counted bytes: resident closest to its slack {worst[0]} "
              f"{worst[1]} {worst_resident / MiB:.1f} MiB (its slack {worst_slack / MiB:.1f} MiB; "
              f"{RESIDENT_SLACK_BYTES / MiB:.0f} MiB without ONNX), peak at most "
              f"{max(peaks) / MiB if peaks else float('nan'):.1f} MiB (slack {PEAK_SLACK_BYTES / MiB:.0f} MiB); "
              f"flagged: {sum(r[5] for r in rows if r[2] == start)} of {sum(r[2] == start for r in rows)}")
        print(device_summary(rows, start) if args.device != "cpu" else
              f"{start}: device at load: n/a on the CPU (run with --device cuda on a GPU box)")


if __name__ == "__main__":
    main()
