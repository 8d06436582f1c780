"""What a new user types: every path option relative to the current folder, the per-task table of a team
that declares fewer tasks than the spec, and how a script tells a failed row from a good one."""

import shutil

import pandas as pd
import pytest

from conftest import FIXTURES, TEAMS

# option -> what is put under the current folder for it (the other options stay absolute)
RELATIVE = ["--out", "--cache-dir", "--data-dir", "--spec", "team folder"]


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty current folder, with the fixture data, spec and a failing team copied in."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    shutil.copytree(FIXTURES / "data", folder / "data")
    shutil.copy(FIXTURES / "spec_small.toml", folder / "spec.toml")
    shutil.copytree(TEAMS / "setup_fails_team", folder / "team")
    return folder


def args_with(option, tmp_path, run_args):
    """run_args with one option relative (or the team folder), the rest as given."""
    absolute = dict(zip(run_args[::2], run_args[1::2]))
    relative = {"--out": "out", "--cache-dir": "cache", "--data-dir": "data", "--spec": "spec.toml"}
    if option in relative:
        absolute[option] = relative[option]
    team = "team" if option == "team folder" else str(tmp_path / "cwd" / "team")
    return team, [str(a) for pair in absolute.items() for a in pair]


@pytest.mark.parametrize("option", RELATIVE)
def test_each_path_option_works_relative_to_the_current_folder(option, invoke, run_args, tmp_path, here):
    """setup_fails_team's setup.sh prints and exits 3: the row can only say so if the build found and ran
    it in its copy under the cache folder, after reading the data and the spec."""
    team, args = args_with(option, tmp_path, run_args)
    result = invoke("run", team, *args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    out = here / "out" if option == "--out" else tmp_path / "out"
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["status"] == "build_failed" and "cannot find my weights" in row["error"]
    if option == "--cache-dir":
        assert list((here / "cache" / "local").glob("setup_fails_team-*/team/setup.sh"))


def test_a_failed_row_exits_3_with_exit_code_and_0_without(invoke, run_args, tmp_path):
    plain = invoke("run", TEAMS / "setup_fails_team", *run_args)
    assert plain.exit_code == 0, plain.output
    strict = invoke("run", TEAMS / "setup_fails_team", *run_args, "--exit-code")
    assert strict.exit_code == 3
    assert "setup_fails_team: status build_failed, not ok (--exit-code)" in strict.output
    # a team whose build failed ran no task: no table of empty task rows
    assert "setup_fails_team: build_failed (no task ran)" in strict.output
    assert "cmrc2018" not in strict.output


@pytest.mark.slow
def test_a_team_that_declares_one_task_lists_it_and_names_the_skipped_ones(invoke, run_args, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    team = tmp_path / "csl_only"
    shutil.copytree(TEAMS / "ok_team", team)
    manifest = (team / "harness.toml").read_text(encoding="utf-8")
    (team / "harness.toml").write_text(manifest + 'tasks = ["csl"]\n', encoding="utf-8")
    result = invoke("run", team, *run_args, "--exit-code")
    table = result.output.split("skipped", 1)[0]
    assert "│ csl" in table
    assert all(task not in table for task in ("cluewsc2020", "cluener2020", "cmrc2018"))
    assert ("skipped (not in the team's harness.toml tasks, scored 0): cluewsc2020, cluener2020, cmrc2018"
            in result.output)
    # the three undeclared tasks score 0: a partial row, which --exit-code reports as not ok
    row = pd.read_csv(tmp_path / "out" / "results.csv").iloc[0]
    assert row["status"] == "partial" and row["csl_score"] == 0
    assert result.exit_code == 3
