"""Memory read from the kernel's accounting on a real Docker engine (issue 28): the host reads each worker
container's memory cgroup, so weights held where resident memory does not look (a memfd, a child that exits)
or inflated inside each call and freed again flag the row, and an honest team is not flagged."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TEAMS = FIXTURES / "teams"


@pytest.fixture
def run_in_docker(tmp_path, runner_image):
    def invoke(team):
        out = tmp_path / "out"
        args = ["run", str(TEAMS / team), "--spec", str(FIXTURES / "spec_docker.toml"), "--data-dir",
                str(FIXTURES / "data"), "--runner-image", runner_image, "--out", str(out), "--cache-dir",
                str(tmp_path / "cache"), "--reference", str(TEAMS / "fake_reference")]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads((out / team / "result.json").read_text(encoding="utf-8"))
    return invoke


def timing(record, task):
    return record["tasks"][task]["timing"]


def task_flags(record, task):
    return [flag for flag in record["flags"] if flag.startswith(f"{task}: ")]


def test_an_honest_team_is_read_from_its_container_cgroup_and_not_flagged(run_in_docker):
    record = run_in_docker("ok_team")
    for task in ("cluewsc2020", "csl"):
        found = timing(record, task)
        assert found["kernel_memory_note"] == "" and "docker" in found["kernel_memory_source"], found
        assert found["kernel_peak_passes_bytes"] > 0 and found["kernel_held_task_growth_bytes"] is not None
        assert not [f for f in task_flags(record, task) if "weights_unaccounted" in f or "kernel" in f], record["flags"]


def test_weights_outside_resident_memory_are_flagged_from_the_cgroup(run_in_docker):
    record = run_in_docker("outside_rss_team")
    memfd, child = timing(record, "cluewsc2020"), timing(record, "csl")
    # resident memory does not see either: its own checks pass
    assert memfd["unexplained_resident_bytes"] < 16 * 2**20 and child["unexplained_peak_bytes"] < 100 * 2**20
    # the kernel does: 120 MB of shmem from load on, and a child's 120 MB+ in the passes' peak
    assert memfd["kernel_held_load_growth_bytes"] > 110 * 2**20
    assert child["kernel_peak_passes_growth_bytes"] > 110 * 2**20
    assert any("weights_unaccounted" in f and "grew at load" in f for f in task_flags(record, "cluewsc2020"))
    assert any("weights_unaccounted" in f and "children that exited included" in f for f in task_flags(record, "csl"))


def test_weights_inflated_inside_each_call_are_flagged_at_the_kernels_peak(run_in_docker):
    record = run_in_docker("transient_weights_team")
    for task in ("cluewsc2020", "csl"):
        assert timing(record, task)["kernel_peak_passes_growth_bytes"] > 110 * 2**20
        assert any("weights_unaccounted" in f and "during the timed passes rose" in f for f in task_flags(record, task))
