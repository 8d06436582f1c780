"""A local build's setup.sh leaves nothing running: what it started in the background, daemonized or not, is
killed when it exits (harness.probe.reaped), and when it times out."""

import os
import time
from pathlib import Path

import psutil
import pytest

from harness.backends.local import reaped, run_logged

# a plain background job, and a daemon: its own session (setsid) and a double fork, so that it is neither in
# the script's process group nor the script's child
SCRIPT = """#!/bin/bash
sleep 300 &
echo $! > "$1/plain.pid"
setsid bash -c 'sleep 300 & echo $! > "$0/daemon.pid"; disown' "$1" &
while [ ! -s "$1/daemon.pid" ]; do sleep 0.05; done
{tail}
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _setup(tmp_path: Path, tail: str) -> Path:
    script = tmp_path / "setup.sh"
    script.write_text(SCRIPT.format(tail=tail))
    script.chmod(0o755)
    return script


def _left(tmp_path: Path) -> dict[str, bool]:
    deadline = time.monotonic() + 5
    pids = {name: int((tmp_path / f"{name}.pid").read_text()) for name in ("plain", "daemon")}
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {name: _alive(pid) for name, pid in pids.items()}


def test_a_successful_setup_leaves_no_process_behind_daemonized_or_not(tmp_path):
    script = _setup(tmp_path, "exit 0")
    code, timed_out = run_logged(reaped([str(script), str(tmp_path)]), tmp_path, dict(os.environ),
                                 tmp_path / "build.log", 60)
    assert (code, timed_out) == (0, False)
    assert _left(tmp_path) == {"plain": False, "daemon": False}


def test_the_setup_scripts_exit_code_is_kept(tmp_path):
    script = _setup(tmp_path, "exit 3")
    code, _ = run_logged(reaped([str(script), str(tmp_path)]), tmp_path, dict(os.environ), tmp_path / "b.log", 60)
    assert code == 3 and _left(tmp_path) == {"plain": False, "daemon": False}


def test_a_setup_that_times_out_leaves_nothing_behind_either(tmp_path):
    script = _setup(tmp_path, "sleep 300")
    code, timed_out = run_logged(reaped([str(script), str(tmp_path)]), tmp_path, dict(os.environ),
                                 tmp_path / "build.log", 2)
    assert (code, timed_out) == (None, True)
    assert _left(tmp_path) == {"plain": False, "daemon": False}


def test_without_the_reaper_the_daemon_would_outlive_the_build(tmp_path):
    # the attack is real on this kernel: run plainly, the daemonized process survives its setup script
    script = _setup(tmp_path, "exit 0")
    run_logged([str(script), str(tmp_path)], tmp_path, dict(os.environ), tmp_path / "build.log", 60)
    daemon = int((tmp_path / "daemon.pid").read_text())
    try:
        assert _alive(daemon)
    finally:
        for name in ("plain", "daemon"):
            try:
                os.kill(int((tmp_path / f"{name}.pid").read_text()), 9)
            except OSError:
                pass
