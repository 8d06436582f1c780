"""`harness batch --engine ray` on a Ray cluster made on this machine (ray.cluster_utils.Cluster: a head that
offers no slot and two nodes with one box slot each), against `--engine local` on the same folder."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import TEAMS

ray = pytest.importorskip("ray", reason="--engine ray needs the cluster extra: pip install -e '.[cluster]'")

from harness.ray_engine import SLOT_RESOURCE  # noqa: E402

pytestmark = pytest.mark.slow
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
    local = invoke("batch", four_teams, *run_args, "--out", tmp_path / "local")
    assert local.exit_code == 0, local.output
    spread = invoke("batch", four_teams, *run_args, "--out", tmp_path / "ray", "--cache-dir", tmp_path / "ray-cache",
                    "--engine", "ray", "--ray-address", cluster.address)
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
    assert all(r["placement"]["attempts"] == 1 and r["placement"]["slot"] == SLOT_RESOURCE for r in records.values())
    assert all(by_ray[team]["timed_on"] for team in FOUR_TEAMS)
    # the node's files were written on the leader, and the logs the record names are there
    assert (tmp_path / "ray" / "ok_team" / "predictions" / "csl_predict.json").is_file()
    logs = records["ok_team"]["logs"]
    assert logs and all(p.startswith(str(tmp_path / "ray" / "ok_team")) and Path(p).is_file() for p in logs.values())
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text(encoding="utf-8"))
    assert summary["teams"] == 4 and summary["cached"] == []

    again = invoke("batch", four_teams, *run_args, "--out", tmp_path / "ray", "--cache-dir", tmp_path / "ray-cache",
                   "--engine", "ray", "--ray-address", cluster.address)
    assert again.exit_code == 0, again.output
    # a failed build is always tried again (the box may be the cause); the other three come from the cache
    assert sorted(json.loads((tmp_path / "ray" / "summary.json").read_text())["cached"]) == sorted(
        set(FOUR_TEAMS) - {"setup_fails_team"})
