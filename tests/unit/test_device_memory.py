"""The memory cross-checks on a GPU (issue 27): weights on the device are checked in device bytes right after
load, against an allowance the reference calibrates on the box; the host may explain its growth by the host
copy of the device weights; the activation cache after the passes is reported, never compared.

Figures: the H200 run of 2026-12-04 (local backend, torch 2.11), copied here by hand: the parameter counts
and resident growths of the honest teams, RoBERTa-tiny's 2,408 MiB after the CMRC2018 passes against
BERT-base's 2,044 MiB. NVML is a fake (per-pid usedGpuMemory); the device growth at load of an honest model
is taken as its weights rounded up to the caching allocator's 2 MiB blocks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

import harness.gpu as gpu
from harness.records import TaskResult
from harness import replies
from harness.crosscheck import (DEVICE_MARGIN_BYTES, device_reasons, explained_bytes, explained_device_bytes,
                                unexplained_memory)
from harness.kernel_memory import memory_flags
from harness.measurement import device_checked, device_load_records
from harness.probe.params.torch_count import TorchCount
from harness.row_flags import per_task
from harness.worker_link import WorkerFailed

MiB = 2**20
BLOCK = 2 * MiB
TEAM_PID, TEAM_CHILD_PID, REF_PID, OTHER_PID = 4101, 4102, 4201, 999
CONTEXT = 530 * MiB          # a worker's CUDA context after prepare (any figure: only growth is checked)


class FakeNvml:
    """Stands in for the pynvml module: one GPU, the processes in `used` (pid -> bytes, None = not reported)."""

    def __init__(self, used: dict[int, int | None], fail: Exception | None = None):
        self.used, self.fail, self.shutdowns = dict(used), fail, 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        if self.fail:
            raise self.fail
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.used.items()]


@pytest.fixture
def nvml(monkeypatch):
    fake = FakeNvml({})
    monkeypatch.setattr(gpu, "_nvml", lambda: fake)
    return fake


def rounded(nbytes: int) -> int:
    """Weights as the caching allocator holds them: rounded up to its 2 MiB blocks."""
    return math.ceil(nbytes / BLOCK) * BLOCK


def on_device(params: int) -> dict:
    """The worker's count report of an fp32 model wholly on the device (counted_cpu_bytes 0, as on the H200)."""
    return {"counted": params, "counted_cpu_bytes": 0, "counted_device_bytes": 4 * params,
            "counted_device_params": params}


BERT_BASE = on_device(102_269_186)      # the reference on CLUEWSC2020 and CSL


def team_row(nvml: FakeNvml, team: dict, host_growth: float, peak: float, device_growth: int | None,
             reference_growth: int | None = None, child_growth: int = 0) -> dict:
    """The team's timing record for one task, built as measurement does: NVML read (fake) over the worker's
    tree after prepare and right after load, the reference loading BERT-base beside it."""
    reference_growth = rounded(4 * BERT_BASE["counted"]) if reference_growth is None else reference_growth
    nvml.used = {TEAM_PID: CONTEXT, TEAM_CHILD_PID: 0, REF_PID: CONTEXT, OTHER_PID: 7 * MiB}
    baseline = {"team_device": gpu.device_memory_reading([TEAM_PID, TEAM_CHILD_PID]),
                "reference_device": gpu.device_memory_reading([REF_PID])}
    if device_growth is not None:
        nvml.used[TEAM_PID] = CONTEXT + device_growth - child_growth
        nvml.used[TEAM_CHILD_PID] = child_growth
    nvml.used[REF_PID] = CONTEXT + reference_growth
    loaded = {"team_params": team, "team_device": gpu.device_memory_reading([TEAM_PID, TEAM_CHILD_PID]),
              "reference_device": gpu.device_memory_reading([REF_PID])}
    device, _ = device_load_records(baseline, loaded, BERT_BASE)
    return {**unexplained_memory(team, int(host_growth * MiB), int(peak * MiB)), **device}


def flags_of(task: str, timing: dict, reference: dict | None = None) -> list[str]:
    tasks = {task: TaskResult.from_dict({"params": 0, "timing": timing})}
    return per_task(tasks, memory_flags) + per_task(tasks, device_reasons)     # `reference`: its record calibrates


