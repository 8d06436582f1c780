"""Benchmark: `harness batch --engine local` against `--engine ray` on two box slots, side by side in one run.

The same eight fast fixture teams (four copies each of ok_team and sleep_team, renamed, on the fixture data
against the fake reference, local backend) are run three ways, each with a cold cache:
  local     - `harness batch --engine local`: one team after the other on the whole box;
  ray       - `harness batch --engine ray --ray-slots 2`: an embedded cluster whose node splits into two
              slots, each pinned to its own share of the CPUs (one core each on a 2-core box);
  alone/busy - one team (ok_team) on a two-slot node, first alone, then beside a busy slot (a sleep_team
              copy timed in the other slot at the same moment): what slot sharing costs its speedup.
It prints each batch's wall time, the throughput of two slots against local (goal: at least 1.6x), Ray's
overhead per team (goal: at most 2 s), and the team's speedup alone and beside a busy slot, each with its
95% interval (the difference should lie within what the intervals allow).

Ray's overhead per team is the slot time not spent inside the team's own run: (slots x ray wall - the sum of
the teams' durations on their nodes) / teams. It holds scheduling, a fresh Ray worker process per team, the
team's archive and its results crossing to the leader, and the tail where one slot idles while the other
finishes: an upper bound.

    python bench/batch_engines.py [--copies 4] [--out report.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

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


def batch(submissions: Path, out: Path, cache: Path, *engine: str) -> float:
    """Wall seconds of one `harness batch` in a process of its own (its own Ray, its own caches)."""
    command = [sys.executable, "-m", "harness.cli", "batch", str(submissions),
               "--spec", str(FIXTURES / "spec_small.toml"), "--data-dir", str(FIXTURES / "data"),
               "--backend", "local", "--reference", str(TEAMS / "fake_reference"), "--cache-dir", str(cache),
               "--out", str(out), "--timeout", "600", *engine]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"harness batch failed ({' '.join(engine) or 'local'}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-3000:]}")
    return wall


def records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*/result.json")}


def board(out: Path) -> dict[str, dict]:
    frame = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    return {row["team"]: row for _, row in frame.iterrows()}


def speedup_text(row) -> str:
    return f"{float(row['speedup']):.2f}x [{float(row['speedup_low']):.2f}, {float(row['speedup_high']):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of each of the two fixture teams")
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = parser.parse_args()
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    cpus = len(os.sched_getaffinity(0))
    say(f"# Batch engines side by side: local against Ray on two slots ({cpus} CPUs, {2 * args.copies} fixture "
        "teams, fake reference, local backend)")
    say()
    with tempfile.TemporaryDirectory(prefix="batch-engines-") as tmp:
        root = Path(tmp)
        teams = make_teams(root / "teams", args.copies)
        local_wall = batch(root / "teams", root / "local", root / "local-cache")
        ray_wall = batch(root / "teams", root / "ray", root / "ray-cache", "--engine", "ray", "--ray-slots", "2")
        local_rows, ray_rows = board(root / "local"), board(root / "ray")
        ray_records = records(root / "ray")
        statuses_agree = all(local_rows[t]["status"] == ray_rows[t]["status"] for t in teams)
        on_node = sum(r["duration_s"] for r in ray_records.values())
        overhead = (2 * ray_wall - on_node) / len(teams)
        slots_used = sorted({r["placement"].get("slot") for r in ray_records.values()})
        throughput = local_wall / ray_wall
        say(f"- local engine: {local_wall:.1f} s for {len(teams)} teams ({local_wall / len(teams):.1f} s a team)")
        cpu_sets = sorted({str(r["placement"].get("cpu_set")) for r in ray_records.values()})
        say(f"- ray engine, two slots (CPUs {' and '.join(cpu_sets)}): {ray_wall:.1f} s "
            f"({ray_wall / len(teams):.1f} s a team); slots used {slots_used}; the teams' own runs {on_node:.1f} s "
            "summed")
        say(f"- throughput of two slots against local: {throughput:.2f}x (goal at least 1.6x: "
            f"{'met' if throughput >= 1.6 else 'NOT met'})")
        say(f"- Ray overhead per team (slot time outside the team's run, tail included): {overhead:.1f} s (goal at "
            f"most 2 s: {'met' if overhead <= 2 else 'NOT met'})")
        say(f"- statuses the same on both engines: {statuses_agree}")

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
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
