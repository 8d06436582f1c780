"""Benchmark: `harness batch --engine local` against `--engine ray` on two box slots, side by side in one run.

The same eight fast fixture teams (four copies each of ok_team and sleep_team, renamed, on the fixture data
against the fake reference, local backend) are run four ways, each with a cold cache:
  local     - `harness batch --engine local`: one team after the other on the whole box;
  ray       - `harness batch --engine ray --ray-slots 2`: an embedded cluster whose node splits into two
              slots, each pinned to its own share of the CPUs (one core each on a 2-core box), started and
              stopped by the batch itself;
  ray-up    - `harness batch --engine ray --ray-address ADDR` on a cluster already running, as several boxes
              run it (`ray start` once, batch after batch): this machine started with two slots right
              before that batch and stopped right after it (never idling beside the other engines' batches);
  alone/busy - one team (ok_team) on a two-slot node, first alone, then beside a busy slot (a sleep_team
              copy timed in the other slot at the same moment): what slot sharing costs its speedup.
local, ray and ray-up run --runs times (cold caches, taking turns at going first). It prints each batch's
wall time, the throughput of two slots against local (goal: at least 1.6x), with and without the embedded
cluster's start and stop, and Ray's overhead per team (goal: at most 2 s), each run and their median and
range, and the team's speedup alone and beside a busy slot, each with
its 95% interval (the difference should lie within what the intervals allow).

Ray's overhead per team comes from the nodes' own clocks (each row's placement says when its task began and
ended on the node): the time a slot waited between the batch's first task and its own first, the gaps
between one task's end and the next on the same slot, and each task's time on the node outside the team's
own run (unpacking the archive, packing the results); summed over the slots and divided by the teams. The
one-off costs are printed beside it, not spread over the teams: the cluster's start (the leader's launch to
the first task on a node) and the finish (the last task's end to the leader's exit: rows, leaderboard,
report, Ray's shutdown). The wall-to-wall throughput holds them all.

    python bench/batch_engines.py [--copies 4] [--runs 3] [--out report.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from printed_report import PrintedReport  # bench/, beside this script

from harness.slots import SLOT_RESOURCE

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
TEAMS = FIXTURES / "teams"


def make_teams(folder: Path, copies: int, kinds: tuple[str, ...] = ("ok_team", "sleep_team")) -> list[str]:
    """`copies` renamed copies of each fixture team under `folder` (a team's name is in its manifest)."""
    names = []
    for kind in kinds:
        for i in range(copies):
            name = f"{kind}_{i + 1}"
            shutil.copytree(TEAMS / kind, folder / name)
            manifest = folder / name / "harness.toml"
            text = manifest.read_text(encoding="utf-8")
            manifest.write_text(text.replace(f'team = "{kind}"', f'team = "{name}"'), encoding="utf-8")
            names.append(name)
    return names


def batch(submissions: Path, out: Path, cache: Path, *engine: str) -> tuple[float, float]:
    """When one `harness batch` began (epoch seconds) and its wall seconds, in a process of its own (its own
    Ray, its own caches)."""
    command = [sys.executable, "-m", "harness.cli", "batch", str(submissions),
               "--spec", str(FIXTURES / "spec_small.toml"), "--data-dir", str(FIXTURES / "data"),
               "--backend", "local", "--reference", str(TEAMS / "fake_reference"), "--cache-dir", str(cache),
               "--out", str(out), "--timeout", "600", *engine]
    began, started = time.time(), time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"harness batch failed ({' '.join(engine) or 'local'}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-3000:]}")
    return began, wall


