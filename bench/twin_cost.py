"""Benchmark: does a twin (the warm-up input of a batch's shape, harness.warmup_inputs) cost what the real
batch costs? The caching audit compares each first sight with its twins, so an honest team whose real text
costs more than random characters of the same classes would read as caching.

In this process, no harness in between: each bundled team's predictor (demo, roberta_tiny, albert_tiny,
onnx) on the bundled sample data in batches of --batch-size, each real batch and its twin called in turn
--repeats times (twin, real, twin, real, ...), for --seeds warm-up draws. Prints per task the median over
batches of median(real) / median(twin), with the smallest and largest batch. 1.00 means the twin is a fair
stand-in; the audit's tolerance is 1.10. The ONNX team's models are exported first (its setup step).

    python bench/twin_cost.py [--teams demo_team,onnx_team] [--repeats 15] [--seeds 3] [--batch-size 2]
"""

from __future__ import annotations

import argparse
import glob
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.tasks import get_task  # noqa: E402
from harness.warmup_inputs import warmup_examples  # noqa: E402

TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")


def median_s(predictor, batch, repeats_with, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        predictor.predict(repeats_with)
        started = time.perf_counter()
        predictor.predict(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", default="demo_team,roberta_tiny_team,albert_tiny_team,onnx_team")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="twin-cost-") as models:
        for team in args.teams.split(","):
            folder = REPO / "baselines" / team
            extra = {}
            if team == "onnx_team":
                subprocess.run([sys.executable, "export_onnx.py", models], cwd=folder, check=True,
                               capture_output=True)
                extra = {"models_dir": models}
            os.chdir(folder)
            sys.path.insert(0, str(folder))
            module = importlib.import_module("predictor")
            for name in TASKS:
                task = get_task(name)
                examples = task.strip_labels(task.read_gold(Path(glob.glob(
                    str(REPO / "baselines" / "sample_data" / name / "*.json"))[0])))
                predictor = module.Predictor(name, "cpu", **extra)
                ratios = []
                for seed in range(args.seeds):
                    twins = warmup_examples(examples, seed)
                    for i in range(0, len(examples), args.batch_size):
                        real, twin = examples[i:i + args.batch_size], twins[i:i + args.batch_size]
                        predictor.predict(real), predictor.predict(twin)
                        ratios.append(median_s(predictor, real, twin, args.repeats)
                                      / median_s(predictor, twin, real, args.repeats))
                print(f"{team} {name}: real / twin {statistics.median(ratios):.3f} (batches {min(ratios):.2f} "
                      f"to {max(ratios):.2f}, {len(ratios)} batch draws)", flush=True)
            sys.path.remove(str(folder))
            del sys.modules["predictor"]
            for cached in [m for m in sys.modules if m == "task_inputs"]:
                del sys.modules[cached]


if __name__ == "__main__":
    main()
