"""The drain check on a fake NVML built from the H200 readings (tests/unit/fake_nvml.py), on a fake clock.

Team pid 1207 (the frozen side), reference pid 2000 (the timed side), a foreign pid 4242. Periods of 200 ms
end at T0 + k * 0.2 s; a sample is published at its period's end.
"""

from types import SimpleNamespace

import pytest
from fake_nvml import T0, Clock, FakeNvml, NVMLError_NotFound

from harness.records import TaskResult
from harness.device_activity import (MARGIN, ActivityUnreadable, DeviceActivity, DrainGuard, DrainRecord,
                                     ProcessSample, Verdict, drain_reasons, sample_period_s)

TEAM, REF, FOREIGN = 1207, 2000, 4242
P = 0.2


def activity(clock, busy, **nvml_options):
    return DeviceActivity(FakeNvml(clock, busy, **nvml_options), clock=clock, sleep=clock.sleep)


def test_a_busy_pid_gets_one_sample_a_period_and_nothing_between():
    clock = Clock(T0 + 0.01)
    reader = activity(clock, {TEAM: [(T0 - 10, T0 + 10)]})
    reader.poll()                       # the first poll gets what NVML kept, up to the period ending at T0
    assert reader.samples[-1].pid == TEAM and reader.samples[-1].at_s == pytest.approx(T0, abs=1e-3)
    kept = len(reader.samples)
    clock.sleep(0.1)                    # inside the same period: NotFound, nothing new
    reader.poll()
    assert len(reader.samples) == kept
    clock.sleep(0.1)                    # T0 + 0.21: the period ending at T0 + 0.2 is out
    reader.poll()
    assert len(reader.samples) == kept + 1 and reader.samples[-1].at_s == pytest.approx(T0 + 0.2, abs=1e-3)
    assert all(s.busy and s.sm == 99 for s in reader.samples)
    assert reader.readings[-1][1] == 99


def test_the_drain_wait_waits_out_a_stopped_process_queue_and_reports_the_wait():
    """The probe: 3.4 s of queued work keeps running after the SIGSTOP."""
    frozen_at = T0 + 0.05
    clock = Clock(frozen_at)
    reader = activity(clock, {TEAM: [(T0 - 5, frozen_at + 3.4)], REF: [(T0 - 5, T0 - 1)]})
    wait = reader.wait_drained(frozen_at, {REF})
    # busy until T0 + 3.45: the period ending at T0 + 3.6 is busy, the next idle; drained once the busy sample
    # is older than a period and the margin (T0 + 3.85), at the first poll after (polls every P / 8)
    assert wait.drained and wait.busy_pids == {TEAM: 99}
    assert 3.8 - 1e-3 <= wait.waited_s <= 3.8 + P / 8 + 1e-3


def test_an_honest_team_is_drained_after_one_period():
    frozen_at = T0 + 0.05
    clock = Clock(frozen_at)
    reader = activity(clock, {TEAM: [(T0 - 5, T0 - 1)]})       # its last work was done a second ago
    wait = reader.wait_drained(frozen_at, {REF})
    assert wait.drained and wait.busy_pids == {}
    assert wait.waited_s == pytest.approx(P * (1 + MARGIN))     # one period and the margin, no more


def test_a_team_busy_until_the_freeze_costs_at_most_two_periods():
    frozen_at = T0 + 0.05
    clock = Clock(frozen_at)
    reader = activity(clock, {TEAM: [(T0 - 5, frozen_at)]})
    wait = reader.wait_drained(frozen_at, {REF})
    assert wait.drained and P * (1 + MARGIN) < wait.waited_s <= 2 * P + MARGIN * P


def test_the_drain_wait_is_bounded():
    clock = Clock(T0 + 0.05)
    reader = DeviceActivity(FakeNvml(clock, {FOREIGN: [(T0 - 5, T0 + 100)]}), clock=clock, sleep=clock.sleep,
                            max_wait_s=1.0)
    wait = reader.wait_drained(T0 + 0.05, {REF})
    assert not wait.drained and 1.0 <= wait.waited_s < 1.0 + P and wait.busy_pids == {FOREIGN: 99}


