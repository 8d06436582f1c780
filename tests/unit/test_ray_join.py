"""Joining a Ray cluster by its address (`harness batch --engine ray --ray-address`) when the head was started
with Ray's authentication token: the leader follows `ray start`'s rule (a token here and RAY_AUTH_MODE unset:
token mode), which Ray's own ray.init(address=...) does not."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.ray_engine import ray_token_available, use_token_auth_to_join
from harness.slots import SLOT_RESOURCE

REPO = Path(__file__).resolve().parents[2]


def test_a_token_file_in_the_home_turns_token_mode_on(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("a" * 64)
    environ = {}
    assert use_token_auth_to_join(environ, tmp_path) is True and environ == {"RAY_AUTH_MODE": "token"}


def test_a_token_in_the_environment_or_at_a_named_path_counts(tmp_path):
    assert ray_token_available({"RAY_AUTH_TOKEN": "abc"}, tmp_path)
    (tmp_path / "elsewhere").write_text("b" * 64)
    assert ray_token_available({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "elsewhere")}, tmp_path)
    assert not ray_token_available({"RAY_AUTH_TOKEN": "  "}, tmp_path)          # blank is no token


def test_no_token_leaves_the_mode_unset(tmp_path):
    environ = {}
    assert use_token_auth_to_join(environ, tmp_path) is False and environ == {}


def test_a_mode_the_user_set_is_kept_whatever_the_token(tmp_path):
    environ = {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "abc"}
    assert use_token_auth_to_join(environ, tmp_path) is False and environ["RAY_AUTH_MODE"] == "disabled"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_the_leader_joins_a_head_started_with_a_token_with_no_mode_set(tmp_path):
    pytest.importorskip("ray", reason="--engine ray needs the cluster extra: pip install -e '.[cluster]'")
    ray_cli = Path(sys.executable).parent / "ray"
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    port = free_port()
    # --block: the head lives as long as this process, and ends with it (never `ray stop`: it would end
    # every Ray on the machine, other tests' clusters included)
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", f"--port={port}", "--num-cpus=0",
                             f"--resources={json.dumps({SLOT_RESOURCE: 1})}", "--include-dashboard=false",
                             "--disable-usage-stats"],
                            env={**env, "RAY_AUTH_MODE": "token"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        code = ("import ray; from harness.ray_engine import connect\n"
                "try:\n    connect(ADDRESS)\nexcept Exception as exc:\n    print('NOT JOINED', exc)\n"
                "else:\n    print('JOINED', ray.is_initialized())\n")
        deadline, joined = time.monotonic() + 90, None
        while time.monotonic() < deadline and head.poll() is None:
            joined = subprocess.run([sys.executable, "-c", code.replace("ADDRESS", repr(f"127.0.0.1:{port}"))],
                                    env=env, capture_output=True, text=True, timeout=60)
            if "JOINED True" in joined.stdout:
                break
            time.sleep(2)                # the head may still be starting
        assert head.poll() is None, head.stderr.read()[-2000:]
        assert joined is not None and "JOINED True" in joined.stdout, (joined.stdout, joined.stderr[-2000:])
    finally:
        head.terminate()
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