# Parameters, resident growth at load (MiB) and peak growth (MiB) of the honest teams on the H200.
H200_HONEST = [("roberta-tiny cluewsc2020", 7_450_562, 25.8, 348.0),
               ("roberta-tiny csl", 7_450_562, 25.8, 350.9),
               ("roberta-tiny cluener2020", 7_358_853, 25.4, 348.7),
               ("roberta-tiny cmrc2018", 7_352_906, 25.4, 502.4),
               ("albert-tiny cluewsc2020", 4_081_146, 17.1, 343.4),
               ("albert-tiny csl", 4_081_146, 17.1, 348.0),
               ("albert-tiny cluener2020", 3_989_437, 16.8, 345.1),
               ("albert-tiny cmrc2018", 3_983_490, 16.8, 498.3),
               ("demo cluewsc2020", 2_753_922, 6.0, 385.4),
               ("demo csl", 2_753_922, 6.0, 410.2),
               ("demo cluener2020", 2_756_373, 6.1, 282.2),
               ("demo cmrc2018", 2_753_922, 6.0, 404.8)]


@pytest.mark.parametrize("label, params, host_growth, peak", H200_HONEST)
def test_the_h200_honest_teams_carry_no_memory_flag(nvml, label, params, host_growth, peak):
    team = on_device(params)
    timing = team_row(nvml, team, host_growth, peak, rounded(4 * params))
    assert timing["device_check_note"] == "" and timing["unexplained_device_bytes"] < BLOCK
    assert timing["device_allowance_bytes"] == rounded(4 * BERT_BASE["counted"]) - 4 * BERT_BASE["counted"] \
        + DEVICE_MARGIN_BYTES
    assert flags_of("csl", timing) == []


def test_before_the_host_copy_rule_the_same_h200_figures_were_flagged():
    """The goal above can fail: without the device parameters in the report the host explains nothing."""
    timing = unexplained_memory({"counted": 7_450_562, "counted_cpu_bytes": 0}, int(25.8 * MiB), int(348 * MiB))
    assert [f for f in per_task({"csl": TaskResult.from_dict({"timing": timing})}, memory_flags) if "resident memory taken at load" in f]


def test_the_activation_cache_after_the_passes_is_reported_never_compared_with_bert_base(nvml):
    """RoBERTa-tiny on CMRC2018: 2,408 MiB after the passes, BERT-base 2,044 MiB: no flag (was one)."""
    timing = team_row(nvml, on_device(7_352_906), 25.4, 502.4, rounded(4 * 7_352_906))
    timing["device_memory_bytes"] = 2_408 * MiB
    assert flags_of("cmrc2018", timing, {"device_memory_bytes": 2_044 * MiB}) == []


EXTRA = 30_000_000 * 4          # 30M fp32 weights the count leaves out: about 114 MiB


def test_weights_held_uncounted_on_the_device_are_flagged(nvml):
    team = on_device(7_450_562)
    timing = team_row(nvml, team, 25.8, 348.0, rounded(4 * 7_450_562 + EXTRA))
    flags = flags_of("csl", timing)
    assert len(flags) == 1 and "weights_unaccounted: the device memory taken at load is 115.6 MiB" in flags[0]
    assert "BERT-base's own 1.9 MiB" in flags[0] and "20 MiB margin" in flags[0]


def test_weights_held_uncounted_in_a_child_process_on_the_device_are_flagged(nvml):
    """The worker's tree is read: a child holding the extra weights on the device counts."""
    timing = team_row(nvml, on_device(7_450_562), 25.8, 348.0, rounded(4 * 7_450_562 + EXTRA),
                      child_growth=rounded(EXTRA))
    assert any("device memory taken at load" in f for f in flags_of("csl", timing))


def test_weights_held_uncounted_on_the_host_are_flagged(nvml):
    timing = team_row(nvml, on_device(7_450_562), 25.8 + EXTRA / MiB, 348.0 + EXTRA / MiB,
                      rounded(4 * 7_450_562))
    flags = flags_of("csl", timing)
    assert len(flags) == 1 and "resident memory taken at load is 112 MiB beyond the 28.4 MiB" in flags[0]


