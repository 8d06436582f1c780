"""Hostile team folders through `harness run`: each ends as one clean invalid_submission row, with nothing
read from outside the folder, nothing written outside --out, no hang and no traceback.

The folders are made here (git keeps neither FIFOs nor links that point out of the repository)."""

import json
import os
import shutil

import pandas as pd
import pytest

from conftest import FIXTURES, TEAMS


def hostile_copy(tmp_path, name="team"):
    team = tmp_path / "submissions" / name
    shutil.copytree(TEAMS / "ok_team", team)
    return team


def only_row(tmp_path):
    frame = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    assert len(frame) == 1
    return frame.iloc[0]


def run_hostile(invoke, run_args, tmp_path, team):
    result = invoke("run", team, *run_args)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    row = only_row(tmp_path)
    assert row["status"] == "invalid_submission"
    assert "\n" not in row["error"]
    assert not (tmp_path / "cache" / "local").exists() or not any((tmp_path / "cache" / "local").iterdir())
    return row


def test_link_to_the_gold_file_is_refused(invoke, run_args, tmp_path):
    team = hostile_copy(tmp_path)
    (team / "gold.json").symlink_to(FIXTURES / "data" / "csl" / "dev.json")
    row = run_hostile(invoke, run_args, tmp_path, team)
    assert "'gold.json' is a link to" in row["error"] and "outside the team folder" in row["error"]


def test_link_to_a_host_file_and_the_data_folder_are_refused(invoke, run_args, tmp_path):
    team = hostile_copy(tmp_path)
    (team / "data").symlink_to(FIXTURES / "data")
    row = run_hostile(invoke, run_args, tmp_path, team)
    assert "'data' is a link to" in row["error"]


def test_fifo_does_not_hang_the_harness(invoke, run_args, tmp_path):
    team = hostile_copy(tmp_path)
    os.mkfifo(team / "weights.bin")
    row = run_hostile(invoke, run_args, tmp_path, team)
    assert "'weights.bin' is a special file" in row["error"]


def test_dangling_link_is_a_row_not_a_traceback(invoke, run_args, tmp_path):
    team = hostile_copy(tmp_path)
    (team / "model.onnx").symlink_to("missing.onnx")
    row = run_hostile(invoke, run_args, tmp_path, team)
    assert "does not exist" in row["error"]


def test_setup_path_with_a_newline_is_refused(invoke, run_args, tmp_path):
    team = hostile_copy(tmp_path)
    (team / "evil.sh").write_text("#!/bin/sh\ntouch /tmp/evil-ran\n")
    (team / "evil.sh").chmod(0o755)
    (team / "harness.toml").write_text(
        'team = "injector"\nsetup = "setup.sh\\nRUN [\\"./evil.sh\\"]\\nENV X=1"\npredictor = "predictor:Predictor"\n')
    row = run_hostile(invoke, run_args, tmp_path, team)
    assert "setup" in row["error"] and "must be a relative path" in row["error"]


@pytest.mark.parametrize("name", ["..", ".", "out\n"])
def test_team_named_dot_dot_writes_nothing_outside_out(invoke, run_args, tmp_path, name):
    team = hostile_copy(tmp_path)
    (team / "harness.toml").write_text(
        f'team = {json.dumps(name)}\nsetup = "setup.sh"\npredictor = "predictor:Predictor"\n')
    before = set(os.listdir(tmp_path))
    row = run_hostile(invoke, run_args, tmp_path, team)
    assert "must be 1-64 letters" in row["error"]
    assert set(os.listdir(tmp_path)) <= before | {"out", "cache"}
    assert not (tmp_path / "result.json").exists() and not (tmp_path / "build.log").exists()
    assert (tmp_path / "out" / "team" / "result.json").exists()


def test_folder_named_dot_dot_stays_inside_out(invoke, run_args, tmp_path):
    (tmp_path / "submissions" / "deep").mkdir(parents=True)
    result = invoke("run", tmp_path / "submissions" / "deep" / "..", *run_args)
    assert result.exit_code == 0, result.output
    assert only_row(tmp_path)["status"] == "invalid_submission"
    assert not (tmp_path / "result.json").exists()
    assert (tmp_path / "out" / "submissions" / "result.json").exists()
