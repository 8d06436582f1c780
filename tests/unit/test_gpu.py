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