@contextlib.contextmanager
def running_cluster(slots: int, port: int = 6391):
    """A Ray cluster on this machine for the block (`ray start --head` offering `slots` box slots, then
    `ray stop`); yields its address."""
    ray = str(Path(sys.executable).parent / "ray")
    start = [ray, "start", "--head", f"--port={port}", f"--resources={json.dumps({SLOT_RESOURCE: slots})}",
             "--include-dashboard=false", "--disable-usage-stats"]
    done = subprocess.run(start, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"ray start failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, text=True)


def ray_costs(records: dict[str, dict], began: float, wall: float) -> dict[str, float]:
    """Ray's share of a batch from the nodes' clocks: the one-off start and finish, and per team the slot time
    spent neither in a team's run nor idle at the end (see the module's text)."""
    by_slot: dict[tuple, list[dict]] = {}
    for record in records.values():
        place = record["placement"]
        by_slot.setdefault((place.get("node_id"), place.get("slot")), []).append(record)
    first = min(r["placement"]["node_started"] for r in records.values())
    last = max(r["placement"]["node_ended"] for r in records.values())
    waiting = 0.0
    for tasks in by_slot.values():
        tasks.sort(key=lambda r: r["placement"]["node_started"])
        waiting += tasks[0]["placement"]["node_started"] - first
        for before, after in zip(tasks, tasks[1:]):
            waiting += after["placement"]["node_started"] - before["placement"]["node_ended"]
        waiting += sum(r["placement"]["node_ended"] - r["placement"]["node_started"] - r["duration_s"]
                       for r in tasks)
    return {"start": first - began, "finish": began + wall - last, "per_team": waiting / len(records)}


def records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/result.json")}


def board(out: Path) -> dict[str, dict]:
    frame = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    return {row["team"]: row for _, row in frame.iterrows()}


def speedup_text(row) -> str:
    return f"{float(row['speedup']):.2f}x [{float(row['speedup_low']):.2f}, {float(row['speedup_high']):.2f}]"


def spread_text(values: list[float], unit: str) -> str:
    ordered = sorted(values)
    return f"median {statistics.median(ordered):.2f}{unit} [min {ordered[0]:.2f}, max {ordered[-1]:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of each of the two fixture teams")
    parser.add_argument("--runs", type=int, default=3, help="local/ray pairs, each with cold caches")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args()
    report = PrintedReport()
    say = report.say

    cpus = len(os.sched_getaffinity(0))
    say(f"# Batch engines side by side: local against Ray on two slots ({cpus} CPUs, {2 * args.copies} fixture "
        "teams, fake reference, local backend)")
    say()
    with tempfile.TemporaryDirectory(prefix="batch-engines-") as tmp:
        root = Path(tmp)
        teams = make_teams(root / "teams", args.copies)
        throughputs, overheads, running_throughputs = [], [], []
        engines = [("local", ()), ("ray", ("--engine", "ray", "--ray-slots", "2")), ("ray-up", ())]
        for run in range(1, args.runs + 1):
            # each run with cold caches; the engines take turns going first (a drifting box favours none)
            timed = {}
            for name, engine in (engines if run % 2 else engines[::-1]):
                with contextlib.ExitStack() as up:
                    if name == "ray-up":
                        engine = ("--engine", "ray", "--ray-address", up.enter_context(running_cluster(2)))
                    timed[name] = batch(root / "teams", root / f"{name}-{run}", root / f"{name}-cache-{run}",
                                        *engine)
            local_wall, (ray_began, ray_wall) = timed["local"][1], timed["ray"]
            up_wall = timed["ray-up"][1]
            up_rows = board(root / f"ray-up-{run}")
            running_throughputs.append(local_wall / up_wall)
            local_rows, ray_rows = board(root / f"local-{run}"), board(root / f"ray-{run}")
            ray_records = records(root / f"ray-{run}")
            statuses_agree = all(local_rows[t]["status"] == ray_rows[t]["status"] == up_rows[t]["status"]
                                 for t in teams)
            on_node = sum(r["duration_s"] for r in ray_records.values())
            costs = ray_costs(ray_records, ray_began, ray_wall)
            slots = sorted({(r["placement"].get("slot"), str(r["placement"].get("cpu_set")))
                            for r in ray_records.values()})
            throughputs.append(local_wall / ray_wall)
            overheads.append(costs["per_team"])
            say(f"- run {run}: local {local_wall:.1f} s ({local_wall / len(teams):.1f} s a team); ray on slots "
                f"{', '.join(f'{i} (CPUs {c})' for i, c in slots)} {ray_wall:.1f} s, the teams' own runs "
                f"{on_node:.1f} s summed ({on_node / len(teams):.1f} s a team); throughput {throughputs[-1]:.2f}x; "
                f"Ray overhead {costs['per_team']:.2f} s a team, once a batch: cluster start {costs['start']:.1f} s, "
                f"finish {costs['finish']:.1f} s; on the running cluster {up_wall:.1f} s, throughput "
                f"{running_throughputs[-1]:.2f}x; statuses the same on every engine: {statuses_agree}")
        say()
        say(f"- throughput of two slots against local over {args.runs} run(s): {spread_text(throughputs, 'x')} "
            f"(goal at least 1.6x: {'met on every run' if min(throughputs) >= 1.6 else 'NOT met'})")
        say(f"- the same on a cluster already running (`ray start` once, `--ray-address`): "
            f"{spread_text(running_throughputs, 'x')} (goal at least 1.6x: "
            f"{'met on every run' if min(running_throughputs) >= 1.6 else 'NOT met'})")
        say(f"- Ray overhead per team (scheduling, gaps between a slot's tasks, archive and results on the node): "
            f"{spread_text(overheads, ' s')} (goal at most 2 s: {'met on every run' if max(overheads) <= 2 else 'NOT met'})")

        # one team alone on a two-slot node, then beside a busy slot
        alone_dir, busy_dir = root / "alone", root / "busy"
        make_teams(alone_dir, 1, ("ok_team",))
        make_teams(busy_dir, 1, ("ok_team", "sleep_team"))
        batch(alone_dir, root / "alone-out", root / "alone-cache", "--engine", "ray", "--ray-slots", "2")
        batch(busy_dir, root / "busy-out", root / "busy-cache", "--engine", "ray", "--ray-slots", "2")
        alone, busy = board(root / "alone-out")["ok_team_1"], board(root / "busy-out")["ok_team_1"]
        overlap = float(busy["speedup_low"]) <= float(alone["speedup_high"]) and \
            float(alone["speedup_low"]) <= float(busy["speedup_high"])
        say(f"- ok_team alone on its slot: {speedup_text(alone)}; beside a busy slot: {speedup_text(busy)}; "
            f"ratio busy/alone {float(busy['speedup']) / float(alone['speedup']):.2f} (intervals "
            f"{'overlap' if overlap else 'do NOT overlap'})")
    report.write(args.out)


if __name__ == "__main__":
    main()
