"""Failures as a new user meets them, through the CLI: team text printed literally, install hints intact,
failed builds retried, --rebuild, no reference timing for nothing, and hints that say what to do next."""

import html
import json
import shutil
import subprocess
import sys

import docker
import pandas as pd
import pytest

from conftest import TEAMS
from harness.backends import docker as docker_backend
from harness.paths import REPO_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """rich wraps at 80 columns when not on a terminal: wide enough that no message is cut."""
    monkeypatch.setenv("COLUMNS", "300")


@pytest.fixture
def no_nvml(monkeypatch):
    """As on a machine without nvidia-ml-py: `import pynvml` fails."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


def test_team_output_with_markup_and_control_characters_is_printed_literally(invoke, run_args):
    result = invoke("run", TEAMS / "noisy_setup_team", *run_args)
    assert result.exit_code == 0, result.output
    assert "noisy_setup_team: build_failed" in result.output
    assert "Looking in links: [/opt/wheels]" in result.output      # markup-like text, literally
    assert "[bold]x[/bold] not bold" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[2J\\x1b[31mred text\\x1b[0m and a bell\\x07" in result.output   # shown, not obeyed


def test_doctor_keeps_the_extras_in_its_install_hints(invoke, no_nvml, monkeypatch):
    monkeypatch.setattr("harness.doctor.docker_findings", lambda: [])
    monkeypatch.setattr("harness.doctor.subprocess.run",            # as if torch were not installed
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "No module named 'torch'"))
    result = invoke("doctor")
    assert result.exit_code == 1
    assert "pip install 'lightlm-harness[gpu]'" in result.output
    assert "pip install 'lightlm-harness[probe]'" in result.output


@pytest.fixture
def failing_builds(tmp_path):
    folder = tmp_path / "submissions"
    for team in ("noisy_setup_team", "setup_fails_team"):
        shutil.copytree(TEAMS / team, folder / team)
    return folder


def test_a_batch_of_failed_builds_times_no_reference_and_retries_them(invoke, run_args, tmp_path, no_nvml,
                                                                      failing_builds):
    first = invoke("batch", failing_builds, *run_args)        # calibration on: no team timed, so no A/A run
    assert first.exit_code == 0, first.output
    assert "pip install 'lightlm-harness[gpu]'" in first.output
    assert "0 teams timed against the reference" in first.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"] == {"build_failed": 2} and summary["reference_runs"] == 0
    assert not (tmp_path / "out" / "reference").exists()
    assert summary["calibration"] == [] and not (tmp_path / "out" / "@calibration").exists()

    second = invoke("batch", failing_builds, *run_args, "--no-calibration")     # the box may have been the cause
    assert second.exit_code == 0, second.output
    assert "0 from cache" in second.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["cached"] == []
    log = (tmp_path / "out" / "setup_fails_team" / "build.log").read_text()
    assert "cannot find my weights" in log                          # built again, not served from a cache


def test_rebuild_runs_the_setup_script_again_and_reruns_the_batch(invoke, run_args, tmp_path):
    submissions = tmp_path / "submissions"
    shutil.copytree(TEAMS / "ok_team", submissions / "ok_team")
    build_log = tmp_path / "out" / "ok_team" / "build.log"
    assert invoke("batch", submissions, *run_args, "--no-calibration").exit_code == 0
    assert "setup ok" in build_log.read_text()

    cached = invoke("run", submissions / "ok_team", *run_args)
    assert cached.exit_code == 0, cached.output
    assert "cached build" in build_log.read_text()

    again = invoke("batch", submissions, *run_args, "--no-calibration", "--rebuild")
    assert again.exit_code == 0, again.output
    assert "0 from cache" in again.output and "1 team timed against the reference" in again.output
    assert "setup ok" in build_log.read_text()


def test_report_shows_a_failed_probes_error_beside_its_reason(invoke, run_args, tmp_path):
    submissions = tmp_path / "submissions"
    shutil.copytree(TEAMS / "missing_class_team", submissions / "missing_class_team")
    result = invoke("batch", submissions, *run_args, "--no-calibration", "--max-examples", "1")
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False).iloc[0]
    assert row["status"] == "probe_failed" and "no parameter count" in row["reason"] and row["error"]
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    # "has no class 'Nope'" where the team's venv sees torch; the import error where it does not
    assert f"no: {html.escape(row['reason'])}; error: {html.escape(row['error'])}" in report


class NoRunnerImage:
    """A Docker engine that answers but has no runner image."""

    def info(self):
        return {"Runtimes": {}}

    class images:
        @staticmethod
        def get(name):
            raise docker.errors.ImageNotFound(name)


def test_a_missing_runner_image_says_how_to_build_it_from_anywhere_and_how_to_do_without(
        invoke, run_args, tmp_path, monkeypatch):
    monkeypatch.setattr(docker_backend, "connect", lambda: NoRunnerImage())
    monkeypatch.chdir(tmp_path)
    args = [a for a in run_args if a not in ("--backend", "local")]   # the default backend: docker
    result = invoke("run", TEAMS / "ok_team", *args)
    assert result.exit_code == 1
    assert "runner image lightlm-harness/runner:latest not found" in result.output
    assert f"docker build -f {REPO_DIR / 'Dockerfile.runner'} -t lightlm-harness/runner:latest {REPO_DIR}`" \
        in result.output
    assert "--backend local" in result.output


def test_doctor_gives_the_same_runner_image_hint(invoke, no_nvml, tmp_path, monkeypatch):
    monkeypatch.setattr("harness.doctor.connect", lambda: NoRunnerImage())
    monkeypatch.setattr("harness.doctor.local_findings", lambda: [])
    monkeypatch.chdir(tmp_path)
    result = invoke("doctor")
    assert result.exit_code == 1
    assert f"runner image -> build it with `docker build -f {REPO_DIR / 'Dockerfile.runner'}" in result.output
    assert "--backend local" in result.output
