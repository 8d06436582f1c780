"""GPU health logic on fake NVML readings (no GPU needed): throttle flags, busy GPUs, no NVML."""

import harness.gpu as gpu


def reading(throttle=0, processes=0, temperature=60):
    return {"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1", "driver": "550", "cuda_driver": "12.4",
            "sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temperature_c": temperature, "power_w": 300.0,
            "throttle_reasons": throttle, "processes": processes}


def test_throttle_bits_by_name():
    # 0x20 software thermal + 0x4 power cap; 0x1 (GPU idle) is not a slowdown we flag
    assert gpu.throttle_names(0x20 | 0x4 | 0x1) == ["software power cap", "software thermal slowdown"]
    assert gpu.throttle_names(0x1) == []


def test_monitor_flags_throttling_seen_during_the_run(monkeypatch):
    readings = iter([[reading()], [reading(throttle=0x40, temperature=91)]])
    monkeypatch.setattr(gpu, "gpu_snapshot", lambda: next(readings))
    with gpu.GpuMonitor(interval_s=3600) as monitor:   # no background sample within the block
        pass
    assert monitor.flags() == ["GPU throttled during the measurement (hardware thermal slowdown)"]
    summary = monitor.summary()
    assert summary["available"] and summary["max_temperature_c"] == 91 and summary["samples"] == 2


def test_monitor_without_nvml_is_a_no_op(monkeypatch):
    monkeypatch.setattr(gpu, "gpu_snapshot", lambda: [])
    monkeypatch.setattr(gpu, "nvml_unavailable_reason", lambda: "NVML does not answer")
    with gpu.GpuMonitor() as monitor:
        pass
    assert monitor.flags() == [] and monitor.summary() == {"available": False, "why": "NVML does not answer"}


def test_busy_gpu_is_named(monkeypatch):
    monkeypatch.setattr(gpu, "gpu_snapshot", lambda: [reading(processes=2)])
    assert gpu.gpu_busy_reason() == "2 other process(es) hold GPU 0 (NVIDIA H100)"
    monkeypatch.setattr(gpu, "gpu_snapshot", lambda: [reading()])
    assert gpu.gpu_busy_reason() is None


def test_the_pipeline_refuses_a_busy_gpu_unless_allowed(monkeypatch, tmp_path):
    import dataclasses

    import pytest

    import harness.pipeline as pipeline
    from harness.backends.local import LocalBackend
    from harness.spec import load_spec

    monkeypatch.setattr(pipeline, "gpu_busy_reason", lambda: "1 other process(es) hold GPU 0 (NVIDIA H100)")
    config = pipeline.RunConfig(spec=load_spec(), backend=LocalBackend(tmp_path))
    with pytest.raises(pipeline.HarnessError, match="hold GPU 0.*--allow-busy-gpu"):
        pipeline.refuse_busy_gpu(config)
    pipeline.refuse_busy_gpu(dataclasses.replace(config, allow_busy_gpu=True))   # allowed: no exception


def test_only_the_gpus_this_process_sees_count_as_busy(monkeypatch):
    """A box of several slots: slot 2's process sees GPU 1 only; slot 1's workers busy on GPU 0 are not its
    business (they refused each other before), a stranger on GPU 1 still is."""
    snapshot = [{**reading(processes=3), "index": 0, "uuid": "GPU-aaaa-0"},
                {**reading(processes=0), "index": 1, "uuid": "GPU-bbbb-1"}]
    monkeypatch.setattr(gpu, "gpu_snapshot", lambda: snapshot)
    assert gpu.gpu_busy_reason({"CUDA_VISIBLE_DEVICES": "1"}) is None
    assert gpu.gpu_busy_reason({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}) is None
    assert gpu.gpu_busy_reason({}) == "3 other process(es) hold GPU 0 (NVIDIA H100)"
    assert gpu.gpu_busy_reason({"CUDA_VISIBLE_DEVICES": "1,0"}) == "3 other process(es) hold GPU 0 (NVIDIA H100)"
    snapshot[1]["processes"] = 1
    assert gpu.gpu_busy_reason({"CUDA_VISIBLE_DEVICES": "1"}) == "1 other process(es) hold GPU 1 (NVIDIA H100)"


def test_visible_gpus_reads_cuda_visible_devices_as_cuda_does():
    gpus = [{"index": i, "uuid": f"GPU-{i}{i}{i}"} for i in range(3)]
    assert gpu.visible_gpus(gpus, {}) == gpus
    assert gpu.visible_gpus(gpus, {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert [g["index"] for g in gpu.visible_gpus(gpus, {"CUDA_VISIBLE_DEVICES": "2, 0"})] == [2, 0]
    assert [g["index"] for g in gpu.visible_gpus(gpus, {"CUDA_VISIBLE_DEVICES": "1,7,0"})] == [1]   # stops at 7
    assert gpu.visible_gpus(gpus, {"CUDA_VISIBLE_DEVICES": "MIG-x"}) == gpus
    assert gpu.visible_gpus(gpus, {"CUDA_VISIBLE_DEVICES": "GPU-"}) == []        # ambiguous prefix: CUDA stops


def test_the_monitor_watches_only_visible_gpus(monkeypatch):
    hot = {**reading(throttle=0x40, temperature=95), "index": 1, "uuid": "GPU-1b"}
    monkeypatch.setattr(gpu, "gpu_snapshot", lambda: [reading(), hot])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with gpu.GpuMonitor(interval_s=3600) as monitor:
        pass
    assert monitor.flags() == [] and monitor.summary()["max_temperature_c"] == 60
