"""A resident peak that cannot be read is said on the row (issue 28: a zombie child in the worker's tree made
the peak unreadable, and nothing said so)."""

import subprocess
import sys
import time
from types import SimpleNamespace

import psutil

from harness.records import TaskResult
from harness.measurement import read_peaks
from harness.kernel_memory import memory_flags
from harness.row_flags import per_task

ZOMBIE_PARENT = "import os, time\nif os.fork() == 0:\n    os._exit(0)\ntime.sleep(60)\n"


def test_a_zombie_child_makes_the_resident_peak_unreadable_and_the_row_says_so():
    parent = subprocess.Popen([sys.executable, "-c", ZOMBIE_PARENT])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 20
        while not [c for c in psutil.Process(parent.pid).children() if c.status() == psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.05)
        team, reference = SimpleNamespace(host_pid=parent.pid), SimpleNamespace(host_pid=other.pid)
        found = read_peaks(team, reference, {"team": 0, "reference": 0})
    finally:
        parent.kill()
        other.kill()
        parent.wait()
        other.wait()
    assert found["team"] is None and "zombie" in found["team_why"]
    assert found["reference"] is not None and "reference_why" not in found
    flags = per_task({"csl": TaskResult.from_dict({"timing": {"peak_unreadable": found["team_why"]}})}, memory_flags)
    assert flags == [f"csl: peak memory not checked: {found['team_why']}"]
