"""Hostile submissions on a real Docker engine (issue 14): builds that hang, hog memory, grow the image or try
to change the harness; a runner image with no gold in it; a run whose log floods. Each ends as a clean row,
with nothing left behind."""

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from harness.backends.docker import TEAM_DOCKERFILE, TEAM_LABEL
from harness.cli import main

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TEAMS = FIXTURES / "teams"
GOLD_DIRS = (REPO / "baselines" / "sample_data", FIXTURES / "data")


def spec_with(tmp_path, section, **values):
    """The Docker test spec with some keys of one [section] changed."""
    text = (FIXTURES / "spec_docker.toml").read_text(encoding="utf-8")
    head, _, rest = text.partition(f"[{section}]\n")
    body, sep, tail = rest.partition("\n[")
    for key, value in values.items():
        body, count = re.subn(rf"(?m)^{key} = [^#\n]*", f"{key} = {value} ", body, count=1)
        assert count == 1, key
    path = tmp_path / "spec.toml"
    path.write_text(f"{head}[{section}]\n{body}{sep}{tail}", encoding="utf-8")
    return path


@pytest.fixture
def harness_run(tmp_path, runner_image):
    def invoke(team, spec, *extra):
        args = ["run", str(team), "--spec", str(spec), "--data-dir", str(FIXTURES / "data"), "--runner-image",
                runner_image, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                "--reference", str(TEAMS / "fake_reference"), *map(str, extra)]
        result = CliRunner().invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False)
        return frame[frame["team"] == Path(team).name].iloc[0]
    return invoke


def team_with_setup(tmp_path, name, script):
    team = tmp_path / name
    shutil.copytree(TEAMS / "ok_team", team)
    (team / "harness.toml").write_text(f'team = "{name}"\nsetup = "setup.sh"\npredictor = "predictor:Predictor"\n')
    (team / "setup.sh").write_text("#!/bin/sh\n" + script + "\n")
    return team


def nothing_left(docker_client, tmp_path, team):
    """No step container, dangling layer or build context of this team's build is left (other builds may run
    on the same engine at the same time, and unit tests may build the same fixture with a fake engine, so only
    this one's are looked for: its label value is in its log and in its context's Dockerfile)."""
    log = (tmp_path / "out" / team / "build.log").read_text(encoding="utf-8")
    if log.startswith("cached image "):   # built by an earlier session from the same content: nothing ran now
        return
    build_ids = re.findall(rf'LABEL {re.escape(TEAM_LABEL)}="([0-9a-f]{{32}})"', log)
    assert build_ids, log[:500]
    label = f"{TEAM_LABEL}={build_ids[0]}"
    assert not docker_client.containers.list(all=True, filters={"label": label})
    assert not docker_client.images.list(filters={"dangling": True, "label": label})
    for dockerfile in Path("/tmp").glob("harness-build-*/Dockerfile"):   # this build's context: its build id
        assert build_ids[0] not in dockerfile.read_text(encoding="utf-8"), dockerfile


def test_generated_dockerfile_holds_no_team_string():
    text = TEAM_DOCKERFILE.format(runner="R", label=TEAM_LABEL, build_id="B", team_dir="/team", user="1:1")
    assert "{" not in text and "setup" not in text.lower().replace("team_setup", "")
    assert text.splitlines()[-1] == 'RUN ["/bin/sh", "-c", "cd /team && exec \\"/team/$TEAM_SETUP\\""]'


def test_runner_image_holds_no_gold_file(docker_client, runner_image):
    """Every file in the image with the size of a gold file is hashed inside it: none may be one."""
    gold = {}
    for folder in GOLD_DIRS:
        for path in folder.rglob("*.json"):
            gold[hashlib.sha256(path.read_bytes()).hexdigest()] = path.stat().st_size
    assert len(gold) >= 4
    scan = ("import hashlib, json, os, sys\n"
            "sizes, hashes = set(json.loads(sys.argv[1]).values()), set(json.loads(sys.argv[1]))\n"
            "hits, names = [], []\n"
            "for root, dirs, files in os.walk('/'):\n"
            "    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys', '/dev')]\n"
            "    for f in files:\n"
            "        p = os.path.join(root, f)\n"
            "        if f in ('dev.json', 'trial.json') or 'sample_data' in p: names.append(p)\n"
            "        try:\n"
            "            if not os.path.islink(p) and os.path.getsize(p) in sizes and "
            "hashlib.sha256(open(p, 'rb').read()).hexdigest() in hashes: hits.append(p)\n"
            "        except OSError: pass\n"
            "print(json.dumps({'hits': hits, 'names': names}))\n")
    out = docker_client.containers.run(runner_image, ["/opt/venv/bin/python3", "-I", "-c", scan, json.dumps(gold)],
                                       remove=True, network_mode="none")
    found = json.loads(out.decode().strip().splitlines()[-1])
    assert found == {"hits": [], "names": []}


