"""The timekeeper with the drain check: a dirty reference window is discarded, timed again and counted.

Fake workers answer on a socketpair (as in test_timekeeper.py) and say they run on cuda; the device is a
fake NVML on a fake clock that moves only while the drain check waits, so a team pid scripted busy over a
stretch of that clock dirties the reference windows guarded within it.
"""

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from fake_nvml import T0, Clock, FakeNvml

from harness import warmup_inputs
from harness.device_activity import DeviceActivity, DrainGuard
from harness.measurement import task_records
from harness.probe import channel
from harness.spec import load_spec
from harness.timekeeper import TimingPlan, measure_task
from harness.worker_link import WorkerFailed, WorkerLink

SPEC = load_spec(Path(__file__).resolve().parents[1] / "fixtures" / "spec_small.toml")
EXAMPLES = [{"id": i, "label_free": f"句子{i}"} for i in range(6)]
LOADS = {"team": {"task": "csl"}, "reference": {"task": "csl"}}
TEAM, REF, OTHER = 1207, 2000, 3000       # OTHER: a process of neither side (another slot's)


def serve(sock, log, seconds):
    try:
        while True:
            nonce, request = channel.recv_request(sock)
            if request["op"] == "stop":
                return
            if request["op"] == "predict":
                ids = tuple(e["id"] for e in request["batch"])
                log.append(ids)
                time.sleep(seconds)
                channel.send(sock, {"ok": True, "nonce": nonce, "predictions": [{"id": i, "label": "0"} for i in ids]})
            else:
                channel.send(sock, {"ok": True, "nonce": nonce, "environment": {"device": "cuda"}, "precision": {}})
    except channel.ChannelError:
        return


def fake_link(name, pid, log, seconds):
    host, worker = socket.socketpair()
    threading.Thread(target=serve, args=(worker, log, seconds), daemon=True).start()
    link = WorkerLink(name, host, time.monotonic() + 30, {"protocol": channel.PROTOCOL_VERSION})
    link.host_pid = pid
    return link


PLAN = TimingPlan(run_seed=5, rounds=2, max_rounds=2, warmup_min_s=0.0, warmup_max_s=0.05, settle_tolerance=0.9,
                  confidence=0.95, min_speedup=1.0, seed=0, caching_tolerance=0.5, threads=0)


def measure(busy_until, retries=3, busy_pid=TEAM):
    clock = Clock(T0 + 0.05)
    nvml = FakeNvml(clock, {busy_pid: [(T0 - 5, busy_until)]})
    guard = DrainGuard(lambda: DeviceActivity(nvml, clock=clock, sleep=clock.sleep, max_wait_s=0.5), retries)
    team_log, ref_log = [], []
    team = fake_link("team", TEAM, team_log, 0.001)
    ref = fake_link("reference", REF, ref_log, 0.06)      # a batch over MIN_WINDOW_S / 2: blocks of one batch
    times = measure_task(team, ref, "csl", EXAMPLES, 2, PLAN, LOADS, drain=guard)
    for link in (team, ref):
        link.stop()
    return times, ref_log, nvml


MAKERS = []


@pytest.fixture(autouse=True)
def recorded_makers(monkeypatch):
    """Every InputMaker the timekeeper makes, in MAKERS (to tell the real inputs by their masked ids)."""
    MAKERS.clear()

    class Recording(warmup_inputs.InputMaker):
        def __init__(self, examples, seed):
            super().__init__(examples, seed)
            MAKERS.append(self)

    monkeypatch.setattr(warmup_inputs, "InputMaker", Recording)


def real_batches(log):
    """The real batches (by index) the worker was sent, every made-up input (warm-up, flank, spare, the later
    rounds' fresh passes) left out."""
    def real(opaque):
        try:
            return MAKERS[0].real_id(opaque)
        except KeyError:
            return None
    return [real(ids[0]) // 2 for ids in log if real(ids[0]) is not None]


def test_a_dirty_reference_window_is_retimed_and_counted():
    # The team's queue keeps the device busy until T0 + 1.0 on the fake clock. The first guarded window (the
    # reference's first-sight block 0) waits out the 0.5 s bound, opens at T0 + 0.55, and the period ending at
    # T0 + 0.6 shows the team busy: dirty, discarded. Its second attempt drains (the period ending at T0 + 1.2
    # is idle) and is clean, and so is every later one.
    times, ref_log, nvml = measure(T0 + 1.0)
    record = task_records("csl", times, len(EXAMPLES), TimingPlan.from_spec(SPEC, 5))[0]["device_drain"]
    assert record["checked"] and record["timeouts"] == 1 and record["discarded_windows"] == 1
    assert record["dirty_after_retries"] == 0 and record["dirty"] == []
    assert record["busy_while_draining"] == {str(TEAM): 99}
    # 3 first-sight blocks (one batch each) and round 1's 3 blocks (built as round 0) guarded, plus the
    # discarded attempt
    assert record["waits"] == record["guarded_windows"] == 7
    # the reference was sent its first real batch once more: first sight timed again (the later round is
    # over fresh inputs)
    sends = Counter(real_batches(ref_log))
    first = times.orders[0][0]
    assert sends == {b: 2 if b == first else 1 for b in range(3)}
    assert len(times.reference.rounds) == 2 and len(times.reference.predictions[0]) == len(EXAMPLES)
    assert nvml.shut == 1                                  # closed on the way out


def test_a_window_still_dirty_after_the_retries_is_kept_and_flagged():
    times, _, _ = measure(T0 + 1000.0, retries=1, busy_pid=OTHER)   # another process busy for good
    record = task_records("csl", times, len(EXAMPLES), TimingPlan.from_spec(SPEC, 5))[0]["device_drain"]
    # the first window is retried once and kept; the activity is persistent, so the later ones are kept at
    # once, after a drain wait cut to 4 periods (0.8 s, against the 0.5 s bound here: the bound stays)
    assert record["checked"] and record["discarded_windows"] == 1 and record["dirty_after_retries"] == 6
    assert [d["window"] for d in record["dirty"]] == ["first-sight block 0", "first-sight block 1",
                                                      "first-sight block 2", "round 1 block 0",
                                                      "round 1 block 1", "round 1 block 2"]
    assert [d["attempts"] for d in record["dirty"]] == [2, 1, 1, 1, 1, 1]
    assert all(d["busy_pids"] == {str(OTHER): 99} for d in record["dirty"])
    assert record["waits"] == record["timeouts"] == 7
    assert len(times.reference.rounds) == 2


def test_a_clean_run_waits_once_per_guarded_window_and_discards_nothing():
    times, ref_log, _ = measure(T0 - 1.0)
    record = task_records("csl", times, len(EXAMPLES), TimingPlan.from_spec(SPEC, 5))[0]["device_drain"]
    assert record["checked"] and record["discarded_windows"] == 0 and record["timeouts"] == 0
    assert record["waits"] == record["guarded_windows"] == 6
    assert Counter(real_batches(ref_log)) == {0: 1, 1: 1, 2: 1}     # each real batch once: first sight


def test_the_teams_own_device_work_through_every_retiming_fails_the_task_never_slows_the_reference():
    # the team's pid busy for good: a saboteur that queues long kernels before every return. Kept and
    # flagged, as another process's activity is, it would raise T_bert on every later window; it is the
    # team's failure instead, named with its pid
    with pytest.raises(WorkerFailed, match=r"the team's processes \[1207\] kept the GPU busy") as caught:
        measure(T0 + 1000.0, retries=1)
    assert caught.value.side == "team" and "first-sight block 0, 2 attempt(s)" in str(caught.value)