def test_without_device_utilization_the_process_samples_decide():
    frozen_at = T0 + 0.05
    clock = Clock(frozen_at)
    reader = activity(clock, {TEAM: [(T0 - 5, frozen_at + 1.0)]}, device_error=3)   # NotSupported
    wait = reader.wait_drained(frozen_at, {REF})
    assert not reader.device_utilization
    assert wait.drained and 1.0 < wait.waited_s <= 1.2 + P * (1 + MARGIN)


def test_the_timed_sides_own_samples_never_hold_the_wait_or_dirty_a_window():
    clock = Clock(T0 + 0.05)
    reader = activity(clock, {REF: [(T0 + 0.4, T0 + 0.9)]}, device_error=3)
    assert reader.wait_drained(T0 + 0.05, {REF}).drained
    clock.now = T0 + 0.9
    check = reader.check_window(T0 + 0.4, T0 + 0.9, {REF})
    assert not check.dirty and check.busy_pids == {}
    assert any(s.pid == REF for s in reader.samples)       # its samples were there, and ignored


@pytest.mark.parametrize("busy, dirty", [({TEAM: [(T0 + 0.5, T0 + 0.6)]}, {TEAM: 99}),
                                         ({FOREIGN: [(T0 + 0.85, T0 + 0.95)]}, {FOREIGN: 99}),
                                         ({TEAM: [(T0 - 1, T0 + 0.3)]}, {}),        # drained before the window
                                         ({TEAM: [(T0 + 1.3, T0 + 2)]}, {})])       # after the window's last period
def test_a_window_is_dirty_when_another_pid_was_busy_in_a_period_that_covers_it(busy, dirty):
    clock = Clock(T0 + 0.9)                # the window ran from T0 + 0.45 to T0 + 0.9
    reader = activity(clock, {REF: [(T0 + 0.45, T0 + 0.9)], **busy})
    check = reader.check_window(T0 + 0.45, T0 + 0.9, {REF})
    assert check.dirty == bool(dirty) and check.busy_pids == dirty
    assert clock.now >= T0 + 0.9 + P       # waited for the period holding the window's end (ends at T0 + 1.0)


def guard_on(clock, busy, retries=3, **nvml_options):
    nvml = FakeNvml(clock, busy, **nvml_options)
    guard = DrainGuard(lambda: DeviceActivity(nvml, clock=clock, sleep=clock.sleep, max_wait_s=1.0), retries)
    return guard, nvml


def test_the_guard_waits_before_and_checks_after_a_window():
    clock = Clock(T0 + 0.05)
    guard, _ = guard_on(clock, {TEAM: [(T0 - 5, T0 + 0.5)]})
    guard.start("cuda", lambda: {REF})
    guard.before()
    verdict = Verdict()
    clock.sleep(0.3)                      # the window
    guard.after(verdict)
    record = guard.record.as_dict()
    assert not verdict.dirty and record["checked"] and record["waits"] == 1 and record["guarded_windows"] == 1
    assert 0.45 < record["wait_s"] == record["max_wait_s"] and record["timeouts"] == 0
    assert record["busy_while_draining"] == {str(TEAM): 99} and record["check_wait_s"] > 0
    assert record["period_learned"] and record["period_s"] == pytest.approx(P)


def test_a_dirty_window_is_retimed_up_to_the_bound_then_kept_with_its_figures():
    guard = DrainGuard(retries=2)
    guard.record = DrainRecord(checked=True, retries=2)
    dirty = Verdict(dirty=True, busy_pids={TEAM: 87})
    assert guard.retime(dirty, 0, "round 1") and guard.retime(dirty, 1, "round 1")
    assert not guard.retime(dirty, 2, "round 1")
    assert not guard.retime(Verdict(), 0, "round 2")
    record = guard.record.as_dict()
    assert record["discarded_windows"] == 2 and record["dirty_after_retries"] == 1
    assert record["dirty"] == [{"window": "round 1", "attempts": 3, "busy_pids": {str(TEAM): 87}}]
    [flag] = drain_reasons({"device_drain": record})
    assert "1 reference window(s)" in flag and "after 2 re-timings" in flag and f"{TEAM} at 87% sm" in flag