def test_just_inside_and_just_past_the_allowance(nvml):
    team = on_device(7_450_562)
    inside = team_row(nvml, team, 25.8, 348.0, 4 * 7_450_562 + 40 * MiB, reference_growth=4 * BERT_BASE["counted"]
                      + 20 * MiB)
    assert inside["device_allowance_bytes"] == 40 * MiB and flags_of("csl", inside) == []
    past = team_row(nvml, team, 25.8, 348.0, 4 * 7_450_562 + 40 * MiB + 1,
                    reference_growth=4 * BERT_BASE["counted"] + 20 * MiB)
    assert len(flags_of("csl", past)) == 1


@pytest.mark.parametrize("used, fail, why", [
    ({OTHER_PID: 7 * MiB}, None, "lists none of the worker's processes"),
    ({TEAM_PID: None}, None, "without their memory use"),
    ({TEAM_PID: CONTEXT}, RuntimeError("NVML_ERROR_GPU_IS_LOST"), "NVML_ERROR_GPU_IS_LOST"),
])
def test_a_device_reading_that_cannot_be_taken_is_said_on_the_row(nvml, used, fail, why):
    nvml.used, nvml.fail = used, fail
    reading = gpu.device_memory_reading([TEAM_PID])
    assert reading[0] is None and why in reading[1]
    assert nvml.shutdowns == 1
    nvml.used, nvml.fail = {REF_PID: CONTEXT}, None
    baseline = {"team_device": reading, "reference_device": gpu.device_memory_reading([REF_PID])}
    nvml.used = {TEAM_PID: CONTEXT + 31 * MiB, REF_PID: CONTEXT + rounded(4 * BERT_BASE["counted"])}
    loaded = {"team_params": on_device(7_450_562), "team_device": gpu.device_memory_reading([TEAM_PID]),
              "reference_device": gpu.device_memory_reading([REF_PID])}
    team, _ = device_load_records(baseline, loaded, BERT_BASE)
    flags = flags_of("csl", team)
    assert flags == [f"csl: device memory at load not checked: the device memory after prepare could not be "
                     f"read: {reading[1]}"]


def test_no_nvml_and_no_pid_are_said(monkeypatch):
    monkeypatch.setattr(gpu, "_nvml", lambda: None)
    monkeypatch.setattr(gpu, "nvml_unavailable_reason", lambda: "NVML does not answer (no driver)")
    assert gpu.device_memory_reading([TEAM_PID]) == (None, "NVML does not answer (no driver)")
    assert gpu.device_memory_reading([]) == (None, "no process id for the worker")


def test_without_the_references_figure_the_row_says_the_device_check_was_not_calibrated(nvml):
    nvml.used = {TEAM_PID: CONTEXT}
    baseline = {"team_device": gpu.device_memory_reading([TEAM_PID]),
                "reference_device": gpu.device_memory_reading([REF_PID])}         # the reference not listed
    nvml.used = {TEAM_PID: CONTEXT + 300 * MiB}
    loaded = {"team_params": on_device(7_450_562), "team_device": gpu.device_memory_reading([TEAM_PID]),
              "reference_device": gpu.device_memory_reading([REF_PID])}
    team, reference = device_load_records(baseline, loaded, BERT_BASE)
    assert team["device_allowance_bytes"] is None and team["device_load_growth_bytes"] == 300 * MiB
    flags = flags_of("csl", team)
    assert len(flags) == 1 and "not checked: not calibrated" in flags[0] and "lists none" in flags[0]
    assert reference["device_check_note"].startswith("the device memory after prepare could not be read")


def test_a_cpu_record_has_no_device_check_and_no_device_flag():
    assert per_task({"csl": TaskResult.from_dict({"timing": {"device_memory_bytes": None}})}, device_reasons) == []
    assert not device_checked("cpu", SimpleNamespace(environment={"device": "cuda"}))
    assert not device_checked("auto", SimpleNamespace(environment={"device": "cpu"}))
    assert device_checked("auto", SimpleNamespace(environment={"device": "cuda:0"}))


