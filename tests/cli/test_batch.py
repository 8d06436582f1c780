"""`harness batch` on the local backend: four teams, the right four rows, a report, then the cache."""

import json
import shutil

import pandas as pd
import pytest

from conftest import TEAMS
from harness.batch import box_lock
from harness.paths import DEMO_TEAM_DIR

pytestmark = pytest.mark.slow


@pytest.fixture
def submissions(tmp_path):
    """The bundled demo team, a too-large team, a too-slow team and a broken team."""
    folder = tmp_path / "submissions"
    shutil.copytree(DEMO_TEAM_DIR, folder / "demo_team")
    for team in ("big_team", "slow_team", "missing_class_team"):
        shutil.copytree(TEAMS / team, folder / team)
    return folder


def test_batch_ranks_four_teams_then_serves_the_rerun_from_cache(invoke, run_args, tmp_path, submissions):
    first = invoke("batch", submissions, *run_args, "--no-calibration")
    assert first.exit_code == 0, first.output
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False)
    rows = {r["team"]: r for _, r in board.iterrows()}
    demo = rows["demo-team"]
    # The demo clears 8x against the 0.2 s fake reference, but on a loaded 2-core CI box its one-batch rounds
    # can spread so much that the interval straddles 8x: then it is honestly borderline, never a fail.
    assert demo["speed_verdict"] in ("pass", "borderline") and float(demo["speedup_high"]) >= 8, demo["reason"]
    if demo["speed_verdict"] == "pass":
        assert list(board["team"][:1]) == ["demo-team"] and str(board["rank"][0]) == "1"
        assert demo["compliant"] in (True, "True"), demo["reason"]
    big, slow, broken = rows["big_team"], rows["slow_team"], rows["missing_class_team"]
    assert float(big["params"]) == 12_000_000 and big["compliant"] in (False, "False") and "parameters" in big["reason"]
    assert float(slow["speedup"]) < 1 and "speedup" in slow["reason"]
    assert broken["status"] == "probe_failed" and "has no class 'Nope'" in broken["error"]
    assert list(board["team"])[-1] == "missing_class_team"          # no score: last
    assert set(board["team"][board["rank"] != ""]) <= {"demo-team"}     # only compliant teams are ranked
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert all(team in report for team in rows) and "<svg" in report
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # one reference worker per measured team (the broken team's worker never connects, its reference still ran)
    assert summary["reference_runs"] == 4 and summary["cached"] == []

    second = invoke("batch", submissions, *run_args, "--no-calibration")
    assert second.exit_code == 0, second.output
    assert "4 from cache" in second.output and "not rerun: " in second.output
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert again["reference_runs"] == 0 and sorted(again["cached"]) == sorted(rows)
    assert pd.read_csv(tmp_path / "out" / "leaderboard.csv")["team"].tolist() == board["team"].tolist()


def test_a_changed_team_is_rerun_and_the_others_are_not(invoke, run_args, tmp_path, submissions):
    for team in ("big_team", "slow_team", "missing_class_team"):
        shutil.rmtree(submissions / team)
    assert invoke("batch", submissions, *run_args, "--no-calibration").exit_code == 0
    (submissions / "demo_team" / "notes.txt").write_text("changed")
    shutil.copytree(TEAMS / "big_team", submissions / "big_team")
    result = invoke("batch", submissions, *run_args, "--no-calibration")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cached"] == [] and summary["reference_runs"] == 2


def test_a_second_batch_on_the_box_is_refused_naming_the_holder(invoke, run_args, tmp_path, submissions):
    with box_lock(tmp_path / "cache"):
        result = invoke("batch", submissions, *run_args, "--no-calibration")
    assert result.exit_code == 1
    assert "another batch holds this box (pid" in result.output


def test_not_a_folder_of_teams_is_one_line(invoke, run_args, tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("batch", tmp_path / "empty", *run_args, "--no-calibration")
    assert result.exit_code == 1 and "holds no team folders" in result.output
