"""The split of each side's time, read by the host (harness.time_split), on the fake NVML and a fake clock.

Team pid 1207, reference pid 2000. NVML's periods of 200 ms end at T0 + k * 0.2 s; with `proportional`, a
busy pid's sample says the share of its period it was busy.
"""

import pytest
from fake_nvml import T0, Clock, FakeNvml

from harness.device_activity import DeviceActivity
from harness.time_split import SplitRecorder, busy_seconds, own_figure, own_split_pass
from harness.device_activity import ProcessSample

TEAM, REF = 1207, 2000
P = 0.2


def recorder(clock, nvml, cpu_rate=None):
    """A recorder on the fake NVML; CPU seconds of a pid grow at cpu_rate[pid] cores from T0 on."""
    rates = cpu_rate or {}
    return SplitRecorder(lambda: DeviceActivity(nvml, clock=clock, sleep=clock.sleep), clock=clock,
                         read_cpu=lambda pids: (sum(rates.get(p, 0.0) * (clock() - T0) for p in pids), ""))


def window(split, clock, side, start, end):
    clock.now = T0 + start
    with split.window(side):
        clock.now = T0 + end


# The worked example. Busy on the device: the team in [0.10, 0.20], [0.40, 0.50] and [1.05, 1.10] (seconds
# after T0), inside its windows [0.10, 0.50] and [1.05, 1.25]; the reference in [0.55, 0.95], its whole
# window [0.55, 0.95]; both earlier in warm-up, which teaches the recorder NVML's period.
#
# The team's windows last 0.4 + 0.2 = 0.6 s. The periods that overlap them end at 0.2, 0.4, 0.6 (window 1)
# and 1.2, 1.4 (window 2); its samples there: 0.2: 0.1 s busy of 0.2 = 50 %; 0.4: none; 0.6: 50 %
# ([0.40, 0.50]); 1.2: 0.05 / 0.2 = 25 %; 1.4: none. Busy: (0.5 + 0.5 + 0.25) * 0.2 = 0.25 s of 0.6 s: 5/12.
# The reference's window lasts 0.4 s; its periods end at 0.6 (0.05 s of it busy: 25 %), 0.8 (100 %) and 1.0
# (0.15 s: 75 %): (0.25 + 1 + 0.75) * 0.2 = 0.4 s of 0.4 s: 100 %. The device-wide figure of the period
# ending at 0.6 mixes both sides (team 50 %, reference 25 %): the per-process samples keep them apart.
BUSY = {TEAM: [(T0 - 2.0, T0 - 1.0), (T0 + 0.10, T0 + 0.20), (T0 + 0.40, T0 + 0.50), (T0 + 1.05, T0 + 1.10)],
        REF: [(T0 - 2.0, T0 - 1.0), (T0 + 0.55, T0 + 0.95)]}


def test_the_worked_example_device_busy_shares_per_side():
    clock = Clock(T0 + 0.05)
    nvml = FakeNvml(clock, BUSY, compute_pids=(TEAM, REF), proportional=True)
    split = recorder(clock, nvml, {TEAM: 1.5, REF: 3.0})
    split.start("cuda", {"team": lambda: {TEAM}, "reference": lambda: {REF}})
    window(split, clock, "team", 0.10, 0.50)
    window(split, clock, "reference", 0.55, 0.95)
    window(split, clock, "team", 1.05, 1.25)
    records = split.finish()
    team, ref = records["team"], records["reference"]
    assert team["windows"] == 2 and team["wall_s"] == pytest.approx(0.6)
    assert team["device_busy_s"] == pytest.approx(0.25) and team["device_busy"] == pytest.approx(5 / 12)
    assert ref["device_busy_s"] == pytest.approx(0.4) and ref["device_busy"] == pytest.approx(1.0)
    assert team["nvml_period_s"] == pytest.approx(P) and team["notes"] == [] and ref["notes"] == []
    # CPU: 1.5 cores for the team's 0.6 s of windows, 3 cores for the reference's 0.4 s
    assert team["cpu_s"] == pytest.approx(0.9) and team["cpu_busy"] == pytest.approx(1.5)
    assert ref["cpu_s"] == pytest.approx(1.2) and ref["cpu_busy"] == pytest.approx(3.0)
    # finish waited until the period holding the last window's end (ending at 1.4) was published
    assert clock.now >= T0 + 1.25 + P * 1.25 - 1e-9


