"""Benchmark: how much the demo team's measured speedup moves between repeated runs on this machine.

Runs the whole pipeline (reference before, demo team, reference after) N times with the local backend and
prints each run's speedup, T and T_bert, then the mean, min, max and coefficient of variation. Use it to
see how far one machine's number can be trusted, and to compare boxes.

    python bench/speedup_spread.py [--runs 3] [--max-examples 8] [--data-dir DIR] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from harness.backends.local import LocalBackend
from harness.pipeline import DEMO_TEAM_DIR, SAMPLE_DATA_DIR, RunConfig, run_team
from harness.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-examples", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DATA_DIR)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--spec", type=Path)
    args = parser.parse_args()

    spec = load_spec(args.spec)
    speedups = []
    with tempfile.TemporaryDirectory(prefix="speedup-spread-") as tmp:
        for i in range(args.runs):
            config = RunConfig(spec=spec, backend=LocalBackend(Path(tmp) / "cache"), data_dir=args.data_dir,
                               out_dir=Path(tmp) / f"run{i}", max_examples=args.max_examples, device=args.device)
            result = run_team(DEMO_TEAM_DIR, config)
            s = result.score
            if s is None or s.speedup is None:
                raise SystemExit(f"run {i}: no speedup ({result.status}: {result.error})")
            speedups.append(s.speedup)
            device = result.environment.get("device_name")
            print(f"run {i}: speedup {s.speedup:8.2f}x   T {s.T:.4f} s   T_bert {s.T_bert:.4f} s   "
                  f"reference drift {max(r['drift'] for r in result.reference.values()):.1%}   on {device}",
                  flush=True)
    mean = statistics.fmean(speedups)
    cv = statistics.stdev(speedups) / mean if len(speedups) > 1 else 0.0
    print(f"speedup over {len(speedups)} runs: mean {mean:.2f}x  min {min(speedups):.2f}x  "
          f"max {max(speedups):.2f}x  cv {cv:.1%}")


if __name__ == "__main__":
    main()
