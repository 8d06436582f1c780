"""Benchmark: the harness's own overhead per team in a batch (everything except timed inference), cold and
cached, over N copies of the demo team.

overhead per team = (batch wall time - timed inference of the teams and of their interleaved reference) / N,
where timed inference is the sum of every timed round (warm-up excluded) from each team's result.json.
Warm-up is counted as overhead here. The cached run does no inference at all: its whole wall time is overhead.

    python bench/batch_overhead.py [--copies 3] [--backend local|docker] [--max-examples 4]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from harness.backends import make_backend
from harness.batch import run_batch
from harness.config import RunConfig
from harness.paths import DEMO_TEAM_DIR, SAMPLE_DATA_DIR
from harness.spec import load_spec


def timed_inference_s(out_dir: Path) -> float:
    total = 0.0
    for path in out_dir.glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        for side in (*(t.get("timing", {}) for t in record["tasks"].values()), *record["reference"].values()):
            total += sum(sum(r) for r in side.get("rounds_s", []))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--max-examples", type=int, default=4)
    parser.add_argument("--runner-image", default="lightlm-harness/runner:latest")
    args = parser.parse_args()

    spec = load_spec()
    with tempfile.TemporaryDirectory(prefix="batch-overhead-") as tmp:
        tmp = Path(tmp)
        for i in range(args.copies):
            team = tmp / "submissions" / f"demo{i}"
            shutil.copytree(DEMO_TEAM_DIR, team)
            manifest = team / "harness.toml"
            manifest.write_text(manifest.read_text().replace('team = "demo-team"', f'team = "demo-{i}"'))
        backend = make_backend(args.backend, tmp / "cache", spec, args.runner_image)
        config = RunConfig(spec=spec, backend=backend, data_dir=SAMPLE_DATA_DIR, out_dir=tmp / "out",
                           max_examples=args.max_examples)
        print(f"{args.copies} copies of the demo team, {args.backend} backend, {args.max_examples} examples/task")
        for label in ("cold", "cached"):
            started = time.perf_counter()
            summary = run_batch(tmp / "submissions", config, lock_dir=tmp / "cache")
            wall = time.perf_counter() - started
            inference = timed_inference_s(tmp / "out") if label == "cold" else 0.0
            print(f"{label:>6}: wall {wall:8.1f} s   timed inference {inference:8.2f} s   "
                  f"overhead per team {(wall - inference) / args.copies:7.2f} s   "
                  f"(teams timed {summary.reference_runs}, cached {len(summary.cached)})", flush=True)


if __name__ == "__main__":
    main()