def test_setup_that_hangs_is_build_failed_within_the_limit(harness_run, tmp_path, docker_client):
    team = team_with_setup(tmp_path, "hang_setup", "echo about to hang; sleep 100000")
    started = time.monotonic()
    # the steps before setup.sh (FROM the cached runner image, COPY of a small folder) take seconds
    row = harness_run(team, spec_with(tmp_path, "build", timeout_s=45))
    assert time.monotonic() - started < 180
    assert row["status"] == "build_failed"
    assert "timed out after 45 s (spec build.timeout_s)" in row["error"]
    assert "about to hang" in (tmp_path / "out" / "hang_setup" / "build.log").read_text()
    nothing_left(docker_client, tmp_path, "hang_setup")

def test_build_over_its_memory_is_build_failed(harness_run, tmp_path, docker_client):
    team = team_with_setup(tmp_path, "memory_hog", 'python3 -c "b = bytearray(1 << 30); print(len(b))"')
    row = harness_run(team, spec_with(tmp_path, "build", memory='"256m"'))
    assert row["status"] == "build_failed"
    assert "non-zero code: 137" in row["error"]
    nothing_left(docker_client, tmp_path, "memory_hog")

def test_image_that_grows_too_much_is_build_failed_and_removed(harness_run, tmp_path, docker_client):
    team = team_with_setup(tmp_path, "disk_hog", "head -c 30000000 /dev/zero > /team/big.bin")
    row = harness_run(team, spec_with(tmp_path, "build", max_image_growth='"10m"'))
    assert row["status"] == "build_failed"
    assert "larger than the runner image; the spec allows 10m (build.max_image_growth)" in row["error"]
    assert not docker_client.images.list(name="lightlm-team/disk_hog")
    nothing_left(docker_client, tmp_path, "disk_hog")

def test_weights_fetched_by_setup_outside_the_team_folder_flag_the_row(harness_run, tmp_path, docker_client):
    # 60 MB of "weights" in the runner user's home and team venv: 15M parameters implied at 4 bytes each,
    # more than the 12M limit and more than twice the 40 counted; the submitted folder holds none of it
    team = team_with_setup(tmp_path, "fetcher", "mkdir -p $HOME/.cache && "
                           "head -c 40000000 /dev/urandom > $HOME/.cache/model.safetensors && "
                           "head -c 20000000 /dev/urandom > /opt/team-venv/head.bin")
    row = harness_run(team, spec_with(tmp_path, "build", max_image_growth='"200m"'), "--max-examples", "2")
    assert row["params"] == 40
    found = re.search(r"weights_unaccounted: the files the build added that count as weights \(([\d,]+) bytes\)",
                      row["flags"])
    assert found, row["flags"]
    # the 60 MB it wrote, plus the venv's own small .pth path files (the suffix of torch checkpoints too)
    assert 60_000_000 <= int(found.group(1).replace(",", "")) < 60_100_000
    nothing_left(docker_client, tmp_path, "fetcher")


def test_build_network_follows_the_spec(harness_run, tmp_path, docker_client):
    team = team_with_setup(tmp_path, "net_probe", "echo interfaces: $(ls /sys/class/net); exit 3")
    row = harness_run(team, spec_with(tmp_path, "build", network="false"))
    assert row["status"] == "build_failed"
    assert "interfaces: lo\n" in (tmp_path / "out" / "net_probe" / "build.log").read_text()
    nothing_left(docker_client, tmp_path, "net_probe")


def test_team_cannot_change_the_harness_at_build_or_run_time(harness_run, tmp_path, docker_client):
    """tamper_team appends to every harness file and drops a clock-freezing .pth into every site-packages,
    at build time and again at run time; its row must be ordinary and every attempt on the harness fail."""
    row = harness_run(TEAMS / "tamper_team", spec_with(tmp_path, "sandbox", log_max_size='"1m"'),
                      "--max-examples", "2")
    # it runs csl only (the other tasks count 0): an ordinary partial row, timed by a clock nobody froze
    assert row["status"] == "partial" and row["reason"].endswith("cluewsc2020, cluener2020, cmrc2018"), row["error"]
    assert row["csl_score"] != "" and float(row["T_s"]) > 0 and float(row["speedup"]) < 1000
    log = (tmp_path / "out" / "tamper_team" / "worker-csl.log").read_text()
    report = json.loads(log.split("TAMPER_REPORT ", 1)[1].splitlines()[0])
    assert report["isolated"] and not report["pth_ran"] and not report["clock_frozen"]
    assert report["harness_file"].startswith("/opt/venv/")
    build = report["build"]
    assert any(line.startswith("append ") for line in build) and any(line.startswith("pth ") for line in build)
    worked = [line for line in build if line.endswith(" ok") and not line.startswith("user-site")]
    assert all("/opt/team-venv/" in line for line in worked), worked   # only the team's own environment
    assert any(line.startswith("pth /opt/team-venv/") and line.endswith(" ok") for line in build)
    assert all(outcome.startswith("blocked") for outcome in report["run"].values()), report["run"]
    # the log it floods at run time is capped by the engine and by the host's reader
    assert (tmp_path / "out" / "tamper_team" / "worker-csl.log").stat().st_size < 1.1 * 2**20
    nothing_left(docker_client, tmp_path, "tamper_team")