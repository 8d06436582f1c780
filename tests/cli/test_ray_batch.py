"""`harness batch --engine ray` on a Ray cluster made on this machine (ray.cluster_utils.Cluster: a head that
offers no slot and two nodes with one box slot each), against `--engine local` on the same folder."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import TEAMS

ray = pytest.importorskip("ray", reason="--engine ray needs the cluster extra: pip install -e '.[cluster]'")

from harness.slots import SLOT_RESOURCE  # noqa: E402

# one worker runs both, one after the other: the second finds the nodes' scratch folders by name
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]
FOUR_TEAMS = ("ok_team", "big_team", "missing_class_team", "setup_fails_team")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        made.add_node(num_cpus=1, resources={SLOT_RESOURCE: 1})
    made.wait_for_nodes()
    yield made
    ray.shutdown()
    made.shutdown()


@pytest.fixture
def four_teams(tmp_path):
    """A fast honest team, a too-large one, one whose predictor class is missing, one whose setup fails."""
    folder = tmp_path / "submissions"
    for team in FOUR_TEAMS:
        shutil.copytree(TEAMS / team, folder / team)
    return folder


def board(out):
    frame = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    return {row["team"]: row for _, row in frame.iterrows()}


def test_a_ray_batch_gives_each_team_one_row_from_both_nodes_as_the_local_engine_does(invoke, run_args, tmp_path,
                                                                                       four_teams, cluster):
    # two teams at once on a 2-core box beside the other test worker: each gets 300 s, not run_args' 60
    local = invoke("batch", four_teams, *run_args, "--out", tmp_path / "local", "--timeout", "300",
                   "--no-calibration")
    assert local.exit_code == 0, local.output
    spread = invoke("batch", four_teams, *run_args, "--out", tmp_path / "ray", "--cache-dir", tmp_path / "ray-cache",
                    "--timeout", "300", "--engine", "ray", "--ray-address", cluster.address)
    assert spread.exit_code == 0, spread.output
    by_local, by_ray = board(tmp_path / "local"), board(tmp_path / "ray")
    assert sorted(by_ray) == sorted(by_local) == sorted(FOUR_TEAMS)
    for team in FOUR_TEAMS:
        # the same status, counts and task scores (the speed terms are timed anew: not compared)
        for column in ("status", "params", "P", "csl_score", "cluewsc2020_score"):
            assert by_ray[team][column] == by_local[team][column], (team, column)
        assert by_local[team]["timed_on"] == ""
    assert by_ray["setup_fails_team"]["status"] == "build_failed"
    assert by_ray["missing_class_team"]["status"] == "probe_failed"
    records = {team: json.loads((tmp_path / "ray" / team / "result.json").read_text(encoding="utf-8"))
               for team in FOUR_TEAMS}
    nodes = {r["placement"]["node_id"] for r in records.values()}
    assert len(nodes) == 2, nodes                           # both slots took teams
    # one slot a node: the whole box, timed_on is the node's name alone
    assert all(r["placement"]["attempts"] == 1 and r["placement"]["slots"] == 1 for r in records.values())
    assert all(by_ray[team]["timed_on"] == records[team]["placement"]["node"] for team in FOUR_TEAMS)
    for record in records.values():      # the node's clock brackets the team's own run (bench/batch_engines.py)
        place = record["placement"]
        assert place["node_ended"] - place["node_started"] >= record["duration_s"] - 0.01, place
    # the node's files were written on the leader, and the logs the record names are there
    assert (tmp_path / "ray" / "ok_team" / "predictions" / "csl_predict.json").is_file()
    logs = records["ok_team"]["logs"]
    assert logs and all(p.startswith(str(tmp_path / "ray" / "ok_team")) and Path(p).is_file() for p in logs.values())
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text(encoding="utf-8"))
    assert summary["teams"] == 4 and summary["cached"] == []
    # the A/A row: one per slot that timed teams (a failed build or a missing predictor class is not timed), run
    # on that slot's node; each timed row carries its slot's record, flagged when the slot is not proven fair
    calibration = {r["box"]: r for r in summary["calibration"]}
    timed = {team: r for team, r in records.items() if r["reference"]}
    assert {"ok_team", "big_team"} <= set(timed) and "setup_fails_team" not in timed
    assert sorted(calibration) == sorted({r["calibration"]["box"] for r in timed.values()})
    assert all(not r["calibration"] for team, r in records.items() if team not in timed)
    for team, record in timed.items():
        aa = calibration[record["calibration"]["box"]]
        assert aa["where"]["node_id"] == record["placement"]["node_id"], (aa, record["placement"])
        assert aa["verdict"] in ("fair", "undecided", "unfair") and aa["low"] <= aa["speedup"] <= aa["high"], aa
        assert any("box not proven fair" in f for f in record["flags"]) == (aa["verdict"] != "fair")
    assert sum(r["rows_timed"] for r in calibration.values()) == len(timed)
    assert all(box in (tmp_path / "ray" / "report.html").read_text(encoding="utf-8") for box in calibration)
    local_summary = json.loads((tmp_path / "local" / "summary.json").read_text(encoding="utf-8"))
    assert [r["verdict"] for r in local_summary["calibration"]] == ["not_run"]        # --no-calibration, said

    again = invoke("batch", four_teams, *run_args, "--out", tmp_path / "ray", "--cache-dir", tmp_path / "ray-cache",
                   "--timeout", "300", "--engine", "ray", "--ray-address", cluster.address)
    assert again.exit_code == 0, again.output
    # a failed build is always tried again (the box may be the cause); the other three come from the cache
    rerun = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert sorted(rerun["cached"]) == sorted(set(FOUR_TEAMS) - {"setup_fails_team"})
    assert rerun["calibration"] == []          # nothing was timed tonight: no A/A


def test_a_node_removed_while_its_team_runs_has_that_team_retried_on_the_other(invoke, run_args, tmp_path):
    """Two nodes, two teams running at once; one node is removed mid-team: its team is tried again on the
    other node (the row says so), and the batch still ends with one row a team."""
    import tempfile
    import threading
    import time

    from ray.cluster_utils import Cluster

    ray.shutdown()          # this test's own cluster: the module's keeps both its nodes
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [made.add_node(num_cpus=1, resources={SLOT_RESOURCE: 1}) for _ in range(2)]
    made.wait_for_nodes()
    folder = tmp_path / "submissions"
    for team in ("sleep_team", "ok_team"):
        shutil.copytree(TEAMS / team, folder / team)
    outcome = {}

    def batch():
        outcome["result"] = invoke("batch", folder, *run_args, "--out", tmp_path / "ray", "--timeout", "300",
                                   "--engine", "ray", "--ray-address", made.address, "--no-calibration")

    try:
        started = time.time()
        runner = threading.Thread(target=batch)
        runner.start()
        deadline = time.monotonic() + 120

        def building():      # the nodes' scratch folders (harness.ray_engine.run_on_node) holding a build log
            return [p for p in Path(tempfile.gettempdir()).glob("harness-ray-*/out/*/build.log")
                    if p.stat().st_mtime >= started - 1]

        # both teams are on their nodes once both have written their build logs (a build takes seconds)
        while time.monotonic() < deadline and len(building()) < 2:
            time.sleep(0.2)
        time.sleep(2)
        removed, kept = nodes[0].node_id, nodes[1].node_id
        made.remove_node(nodes[0], allow_graceful=False)
        runner.join(timeout=600)
        assert not runner.is_alive()
    finally:
        ray.shutdown()
        made.shutdown()
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    rows = board(tmp_path / "ray")
    assert sorted(rows) == ["ok_team", "sleep_team"]
    records = [json.loads((tmp_path / "ray" / team / "result.json").read_text(encoding="utf-8")) for team in rows]
    retried = [r for r in records if r["placement"]["attempts"] == 2]
    assert len(retried) == 1, [r["placement"] for r in records]
    assert retried[0]["placement"]["node_faults"] and retried[0]["status"] in ("ok", "partial")
    assert any(flag.startswith("retried on another node after 1 node fault") for flag in retried[0]["flags"])
    # what came back came from the node that stayed: the retried team's second try and the other team
    assert removed != kept and {r["placement"]["node_id"] for r in records} == {kept}


def test_a_node_with_two_slots_times_two_teams_at_once_each_on_its_own_cpu(invoke, run_args, tmp_path):
    """One node started with two box slots on this 2-CPU machine: the two teams run at once, each in a slot of
    its own (one CPU each), and the row, the host's box record and the worker's own report all say which."""
    from ray.cluster_utils import Cluster

    from harness.slots import node_cpus, slot_layout

    if len(node_cpus()) < 2:
        pytest.skip("two slots need two CPUs")
    ray.shutdown()
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    made.add_node(num_cpus=2, resources={SLOT_RESOURCE: 2})
    made.wait_for_nodes()
    folder = tmp_path / "submissions"
    for team in ("sleep_team", "ok_team"):
        shutil.copytree(TEAMS / team, folder / team)
    try:
        result = invoke("batch", folder, *run_args, "--out", tmp_path / "ray", "--timeout", "300",
                        "--engine", "ray", "--ray-address", made.address)
    finally:
        ray.shutdown()
        made.shutdown()
    assert result.exit_code == 0, result.output
    rows = board(tmp_path / "ray")
    records = {team: json.loads((tmp_path / "ray" / team / "result.json").read_text(encoding="utf-8"))
               for team in rows}
    layout = {slot.index: slot.cpuset() for slot in slot_layout(2, node_cpus(), [])}
    placements = [r["placement"] for r in records.values()]
    assert sorted(p["slot"] for p in placements) == [0, 1] and all(p["slots"] == 2 for p in placements)
    for team, record in records.items():
        placement = record["placement"]
        assert placement["cpu_set"] == layout[placement["slot"]]
        assert record["environment"]["box"]["cpu_set"] == placement["cpu_set"]     # the host, pinned
        assert record["environment"]["cpu_set"] == placement["cpu_set"]            # the team's worker inherited it
        assert record["environment"]["torch_threads"] == 1                          # threads sized to the slot
        assert rows[team]["timed_on"] == f"{placement['node']} slot {placement['slot'] + 1}/2 (CPUs " \
                                         f"{placement['cpu_set']})"
        # the A/A of the team's slot ran in that very slot (claimed and pinned there)
        assert record["calibration"]["box"].endswith(f"slot {placement['slot'] + 1}/2")
        assert record["calibration"]["where"]["cpu_set"] == placement["cpu_set"], record["calibration"]
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["calibration"]) == 2


def test_a_leader_killed_mid_batch_resumes_from_the_cache_with_no_row_lost_or_twice(invoke, run_args, tmp_path):
    """The leader (with its embedded cluster) is killed once the first team's row is written; the rerun serves
    that team from the cache, runs the others, and the leaderboard has each team exactly once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ray.shutdown()
    folder = tmp_path / "submissions"
    teams = ("big_team", "ok_team")
    for team in teams:
        shutil.copytree(TEAMS / team, folder / team)
    out = tmp_path / "ray"
    args = ["batch", folder, *run_args, "--out", out, "--timeout", "300", "--engine", "ray", "--no-calibration"]
    leader = subprocess.Popen([sys.executable, "-m", "harness.cli", *map(str, args)], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(out.glob("*/result.json")) and leader.poll() is None:
            time.sleep(0.2)
        done_before = sorted(p.parent.name for p in out.glob("*/result.json"))
        assert done_before and leader.poll() is None, "no team finished before the leader ended or the deadline"
    finally:
        os.killpg(leader.pid, signal.SIGKILL)       # the leader and the Ray processes it started
        leader.wait(timeout=30)
    assert not (out / "leaderboard.csv").exists()
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    frame = pd.read_csv(out / "leaderboard.csv", keep_default_na=False)
    assert sorted(frame["team"]) == sorted(teams)                   # each team once
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["teams"] == 2 and set(done_before) <= set(summary["cached"])