def test_busy_seconds_counts_a_period_once_and_caps_several_pids_at_the_whole_period():
    # two pids of one side busy 70 % and 60 % of the period ending at 0.2: the period counts 100 %, once,
    # though it overlaps both windows [0.0, 0.05] and [0.1, 0.15]; a sample of a period ending at 0.6
    # (0.4, 0.6] overlaps neither window: left out
    samples = [ProcessSample(1, T0 + 0.2, 70, 0), ProcessSample(2, T0 + 0.2, 60, 0), ProcessSample(1, T0 + 0.6, 99, 0)]
    spans = [(T0, T0 + 0.05), (T0 + 0.1, T0 + 0.15)]
    assert busy_seconds(samples, {1, 2}, spans, P) == pytest.approx(0.2)
    assert busy_seconds(samples, {2}, spans, P) == pytest.approx(0.12)
    assert busy_seconds(samples, {3}, spans, P) == 0.0


def test_a_side_idle_on_the_device_reads_zero_not_blank():
    clock = Clock(T0 + 0.05)
    nvml = FakeNvml(clock, {REF: [(T0 - 2.0, T0 - 1.0), (T0 + 0.55, T0 + 0.95)]}, compute_pids=(REF,),
                    proportional=True)
    split = recorder(clock, nvml)
    split.start("cuda", {"team": lambda: {TEAM}, "reference": lambda: {REF}})
    window(split, clock, "team", 0.10, 0.50)
    window(split, clock, "reference", 0.55, 0.95)
    team = split.finish()["team"]
    assert team["device_busy"] == 0.0 and team["notes"] == []


@pytest.mark.parametrize("nvml_options, compute, why", [
    ({"init_error": 9}, (TEAM, REF), "NVML does not answer"),
    ({"process_error": 3}, (TEAM, REF), "no per-process utilization"),          # MIG, vGPU
    ({}, (31, 32), "not among the GPU's compute processes"),                     # another pid namespace
])
def test_a_share_that_cannot_be_read_says_why_on_each_side(nvml_options, compute, why):
    clock = Clock(T0 + 0.05)
    nvml = FakeNvml(clock, BUSY, compute_pids=compute, proportional=True, **nvml_options)
    split = recorder(clock, nvml, {TEAM: 1.0})
    split.start("cuda", {"team": lambda: {TEAM}, "reference": lambda: {REF}})
    window(split, clock, "team", 0.10, 0.50)
    window(split, clock, "reference", 0.55, 0.95)
    for record in split.finish().values():
        assert record["device_busy"] is None
        assert any(note.startswith("device busy share not read") and why in note for note in record["notes"])
    assert split.sides["team"].cpu_s == pytest.approx(0.4)     # the CPU time is still read


def test_on_a_cpu_only_the_cpu_time_is_read_and_nothing_is_missing():
    clock = Clock(T0)
    split = recorder(clock, None, {TEAM: 0.5})
    split.start("cpu", {"team": lambda: {TEAM}, "reference": lambda: {REF}})
    window(split, clock, "team", 1.0, 3.0)
    team = split.finish()["team"]
    assert team["cpu_busy"] == pytest.approx(0.5) and team["device_busy"] is None and team["notes"] == []


def test_unknown_pids_are_said_not_read_as_zero():
    clock = Clock(T0)
    split = recorder(clock, None)
    split.start("cpu", {"team": set, "reference": lambda: {REF}})
    window(split, clock, "team", 1.0, 2.0)
    team = split.finish()["team"]
    assert team["cpu_busy"] is None and team["notes"] == ["CPU time not read: the side's processes are unknown"]


def test_the_own_figure_adds_up_the_pass_and_refuses_what_is_not_seconds():
    assert own_figure([{"predict_s": 0.03, "forward_s": 0.01}, {"predict_s": 0.01, "forward_s": 0.01}]) == {
        "predict_s": pytest.approx(0.04), "forward_s": pytest.approx(0.02), "forward_share": pytest.approx(0.5),
        "note": ""}
    for hostile in ([{"predict_s": float("nan"), "forward_s": 0.0}], [{"predict_s": True, "forward_s": 0.0}],
                    [{"predict_s": -1.0, "forward_s": 0.0}], ["0.5"]):
        assert own_figure(hostile)["forward_share"] is None
    lying = own_figure([{"predict_s": 0.01, "forward_s": 5.0}])          # more forward than predict: capped
    assert lying["forward_share"] == 1.0
    none = own_figure([{"predict_s": 0.01, "forward_s": None, "note": "no torch module found on the predictor"}])
    assert none["forward_share"] is None and "no torch module" in none["note"]


