"""The side not being timed is frozen: around every timed window, never inside one, children included."""

import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from harness.backends.local import LocalWorker
from harness.freezing import FreezeLedger, FreezeUnavailable, freeze_flags, timed_alone


class Side:
    def __init__(self, name, log, can_freeze=True):
        self.name, self.log, self.can_freeze, self.frozen = name, log, can_freeze, False

    def freeze(self):
        if not self.can_freeze:
            raise FreezeUnavailable("no freezer here")
        self.frozen = True
        self.log.append(f"freeze {self.name}")

    def thaw(self):
        self.frozen = False
        self.log.append(f"thaw {self.name}")


def test_the_others_are_frozen_for_the_window_and_thawed_after_it_even_when_it_fails():
    log, ledger = [], FreezeLedger()
    reference = Side("reference", log)
    with timed_alone([reference], ledger):
        log.append("team timed")
        assert reference.frozen
    with pytest.raises(RuntimeError):
        with timed_alone([reference], ledger):
            raise RuntimeError("the team's worker broke mid-window")
    assert log == ["freeze reference", "team timed", "thaw reference", "freeze reference", "thaw reference"]
    assert not reference.frozen and ledger.windows == 2 and ledger.seconds >= 0 and not ledger.unavailable


def test_a_side_that_cannot_be_frozen_is_timed_anyway_and_the_ledger_says_why():
    ledger = FreezeLedger()
    with timed_alone([Side("team", [], can_freeze=False)], ledger):
        pass
    assert ledger.unavailable == "team: no freezer here" and ledger.record()["freeze_unavailable"]


def test_measure_task_freezes_the_other_side_around_every_timed_call():
    """With the fake workers of test_timekeeper: each predict request is answered while the other side's
    process handle says frozen, warm-up, first sight and rounds alike."""
    import test_timekeeper as tk

    seen = []

    class Handle:
        def __init__(self, name):
            self.name, self.frozen = name, False

        def freeze(self):
            self.frozen = True

        def thaw(self):
            self.frozen = False

    handles = {"team": Handle("team"), "reference": Handle("reference")}
    team = tk.link("team", lambda ids, seen_before: 0.001, [])
    ref = tk.link("reference", lambda ids, seen_before: 0.004, [])
    team.process, ref.process = handles["team"], handles["reference"]
    original = tk.WorkerLink.round_trip

    def watched(self, request):
        other = handles["reference" if self.name == "team" else "team"]
        seen.append((self.name, other.frozen))
        return original(self, request)

    tk.WorkerLink.round_trip = watched
    try:
        times = tk.measure_task(team, ref, "csl", tk.EXAMPLES, 2, tk.plan(), tk.LOADS)
    finally:
        tk.WorkerLink.round_trip = original
    predicts = [frozen for name, frozen in seen]
    assert len(predicts) > 20
    # load requests go to both sides unfrozen; every other round trip found the other side frozen
    assert predicts[:2] == [False, False] and all(predicts[2:])
    assert times.freezing.windows >= 2 + 2 * 3 and not times.freezing.unavailable
    assert not handles["team"].frozen and not handles["reference"].frozen


BURNER = textwrap.dedent("""
    import os, time
    if os.fork() == 0:          # a child that leaves the worker's process group and session, and burns CPU
        os.setsid()
        while True:
            pass
    time.sleep(600)
""")


def test_a_local_worker_is_stopped_whole_children_that_left_its_group_included():
    process = subprocess.Popen([sys.executable, "-c", BURNER], start_new_session=True)
    worker = LocalWorker(process, log_path=None)
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(process.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = psutil.Process(process.pid).children()[0]
        assert child.status() != psutil.STATUS_STOPPED
        worker.freeze()
        time.sleep(0.1)
        assert {psutil.Process(process.pid).status(), child.status()} == {psutil.STATUS_STOPPED}
        burnt = sum(child.cpu_times()[:2])
        time.sleep(0.3)
        assert sum(child.cpu_times()[:2]) - burnt < 0.02          # no CPU while frozen
        worker.thaw()
        time.sleep(0.1)
        assert psutil.STATUS_STOPPED not in {psutil.Process(process.pid).status(), child.status()}
    finally:
        for p in psutil.Process(process.pid).children(recursive=True):
            p.send_signal(signal.SIGKILL)
        worker.kill()
        process.wait()


def test_a_side_that_could_not_be_frozen_is_worded_for_the_row():
    assert freeze_flags({"freeze_unavailable": "docker pause failed: 409"}) == [
        "the side not being timed could not be frozen (docker pause failed: 409): a team's idle work could have "
        "slowed the reference"]
    assert freeze_flags(FreezeLedger().record()) == [] and freeze_flags({}) == []
