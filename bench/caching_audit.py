"""Benchmark: the caching audit's false flags on honest teams beside bursty load, and its detections.

Bursty load is what fooled the first audit (first sight against repeats timed seconds later): CPU burners
(one per core by default) that each switch on and off at random every 0.1-1.5 s, so the box is loaded for
part of a first-sight pass and quiet for part of the repeats. Beside them this runs, through the real
pipeline (local backend, the BERT-base reference):
  honest  - the four bundled teams (demo, roberta_tiny, albert_tiny, onnx), --runs times each;
  caching - the caching fixtures (caching_team: answers remembered by input; partial_caching_team: a fifth
            of its work saved on a repeated input, a 1.2x gain), --runs times each.
It prints each run's per-task audit (the team's first sight over its twins, repeats timed right before and
after it: the median over batches with its 95% sign-test interval, how many batches gained more than the
tolerance, and the reference's own ratio beside it), then the false-flag rate (honest runs
flagged on any task) and the detection rate (caching runs flagged on CSL). Goal: 0 false flags, every
caching run flagged.

The audit's 95% interval needs at least six batches: the bundled sample data has a dozen examples per task
(CMRC2018 nine), run here in batches of --batch-size (2: six batches a task; CMRC2018's five are noted, not
audited).

    python bench/caching_audit.py [--runs 3] [--burners 2] [--batch-size 2] [--data-dir DIR] [--quick]
                                  [--short-timing] [--out report.md]
--quick: one run each, the two fast honest teams and caching_team, warm-up cut to 2 s (a smoke test).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import random
import tempfile
import time
from pathlib import Path

from harness.backends.local import LocalBackend
from harness.config import RunConfig
from harness.paths import SAMPLE_DATA_DIR
from harness.pipeline import run_team
from harness.spec import load_spec
from printed_report import PrintedReport  # bench/, beside this script

REPO = Path(__file__).resolve().parents[1]
HONEST = ("demo_team", "roberta_tiny_team", "albert_tiny_team", "onnx_team")
CACHING = ("caching_team", "partial_caching_team")
FIXTURE_TEAMS = REPO / "tests" / "fixtures" / "teams"


def burner(stop: multiprocessing.synchronize.Event, seed: int) -> None:
    """Burn a core for a random 0.1-1.5 s, rest for a random 0.1-1.5 s, until told to stop."""
    rng = random.Random(seed)
    while not stop.is_set():
        until = time.monotonic() + rng.uniform(0.1, 1.5)
        while time.monotonic() < until:
            sum(i * i for i in range(2000))
        stop.wait(rng.uniform(0.1, 1.5))


def team_folder(name: str) -> Path:
    return REPO / "baselines" / name if name in HONEST else FIXTURE_TEAMS / name


def audited_run(name: str, spec, data_dir: Path, workdir: Path, device: str) -> dict:
    config = RunConfig(spec=spec, backend=LocalBackend(workdir / "cache"), data_dir=data_dir,
                       out_dir=workdir / "out", device=device)
    started = time.monotonic()
    result = run_team(team_folder(name), config)
    tasks = {}
    for task, info in result.tasks.items():
        timing = info.get("timing") or {}
        if "caching_audit" in timing:
            tasks[task] = {**timing["caching_audit"], "flagged": bool(info.get("caching_suspected"))}
    return {"team": name, "status": result.status, "error": result.error, "tasks": tasks,
            "wall_s": time.monotonic() - started}


def describe(run: dict) -> str:
    parts = []
    for task, audit in run["tasks"].items():
        if audit["low"] is None:
            parts.append(f"{task} {audit['team_ratio']:.2f} ({audit['note']})")
        else:
            parts.append(f"{task} {audit['team_ratio']:.2f} [{audit['low']:.2f}, {audit['high']:.2f}] "
                         f"{audit['above_tolerance']}/{audit['batches']} above (reference "
                         f"{audit['reference_ratio']:.2f}){' FLAGGED' if audit['flagged'] else ''}")
    return "; ".join(parts) or f"no audit ({run['status']}: {run['error']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=SAMPLE_DATA_DIR)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--short-timing", action="store_true",
                        help="warm-up of at least 2 s (not the spec's 10 s) and 4 rounds: every team and run, sooner")
    parser.add_argument("--kinds", default="honest,caching", help="which runs: honest, caching or both")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args()

    spec = load_spec(None)
    timing = spec.timing
    if args.quick or args.short_timing:
        timing = dataclasses.replace(timing, warmup_min_s=2.0, warmup_max_s=10.0, rounds=4, max_rounds=4)
    spec = dataclasses.replace(spec, timing=timing, tasks=tuple(
        dataclasses.replace(task, batch_size=args.batch_size) for task in spec.tasks))
    honest = HONEST[:2] if args.quick else HONEST
    caching = CACHING[:1] if args.quick else CACHING
    runs = 1 if args.quick else args.runs

    report = PrintedReport()
    say = report.say
    for line in (f"# Caching audit beside bursty load ({args.burners} burners switching on and off every 0.1-1.5 s)",
                 "", f"spec {spec.name}, caching_tolerance {spec.timing.caching_tolerance}, batch size "
                 f"{args.batch_size}, data {args.data_dir}, warm-up at least {spec.timing.warmup_min_s:g} s, "
                 f"{spec.timing.rounds} rounds", ""):
        say(line)
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burner, args=(stop, seed), daemon=True) for seed in range(args.burners)]
    for process in burners:
        process.start()
    results = {"honest": [], "caching": []}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="caching-audit-") as tmp:
            for kind, teams in (("honest", honest), ("caching", caching)):
                if kind not in args.kinds.split(","):
                    continue
                for i in range(runs):
                    for name in teams:
                        run = audited_run(name, spec, args.data_dir, Path(tmp) / f"{name}-{i}", args.device)
                        results[kind].append(run)
                        say(f"- {kind} {name} run {i + 1}: {describe(run)} ({run['wall_s']:.0f} s)")
    finally:
        stop.set()
        for process in burners:
            process.join(timeout=5)
    honest_flagged = [r for r in results["honest"] if any(a["flagged"] for a in r["tasks"].values())]
    honest_audited = [r for r in results["honest"] if any(a["low"] is not None for a in r["tasks"].values())]
    caught = [r for r in results["caching"] if r["tasks"].get("csl", {}).get("flagged")]
    say("")
    say(f"false flags: {len(honest_flagged)} of {len(results['honest'])} honest runs "
        f"({len(honest_audited)} audited on at least one task)")
    say(f"detections: {len(caught)} of {len(results['caching'])} caching runs flagged on csl")
    say(f"goal (0 false flags, every caching run flagged): "
        f"{'met' if not honest_flagged and len(caught) == len(results['caching']) else 'NOT met'}; "
        f"wall time {time.monotonic() - started:.0f} s")
    report.write(args.out)


if __name__ == "__main__":
    main()
