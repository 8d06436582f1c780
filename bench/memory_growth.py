"""Benchmark: the resident memory each bundled team and the reference take at load, against their counts.

Calibrates harness.crosscheck.RESIDENT_SLACK_BYTES. For every task of every team it does what the harness
does: the worker `prepare`s (drops the last model, imports its libraries, starts its device), the host reads
the worker's resident memory from /proc, the worker loads the task's model, the host reads it again. It
prints the growth, the parameters counted, what the growth leaves unexplained beyond 4 bytes a counted
parameter, and whether the row would be flagged `weights_unaccounted`.

    python bench/memory_growth.py [--device cpu] [--teams demo_team,roberta_tiny_team,...]
Builds the teams with the local backend (their setup.sh) in a temporary folder; runs on a GPU box too.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness.backends.local import LocalBackend
from harness.crosscheck import BYTES_PER_PARAM, RESIDENT_SLACK_BYTES, resident_bytes, unaccounted_weights
from harness.measurement import WorkerSpec, running_worker
from harness.pipeline import REFERENCE_DIR, REFERENCE_PREDICTOR, reference_options
from harness.spec import load_spec
from harness.submission import load_submission

REPO = Path(__file__).resolve().parents[1]
TEAMS = ("demo_team", "roberta_tiny_team", "albert_tiny_team", "onnx_team")
MiB = 2**20


def measure(backend, side: WorkerSpec, tasks, device: str, options, precision: str, work: Path, limit: int):
    rows = []
    with running_worker(backend, side, work / f"{side.name}.log") as link:
        for task in tasks:
            link.call("prepare", device=device)
            before = resident_bytes(link.host_pid)
            link.call("load", task=task, device=device, options=options(task), seed=2020, precision=precision,
                      threads=0, team_dir=side.built.team_dir, predictor=side.predictor)
            growth = resident_bytes(link.host_pid) - before
            counted = link.call("params")[1]["report"]["counted"]
            unexplained = growth - BYTES_PER_PARAM * counted
            flagged = unaccounted_weights(counted, limit, memory_growth=growth) is not None
            rows.append((side.name, task, counted, growth, unexplained, flagged))
            print(f"{side.name:>18} {task:>12}  counted {counted:>12,}  growth {growth / MiB:8.1f} MiB  "
                  f"beyond 4 B/param {unexplained / MiB:8.1f} MiB  {'FLAGGED' if flagged else 'ok'}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teams", default=",".join(TEAMS))
    args = parser.parse_args()
    spec = load_spec(None)
    limit = spec.limits.max_params
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
            rows += measure(backend, side, submission.tasks, args.device, lambda task: {}, "free", work, limit)
        reference = WorkerSpec("reference", backend.build_reference(REFERENCE_DIR, Path(tmp) / "reference"),
                               REFERENCE_PREDICTOR, 900)
        (Path(tmp) / "reference").mkdir(exist_ok=True)
        rows += measure(backend, reference, [t.name for t in spec.tasks], args.device, reference_options(spec),
                        spec.reference.precision, Path(tmp) / "reference", limit)
    teams = [r for r in rows if r[0] != "reference"]
    print(f"largest growth beyond 4 B/param among the bundled teams: {max(r[4] for r in teams) / MiB:.1f} MiB; "
          f"slack in harness.crosscheck: {RESIDENT_SLACK_BYTES / MiB:.0f} MiB; "
          f"flagged: {sum(r[5] for r in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
