"""Benchmark: five identical runs of the demo team, each speedup with its 95% interval, and the channel cost.

Runs the whole pipeline N times with the local backend (the team and the BERT-base reference timed
interleaved by the host's timekeeper) and prints each run's speedup with its interval, T and T_bert, then
whether the intervals overlap and cover the run-to-run spread, and finally the channel's overhead per round
trip (bench/channel_overhead.py). Usable on a GPU box without Docker.

    python bench/speedup_spread.py [--runs 5] [--max-examples 64] [--data-dir DIR] [--device auto] [--spec FILE]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.backends.local import LocalBackend
from harness.config import RunConfig
from harness.paths import DEMO_TEAM_DIR, SAMPLE_DATA_DIR
from harness.pipeline import run_team
from harness.spec import load_spec

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-examples", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DATA_DIR)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--spec", type=Path)
    parser.add_argument("--team", type=Path, default=DEMO_TEAM_DIR)
    args = parser.parse_args()

    spec = load_spec(args.spec)
    runs = []
    with tempfile.TemporaryDirectory(prefix="speedup-spread-") as tmp:
        for i in range(args.runs):
            config = RunConfig(spec=spec, backend=LocalBackend(Path(tmp) / "cache"), data_dir=args.data_dir,
                               out_dir=Path(tmp) / f"run{i}", max_examples=args.max_examples, device=args.device)
            result = run_team(args.team, config)
            s = result.score
            if s is None or s.speedup is None:
                raise SystemExit(f"run {i}: no speedup ({result.status}: {result.error})")
            runs.append(s)
            rounds = max(len(t.timing.get("rounds_s", [])) for t in result.tasks.values())
            half = (s.speedup_high - s.speedup_low) / 2 / s.speedup
            print(f"run {i}: speedup {s.speedup:8.2f}x  [{s.speedup_low:.2f}, {s.speedup_high:.2f}]  "
                  f"half-width {half:5.1%}  {s.speed_verdict:10s}  T {s.T:.4f} s  T_bert {s.T_bert:.4f} s  "
                  f"rounds {rounds}  on {result.environment.device_name}", flush=True)
    points = [s.speedup for s in runs]
    mean = statistics.fmean(points)
    cv = statistics.stdev(points) / mean if len(points) > 1 else 0.0
    overlap = max(s.speedup_low for s in runs) <= min(s.speedup_high for s in runs)
    covered = sum(s.speedup_low <= mean <= s.speedup_high for s in runs)
    print(f"speedup over {len(points)} runs: mean {mean:.2f}x  min {min(points):.2f}x  max {max(points):.2f}x  "
          f"cv {cv:.1%}")
    print(f"all intervals overlap: {'yes' if overlap else 'no'};  intervals holding the mean of the runs: "
          f"{covered} of {len(runs)}")
    print("channel overhead per round trip (16-example batch):", flush=True)
    subprocess.run([sys.executable, str(HERE / "channel_overhead.py"), "--rounds", "10", "--calls", "200"], check=False)


if __name__ == "__main__":
    main()
