"""Benchmark: the probe's own overhead per timed batch, against a bare timing loop, side by side.

For each task, the demo team's predictor is timed two ways on the same batches, interleaved round by round
so that machine noise hits both alike: (1) a bare loop, `perf_counter(); predict(batch); perf_counter()`,
and (2) the probe's `time_predict_pass` (synchronize, clock, predict, synchronize, clock, keep output).
A cheap no-op predictor isolates the fixed cost per call. Prints medians and the difference per batch.

    python bench/probe_overhead.py [--data-dir baselines/sample_data] [--rounds 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "baselines" / "demo_team"))

from harness.probe.timing import make_batches, make_sync, time_predict_pass  # noqa: E402
from harness.spec import load_spec  # noqa: E402
from harness.tasks import get_task  # noqa: E402


def bare_pass(predict, batches):
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        predict(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def compare(name, predict, batches, sync, rounds):
    bare, probe = [], []
    for _ in range(rounds):
        bare += bare_pass(predict, batches)
        probe += list(time_predict_pass(predict, batches, sync).batch_seconds)
    b, p = statistics.median(bare), statistics.median(probe)
    print(f"{name:<22} {len(batches):>4} {b * 1e6:>14.1f} {p * 1e6:>14.1f} {(p - b) * 1e6:>12.1f} {p / b:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / "baselines" / "sample_data")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from predictor import Predictor  # the demo team's

    spec = load_spec()
    sync = make_sync(args.device)
    print(f"device {args.device}; median seconds per batch over {args.rounds} interleaved rounds")
    print(f"{'predictor':<22} {'batches':>4} {'bare us/batch':>14} {'probe us/batch':>14} {'overhead us':>12} {'ratio':>8}")
    for task_spec in spec.tasks:
        task = get_task(task_spec.name)
        examples = task.strip_labels(task.read_gold(args.data_dir / task_spec.gold_file))
        batches = make_batches(examples, task_spec.batch_size)
        compare(f"no-op ({task_spec.name})", lambda batch: batch, batches, sync, args.rounds)
        demo = Predictor(task_spec.name, args.device)
        demo.predict(batches[0])  # warm-up
        compare(f"demo ({task_spec.name})", demo.predict, batches, sync, args.rounds)


if __name__ == "__main__":
    main()