def test_the_report_is_the_teams_word_capped_at_four_bytes_a_parameter_in_all():
    # claims 8 bytes a parameter on the device: 4 are believed
    assert explained_device_bytes({"counted": 1_000, "counted_device_bytes": 8_000}) == 4_000
    # 4 bytes a parameter claimed on the host AND on the device: a parameter is in one place
    both = {"counted": 1_000, "counted_cpu_bytes": 4_000, "counted_device_bytes": 4_000, "counted_device_params": 1_000}
    assert explained_device_bytes(both) == 0 and explained_bytes(both) == 4_000
    # fp16 on the device: 2 bytes there, and the host copy it was built in at 4
    half = {"counted": 1_000, "counted_cpu_bytes": 0, "counted_device_bytes": 2_000, "counted_device_params": 1_000}
    assert explained_device_bytes(half) == 2_000 and explained_bytes(half) == 4_000
    # int8 on the host beside a few parameters on the device: the host copy is only theirs
    mixed = {"counted": 1_000, "counted_cpu_bytes": 900, "counted_device_bytes": 400, "counted_device_params": 100}
    assert explained_bytes(mixed) == 1_300
    assert explained_bytes({"counted": 1_000, "counted_cpu_bytes": 1_000}) == 1_000     # as before on the CPU
    # ONNX initializers (counted at 4 bytes on the host) may sit on the device too, in a CUDA session
    onnx = {"counted": 1_000, "onnx_params": 1_000, "counted_cpu_bytes": 4_000}
    assert explained_device_bytes(onnx) == 4_000 and explained_bytes(onnx) == 4_000
    assert explained_device_bytes({**onnx, "onnx_params": 50_000}) == 4_000         # never past the count


@pytest.mark.parametrize("extra, message", [
    ({"counted_device_bytes": -1}, "not a count"),
    ({"counted_device_bytes": True}, "not a count"),
    ({"counted_device_bytes": 2**60}, "not a count"),     # past any real model (MAX_COUNT)
    ({"counted_device_params": 41}, "more parameters on the device"),
])
def test_device_figures_in_the_report_are_checked(extra, message):
    with pytest.raises(WorkerFailed, match=message):
        replies.param_report({"report": {"counted": 40, **extra}}, "team")
    good = replies.param_report({"report": {"counted": 40, "counted_device_bytes": 80, "counted_device_params": 40}},
                                "team")
    assert good["counted_device_bytes"] == 80 and good["counted_device_params"] == 40


def test_the_count_puts_a_tensors_bytes_where_it_lives():
    import torch

    count = TorchCount([], [])
    count._add_bytes(torch.zeros(3, 4, dtype=torch.float16), 12)
    count._add_bytes(torch.empty(5, 4, device="meta"), 20)                        # holds no memory
    count._add_bytes(SimpleNamespace(device=SimpleNamespace(type="cuda"), element_size=lambda: 2), 100)
    assert (count.cpu_bytes, count.device_bytes, count.device_params) == (24, 200, 100)


def test_the_host_reads_the_device_after_load_when_it_read_it_after_prepare(nvml):
    """measurement.read_after_load reads NVML over each worker's tree (this test's process standing in for
    both), before it asks the team for its count; on the CPU (no device baseline) it reads no device."""
    import os

    from harness.measurement import read_after_load

    asked = []

    def call(op):           # the count's own scan allocates: a device read after it would see 99 MiB
        asked.append(op)
        nvml.used[os.getpid()] = CONTEXT + 99 * MiB
        return 0, {"report": {"counted": 5}}

    link = SimpleNamespace(host_pid=os.getpid(), name="team", call=call)
    nvml.used = {os.getpid(): CONTEXT + 40 * MiB}
    found = read_after_load(link, link, {"team": 0, "reference": 0, "team_device": (CONTEXT, ""),
                                         "reference_device": (CONTEXT, "")})
    assert found["team_device"] == found["reference_device"] == (CONTEXT + 40 * MiB, "")
    assert asked == ["params"]
    assert "team_device" not in read_after_load(link, link, {"team": 0, "reference": 0})