def test_the_drain_wording_for_one_tasks_record():
    dirty = [{"window": f"round {i}", "attempts": 3, "busy_pids": {"4101": 87, "4102": 12}} for i in (1, 2, 3, 4)]
    record = DrainRecord(checked=False, why_not="", dirty_after_retries=4, dirty=dirty, retries=3).as_dict()
    assert drain_reasons({"device_drain": record}) == [
        "the team's queued device work was not kept out of the reference's windows (drain check not run: unknown)",
        "4 reference window(s) still had another process busy on the device after 3 re-timings, kept (round 1: "
        "pid(s) 4101 at 87% sm, 4102 at 12% sm; round 2: pid(s) 4101 at 87% sm, 4102 at 12% sm; round 3: pid(s) "
        "4101 at 87% sm, 4102 at 12% sm)"]
    assert drain_reasons({}) == [] and drain_reasons({"device_drain": None}) == []
    assert drain_reasons({"device_drain": {**record, "applicable": False}}) == []


def test_device_cpu_is_not_applicable_opens_nothing_and_is_not_flagged():
    def never():
        raise AssertionError("NVML opened for a CPU run")

    guard = DrainGuard(never)
    guard.start("cpu", lambda: {REF})
    guard.before()
    guard.after(Verdict())
    record = guard.record.as_dict()
    assert not record["checked"] and not record["applicable"] and record["waits"] == 0
    assert drain_reasons({"device_drain": record}) == []


@pytest.mark.parametrize("options, pids, why", [
    ({"init_error": 9}, {REF}, "NVML does not answer"),                       # no driver
    ({"process_error": 3}, {REF}, "no per-process utilization"),              # MIG / vGPU
    ({"compute_pids": (1207,)}, {REF}, "not among the GPU's compute processes"),   # another pid namespace
    ({}, set(), "host pids are unknown"),
])
def test_a_guard_that_cannot_attribute_work_says_why_and_the_row_is_flagged(options, pids, why):
    clock = Clock()
    guard, _ = guard_on(clock, {}, **options)
    guard.start("cuda", lambda: pids)
    guard.before()
    record = guard.record.as_dict()
    assert not guard.active and not record["checked"] and why in record["why_not"] and record["waits"] == 0
    [flag] = drain_reasons({"device_drain": record})
    assert "not run" in flag and why in flag


def test_nvml_failing_mid_run_stops_the_guard_and_says_so():
    clock = Clock()
    guard, nvml = guard_on(clock, {})
    guard.start("cuda", lambda: {REF})
    nvml.process_error = 999                       # NVML_ERROR_UNKNOWN
    guard.before()
    verdict = Verdict()
    guard.after(verdict)
    record = guard.record.as_dict()
    assert not record["checked"] and "NVML failed during the run" in record["why_not"] and not verdict.dirty
    assert nvml.shut == 1 and not guard.active


def test_no_pynvml_is_said():
    import sys

    saved = sys.modules.get("pynvml")
    sys.modules["pynvml"] = None          # import pynvml raises ImportError
    try:
        guard = DrainGuard()
        guard.start("cuda:0", lambda: {REF})
    finally:
        if saved is None:
            del sys.modules["pynvml"]
        else:
            sys.modules["pynvml"] = saved
    assert not guard.record.checked and "nvidia-ml-py is not installed" in guard.record.why_not


def test_activity_unreadable_without_gpus():
    class NoGpu(FakeNvml):
        def nvmlDeviceGetCount(self):
            return 0

    with pytest.raises(ActivityUnreadable, match="no GPU"):
        DeviceActivity(NoGpu(Clock(), {}))


def test_the_rows_flags_say_when_the_drain_check_did_not_run_on_a_gpu():
    from harness.row_flags import measurement_flags
    from harness.spec import load_spec

    not_checked = DrainRecord(why_not="NVML gives no per-process utilization on this GPU (MIG or vGPU?)").as_dict()
    on_cpu = DrainRecord(why_not="device cpu: no device queue", applicable=False).as_dict()
    tasks = {"csl": TaskResult.from_dict({"timing": {"device_drain": not_checked}}),
             "cluewsc2020": TaskResult.from_dict({"timing": {"device_drain": on_cpu}})}
    flags = measurement_flags(load_spec(), tasks, {"device": "cuda"}, {"device": "cuda"})
    assert [f for f in flags if "drain" in f] == [
        "csl: the team's queued device work was not kept out of the reference's windows (drain check not run: "
        "NVML gives no per-process utilization on this GPU (MIG or vGPU?))"]


