"""Benchmark: the caching audit's false flags on honest teams beside bursty load, and its detections.

Bursty load is what fooled the first audit (first sight against repeats timed seconds later): CPU burners
(one per core by default) that each switch on and off at random every 0.1-1.5 s, so the box is loaded for
part of a first-sight pass and quiet for part of the repeats. Beside them this runs, through the real
pipeline (local backend, the BERT-base reference):
  honest  - the four bundled teams (demo, roberta_tiny, albert_tiny, onnx), --runs times each;
  caches   - caches of what was seen before (caching_team: answers remembered by input; timed_only_cache_team:
            every input cached by content; partial_caching_team: a fifth of its work saved on a repeat):
            nothing timed repeats, so they must gain nothing (T within caching_tolerance of first sight),
            and are not flagged;
  cheating - one_honest_batch_cache_team: tells made-up CSL inputs from real ones (keywords outside the
            abstract) and skips the work on them, but for one batch shape: must be caught on CSL (flagged,
            or at least timed on first sight only), --runs times each.
It prints each run's per-task audit (the two gains, each the team's ratio over the reference's: the real
input against the fresh flanks timed beside it, and first sight against the later rounds; each with its 95%
bootstrap interval over batches; whether the later rounds counted toward T, and FLAGGED), then the false
flags (honest or cache runs flagged on any task), how often an honest run lost its later rounds on a point
estimate alone (T from first sight, noted), the caches' T against their first-sight pass, and the cheating
runs caught. Goal: 0 false flags, every cheating run flagged.

CSL here is the sample data's twelve examples only where their keywords lie inside their abstracts; give
--data-dir a folder whose CSL examples do (tests/cli/test_caching_audit.py writes one) for the cheating
team to tell real from made-up inputs.

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
CACHES = ("caching_team", "timed_only_cache_team", "partial_caching_team")
CHEATING = ("one_honest_batch_cache_team",)
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
        timing = info.timing
        if "caching_audit" in timing:
            rounds = timing.get("rounds_s") or [[0.0]]
            tasks[task] = {**timing["caching_audit"], "flagged": bool(info.caching_suspected),
                           "T_over_first_sight": timing["time_s"] / max(sum(rounds[0]), 1e-12)}
    return {"team": name, "status": result.status, "error": result.error, "tasks": tasks,
            "wall_s": time.monotonic() - started}


def describe_gain(label: str, gain: dict | None) -> str:
    if gain is None:
        return f"{label} -"
    interval = f" [{gain['low']:.2f}, {gain['high']:.2f}]" if gain["low"] is not None else ""
    return f"{label} {gain['gain']:.2f}{interval}"


def describe(run: dict) -> str:
    parts = []
    for task, audit in run["tasks"].items():
        counted = "later rounds counted" if audit["later_rounds_counted"] else "first sight only"
        parts.append(f"{task} {describe_gain('flanks', audit['flanks'])}, "
                     f"{describe_gain('later', audit['later_rounds'])}, {counted}, T/first sight "
                     f"{audit['T_over_first_sight']:.2f}{' FLAGGED' if audit['flagged'] else ''}")
    return "; ".join(parts) or f"no audit ({run['status']}: {run['error']})"


def summary(results: dict[str, list[dict]]) -> list[str]:
    """The false flags, the honest runs that lost their later rounds, the caches' gain, the cheats caught."""
    innocent = results["honest"] + results["caches"]
    flagged = [r for r in innocent if any(a["flagged"] for a in r["tasks"].values())]
    audited = [a for r in results["honest"] for a in r["tasks"].values() if a["flanks"]["low"] is not None]
    first_only = [a for a in audited if not a["later_rounds_counted"]]
    cache_gain = [a["T_over_first_sight"] for r in results["caches"] for t, a in r["tasks"].items() if t == "csl"]
    caught = [r for r in results["cheating"] if r["tasks"].get("csl", {}).get("flagged")]
    first_sight = [r for r in results["cheating"] if not r["tasks"].get("csl", {}).get("later_rounds_counted", True)]
    return [f"false flags: {len(flagged)} of {len(innocent)} honest and cache runs",
            f"honest tasks audited with an interval: {len(audited)}; of them timed on first sight only (a gain "
            f"above the tolerance on the point alone, noted): {len(first_only)}",
            "caches on csl, T over their first-sight pass: " + ", ".join(f"{g:.2f}" for g in cache_gain),
            f"cheating runs flagged on csl: {len(caught)} of {len(results['cheating'])} (timed on first sight "
            f"only: {len(first_sight)})",
            f"goal (0 false flags, every cheating run flagged): "
            f"{'met' if not flagged and len(caught) == len(results['cheating']) else 'NOT met'}"]


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
    parser.add_argument("--kinds", default="honest,caches,cheating", help="which runs: honest, caches, cheating")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args()

    spec = load_spec(None)
    timing = spec.timing
    if args.quick or args.short_timing:
        timing = dataclasses.replace(timing, warmup_min_s=2.0, warmup_max_s=10.0, rounds=4, max_rounds=4)
    spec = dataclasses.replace(spec, timing=timing, tasks=tuple(
        dataclasses.replace(task, batch_size=args.batch_size) for task in spec.tasks))
    kinds = {"honest": HONEST[:2] if args.quick else HONEST, "caches": CACHES[1:2] if args.quick else CACHES,
             "cheating": CHEATING}
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
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="caching-audit-") as tmp:
            for kind, teams in kinds.items():
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
    say("")
    for line in summary(results):
        say(line)
    say(f"wall time {time.monotonic() - started:.0f} s")
    report.write(args.out)


if __name__ == "__main__":
    main()
