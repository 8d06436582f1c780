"""`harness batch --engine ray --backend docker`: two teams built and run in the runner image on two Ray nodes
(ray.cluster_utils.Cluster: a head that offers no slot and two nodes with one box slot each, all on this
machine, sharing this Docker engine), each against the fake reference in its own container."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.cli import main

ray = pytest.importorskip("ray", reason="--engine ray needs the cluster extra: pip install -e '.[cluster]'")

from harness.slots import SLOT_RESOURCE  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TEAMS = REPO / "tests" / "fixtures" / "teams"
pytestmark = pytest.mark.docker


def test_two_teams_run_in_the_runner_image_on_two_ray_nodes(runner_image, tmp_path):
    from ray.cluster_utils import Cluster

    folder = tmp_path / "submissions"
    for team in ("ok_team", "sleep_team"):
        shutil.copytree(TEAMS / team, folder / team)
    ray.shutdown()
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        made.add_node(num_cpus=1, resources={SLOT_RESOURCE: 1})
    made.wait_for_nodes()
    args = ["batch", str(folder), "--backend", "docker", "--runner-image", runner_image,
            "--spec", str(REPO / "tests" / "fixtures" / "spec_docker.toml"), "--data-dir",
            str(REPO / "tests" / "fixtures" / "data"), "--reference", str(TEAMS / "fake_reference"),
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--timeout", "300",
            "--engine", "ray", "--ray-address", made.address]
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    finally:
        ray.shutdown()
        made.shutdown()
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False)
    assert sorted(frame["team"]) == ["ok_team", "sleep_team"]
    rows = {row["team"]: row for _, row in frame.iterrows()}
    records = [json.loads((tmp_path / "out" / team / "result.json").read_text(encoding="utf-8"))
               for team in frame["team"]]
    for record in records:
        # built and timed in the runner image, scored, its files written on the leader
        row = rows[record["team"]]
        assert record["backend"] == "docker" and record["status"] in ("ok", "partial"), record["error"]
        assert row["params"] != "" and float(row["speedup"]) > 0 and row["csl_score"] != ""
        assert (tmp_path / "out" / record["team"] / "build.log").is_file()
        assert record["placement"]["attempts"] == 1 and record["placement"]["slots"] == 1
    assert len({r["placement"]["node_id"] for r in records}) == 2        # one team on each node
