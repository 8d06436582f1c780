"""The production path on a real Docker engine: builds, isolation, failures as rows, nothing left behind."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.backends.docker import OWNER_LABEL, TEAM_LABEL, build_context_prefix, run_owner
from harness.cli import main

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TEAMS = FIXTURES / "teams"


@pytest.fixture
def harness_cli(tmp_path, runner_image):
    """`harness COMMAND TEAM ...` on the Docker backend (the default of `run`), fixture data and spec, against
    the fake reference (0.2 s a batch, in its own image FROM the runner image) unless bert=True: the demo's
    first run is the end-to-end run against the real BERT-base reference in the runner image (the example
    teams' test is the other)."""
    def invoke(command, team, *extra, bert=False):
        reference = [] if bert else ["--reference", str(TEAMS / "fake_reference")]
        args = [command, str(team), "--spec", str(FIXTURES / "spec_docker.toml"), "--data-dir",
                str(FIXTURES / "data"), "--runner-image", runner_image, "--out", str(tmp_path / "out"),
                "--cache-dir", str(tmp_path / "cache"), *reference, *map(str, extra)]
        return CliRunner().invoke(main, args, catch_exceptions=False)
    return invoke


def own_containers(client):
    """Probe containers this test process started: another harness run on the same engine has its own."""
    return client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={run_owner()}"})


def new_dangling_team_layers(client, before):
    return [image for image in client.images.list(filters={"dangling": True, "label": TEAM_LABEL})
            if image.id not in before]


@pytest.fixture(scope="module", autouse=True)
def dangling_before(docker_client):
    """Dangling team layers that were there before this module ran (another run's, say): not ours."""
    return {image.id for image in docker_client.images.list(filters={"dangling": True, "label": TEAM_LABEL})}


def row(tmp_path, team):
    frame = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
    return frame[frame["team"] == team].iloc[0]


def test_demo_team_end_to_end_with_harness_run(harness_cli, tmp_path):
    result = harness_cli("run", REPO / "baselines" / "demo_team", "--max-examples", "2", bert=True)
    assert result.exit_code == 0, result.output
    r = row(tmp_path, "demo-team")
    assert r["status"] == "ok", r["error"]
    assert r["backend"] == "docker" and r["device"] == "cpu"
    assert int(r["params"]) < 12_000_000 and float(r["speedup"]) > 1
    # the real reference: BERT-base-chinese's 102,267,648 and the largest head, two classes (768 x 2 + 2)
    assert int(r["S_bert"]) == 102_267_648 + 768 * 2 + 2
    assert "weights_unaccounted" not in r["flags"]
    assert r["score"] != ""
    for task in ("cluewsc2020", "csl", "cluener2020", "cmrc2018"):
        assert (tmp_path / "out" / "demo-team" / "predictions" / f"{task}_predict.json").exists()
    assert float(r["speedup_low"]) <= float(r["speedup"]) <= float(r["speedup_high"])
    assert r["reference_precision"] == "fp32-strict"
    # the side not being timed was paused through the engine around every timed window, at a recorded cost
    record = json.loads((tmp_path / "out" / "demo-team" / "result.json").read_text(encoding="utf-8"))
    for task, info in record["tasks"].items():
        timing = info["timing"]
        assert timing["frozen_windows"] >= 4 and timing["freeze_unavailable"] == "", (task, timing)
        assert 0 < timing["freeze_s_per_window"] < 1.0, (task, timing["freeze_s_per_window"])
    assert "could not be frozen" not in r["flags"]
    # an unchanged team is never rebuilt
    again = harness_cli("run", REPO / "baselines" / "demo_team", "--max-examples", "1")    # the fake reference
    assert again.exit_code == 0, again.output
    assert "cached image" in (tmp_path / "out" / "demo-team" / "build.log").read_text()


def test_the_split_is_read_from_each_containers_processes(harness_cli, tmp_path):
    """Where the time went, read by the host through the engine's list of each container's processes: the CPU
    time of every side's scored windows, and each worker's own forward share from the probe's hooks in the
    image (the fake reference holds a Linear its predict() never calls: said, not a silent zero)."""
    result = harness_cli("run", REPO / "baselines" / "demo_team", "--max-examples", "2")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out" / "demo-team" / "result.json").read_text(encoding="utf-8"))
    for task, info in record["tasks"].items():
        split, ref_split = info["timing"]["time_split"], record["reference"][task]["time_split"]
        for side in (split, ref_split):
            assert side["windows"] >= 2 and side["cpu_busy"] is not None and side["notes"] == [], (task, side)
        assert 0 < split["own"]["forward_share"] <= 1 and split["own"]["note"] == "", (task, split["own"])
        assert "none of its top-level modules' forward" in ref_split["own"]["note"]
    r = row(tmp_path, "demo-team")
    assert float(r["cmrc2018_cpu_busy"]) >= 0 and r["cmrc2018_device_busy"] == ""


def test_failing_setup_is_a_build_failed_row_and_the_next_team_runs(harness_cli, tmp_path, docker_client,
                                                                    dangling_before):
    result = harness_cli("run", TEAMS / "setup_fails_team")
    assert result.exit_code == 0, result.output
    r = row(tmp_path, "setup_fails_team")
    assert r["status"] == "build_failed"
    assert "cannot find my weights" in r["error"]
    assert "cannot find my weights" in (tmp_path / "out" / "setup_fails_team" / "build.log").read_text()
    assert not new_dangling_team_layers(docker_client, dangling_before)
    nxt = harness_cli("run", TEAMS / "ok_team", "--max-examples", "1")
    assert nxt.exit_code == 0, nxt.output
    assert row(tmp_path, "ok_team")["status"] == "ok"


def test_hostile_team_is_contained(harness_cli, tmp_path, docker_client):
    team = tmp_path / "hostile_team"
    shutil.copytree(TEAMS / "hostile_team", team)
    sentinel = tmp_path / "host_sentinel"
    (team / "targets.json").write_text(json.dumps({
        "gold_file": str(FIXTURES / "data" / "csl" / "dev.json"), "host_sentinel": str(sentinel)}))
    # its attempts run in Predictor(), then predict() sleeps for an hour: killed at the timeout
    result = harness_cli("run", team, "--timeout", "40", "--max-examples", "1")
    assert result.exit_code == 0, result.output
    r = row(tmp_path, "hostile_team")
    assert r["status"] == "timeout" and "timed out after 40 s" in r["error"]
    log = (tmp_path / "out" / "hostile_team" / "worker-csl.log").read_text()
    report = json.loads(log.split("HOSTILE_REPORT ", 1)[1].splitlines()[0])
    assert report["uid"] == 10001
    for attempt in ("network", "read_gold", "labels_in_inputs", "write_outside_out", "replace_socket", "fork_bomb"):
        assert report[attempt].startswith("blocked"), (attempt, report[attempt])
    assert "stopped after" in report["fork_bomb"]
    assert not sentinel.exists()
    # the host's copy of the gold file is untouched and nothing is left running
    assert '"label"' in (FIXTURES / "data" / "csl" / "dev.json").read_text(encoding="utf-8")
    assert not own_containers(docker_client)


def test_nothing_is_left_behind(docker_client, runner_image, dangling_before):
    """Runs last in this module: no worker container, no dangling team layer, no build context or channel folder of this run's
    (other harness runs on the same engine and box keep theirs: they are not this run's to judge)."""
    assert not own_containers(docker_client)
    assert not new_dangling_team_layers(docker_client, dangling_before)
    assert not list(Path(tempfile.gettempdir()).glob(build_context_prefix() + "*"))
    assert not list(Path(tempfile.gettempdir()).glob(f"harness-channel-{os.getpid()}-*"))


def test_gc_removes_a_worker_container_left_paused_by_a_killed_run(runner_image, docker_client):
    """A harness run killed outright while its team's worker was paused (its reference being timed) leaves
    that container paused for good; `harness gc` finds it by its owner label (a process of this host and
    pid namespace that is gone) and removes it. A paused container of a live run is left alone. (Its
    container step only: the whole gc would remove team images the other Docker tests are using.)"""
    import socket
    import subprocess
    import sys

    from harness.backends.docker import CONTAINER_LABEL, pid_namespace
    from harness.cleanup import GcReport, collect_left_containers

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    left, live = [docker_client.containers.run(
        runner_image, ["sleep", "600"], detach=True, network_mode="none",
        labels={CONTAINER_LABEL: "worker", OWNER_LABEL: owner}) for owner in
        (f"{socket.gethostname()}:{pid_namespace()}:{ended.pid}", run_owner())]
    try:
        for container in (left, live):
            container.pause()
        report = GcReport()
        collect_left_containers(docker_client, report, dry_run=False)
        removed = [r.name for r in report.removed]       # (other killed runs' leftovers may go too)
        assert f"{left.name} (left by harness process {left.labels[OWNER_LABEL]})" in removed
        assert not any(name.startswith(f"{live.name} ") for name in removed)
        names = [c.name for c in docker_client.containers.list(all=True, filters={"label": CONTAINER_LABEL})]
        assert left.name not in names and live.name in names
    finally:
        for container in (left, live):
            try:
                container.remove(force=True)
            except Exception:
                pass