class ProfilingLink:
    """A link whose worker answers `profile` with scripted figures (or fails), and freezes on request."""

    def __init__(self, name, reply=None, error=None):
        self.name, self.reply, self.error, self.frozen, self.calls = name, reply, error, 0, 0

    def freeze(self):
        self.frozen += 1

    def thaw(self):
        pass

    def call(self, op, **fields):
        assert op == "profile" and "batch" in fields
        self.calls += 1
        if self.error:
            from harness.worker_link import WorkerFailed
            raise WorkerFailed(self.error, self.name)
        return 0.0, {"ok": True, "profile": self.reply}


def test_the_own_split_pass_runs_each_side_alone_and_a_failure_is_a_note():
    team = ProfilingLink("team", {"predict_s": 0.02, "forward_s": 0.005})
    ref = ProfilingLink("reference", error="unknown request 'profile'")
    found = own_split_pass({"team": team, "reference": ref}, [[{"id": i}] for i in range(6)])
    # the first four batches only (PROFILE_BATCHES): 4 * 0.02 s in predict(), 4 * 0.005 s in the forward
    assert team.calls == 4
    assert found["team"]["forward_share"] == pytest.approx(0.25) and found["team"]["predict_s"] == pytest.approx(0.08)
    assert found["reference"]["forward_share"] is None and "unknown request" in found["reference"]["note"]
    assert team.frozen == 1 and ref.frozen == 1           # each frozen while the other's pass ran


def test_the_timekeeper_records_every_scored_window_of_each_side_and_no_warm_up_window():
    """Fake workers on socketpairs (test_timekeeper_drain's), on the CPU: three batches, first-sight blocks of
    one batch (the reference's batch takes 60 ms), two rounds, the later one built as round 0: 6 windows a side."""
    import os

    from test_timekeeper_drain import EXAMPLES, LOADS, PLAN, fake_link

    from harness.timekeeper import measure_task

    team, ref = fake_link("team", os.getpid(), [], 0.001), fake_link("reference", os.getpid(), [], 0.06)
    split = SplitRecorder()
    split.start = lambda device, sources, start=split.start: start("cpu", sources)   # the fakes say cuda
    times = measure_task(team, ref, "csl", EXAMPLES, 2, PLAN, LOADS, split=split)
    for link in (team, ref):
        link.stop()
    assert set(times.time_split) == {"team", "reference"}
    for side in times.time_split.values():
        assert side["windows"] == 6 and side["wall_s"] > 0 and side["cpu_busy"] is not None
    # the reference's windows hold round 0's 3 batches, each with its two flanks, and round 1's 3 stand-ins
    # alone (the reference is ours: nothing to audit): 12 calls of 60 ms
    assert times.time_split["reference"]["wall_s"] >= 12 * 0.06


def test_through_the_timekeeper_on_a_gpu_each_sides_pids_are_read_apart():
    """The same fake workers saying cuda, and a fake NVML on the real clock in which the reference's pid is
    busy all the time and the team's never: the reference reads fully busy (its busy periods cover its
    windows; capped at 1), the team 0, each from its own pid's samples."""
    import time

    from test_timekeeper_drain import EXAMPLES, LOADS, PLAN, fake_link

    from harness.timekeeper import measure_task

    nvml = FakeNvml(time.time, {REF: [(0.0, 1e12)]}, compute_pids=(TEAM, REF), proportional=True)
    split = SplitRecorder(lambda: DeviceActivity(nvml), read_cpu=lambda pids: (0.0, ""))
    team, ref = fake_link("team", TEAM, [], 0.001), fake_link("reference", REF, [], 0.06)
    times = measure_task(team, ref, "csl", EXAMPLES, 2, PLAN, LOADS, split=split)
    for link in (team, ref):
        link.stop()
    assert times.time_split["reference"]["device_busy"] == 1.0 and times.time_split["team"]["device_busy"] == 0.0
    assert times.time_split["reference"]["nvml_period_s"] == pytest.approx(P)
    assert nvml.shut == 1                                  # NVML closed once the task's split was read