def samples_at(pid, *offsets):
    return [ProcessSample(pid, T0 + t, 99, 40) for t in offsets]


def test_the_sample_period_is_the_spacing_of_a_busy_pids_consecutive_samples():
    # 200 ms apart while busy, a 600 ms gap where it was idle, another pid at 1/6 s (a product's period)
    assert sample_period_s(samples_at(TEAM, 0.0, 0.2, 0.4, 1.0, 1.2)) == pytest.approx(0.2)
    assert sample_period_s(samples_at(TEAM, 0.0, 0.2, 0.8)) is None          # two spacings: not yet
    assert sample_period_s(samples_at(REF, 0.0, 1 / 6, 2 / 6, 3 / 6)) == pytest.approx(1 / 6)


def test_until_the_period_is_learned_the_drain_wait_assumes_the_longest():
    clock = Clock(T0 + 0.05)
    reader = activity(clock, {})                  # nothing busy yet: no spacing to learn from
    wait = reader.wait_drained(T0 + 0.05, {REF})
    assert not reader.period_learned and wait.drained and wait.waited_s == pytest.approx(1.0 * (1 + MARGIN))


def test_after_a_window_stayed_dirty_the_waits_are_cut_and_nothing_more_is_retried():
    clock = Clock(T0 + 0.05)
    nvml = FakeNvml(clock, {FOREIGN: [(T0 - 5, T0 + 1000)]})       # another process holds the device for good
    guard = DrainGuard(lambda: DeviceActivity(nvml, clock=clock, sleep=clock.sleep, max_wait_s=10.0), retries=0)
    guard.start("cuda", lambda: {REF})
    waits = []
    for label in ("round 1", "round 2"):
        guard.before()
        waits.append(guard.record.wait_s - sum(waits))
        verdict = Verdict()
        guard.after(verdict)
        assert verdict.dirty and not guard.retime(verdict, 0, label)
    assert 10.0 <= waits[0] < 10.0 + P and 4 * P <= waits[1] < 5 * P
    record = guard.record.as_dict()
    assert record["timeouts"] == 2 and record["dirty_after_retries"] == 2 and record["discarded_windows"] == 0
    assert record["max_wait_s"] == pytest.approx(waits[0])


class TwoGpus(FakeNvml):
    """GPU 0 holds the two sides (1207, 2000), GPU 1 another slot's worker (3000), busy for good."""

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        pids = [3000] if handle == "gpu1" else [1207, 2000]
        return [SimpleNamespace(pid=pid, usedGpuMemory=1) for pid in pids]

    def nvmlDeviceGetProcessUtilization(self, handle, last_seen_us):
        if handle == "gpu0":
            raise NVMLError_NotFound()
        return super().nvmlDeviceGetProcessUtilization(handle, last_seen_us)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=99 if handle == "gpu1" else 0, memory=0)


def test_only_the_timed_sides_gpu_is_watched_another_slots_busy_gpu_slows_nobody_here():
    clock = Clock(T0 + 0.05)
    nvml = TwoGpus(clock, {3000: [(T0 - 5, T0 + 1000)]})
    guard = DrainGuard(lambda: DeviceActivity(nvml, clock=clock, sleep=clock.sleep, max_wait_s=2.0))
    guard.start("cuda", lambda: {2000}, lambda: {1207})
    assert guard.activity.handles == ["gpu0"]
    guard.before()
    assert guard.record.timeouts == 0 and guard.record.busy_while_draining == {}
    # without the focus, GPU 1's worker held every wait to its bound
    unfocused = DeviceActivity(TwoGpus(clock, {3000: [(T0 - 5, T0 + 1000)]}), clock=clock, sleep=clock.sleep,
                               max_wait_s=2.0)
    assert not unfocused.wait_drained(clock(), {2000}).drained
