"""The GPU box, read through NVML (nvidia-ml-py): what it is, and what state it is in.

Host-side only, and optional: without NVML (no driver, no GPU, package missing) every function says so
instead of raising, and the harness goes on.
"""

from __future__ import annotations

from typing import Any


def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # ImportError, or NVMLError when there is no driver
        return None


def nvml_unavailable_reason() -> str | None:
    """None when NVML answers; otherwise why not, and what to do."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed: pip install 'lightlm-harness[gpu]'"
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return f"NVML does not answer ({exc}): no NVIDIA driver or no GPU on this machine"
    return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_snapshot() -> list[dict[str, Any]]:
    """Per GPU: identity, clocks, temperature, power, throttle reasons and processes; [] without NVML."""
    nvml = _nvml()
    if nvml is None:
        return []
    gpus = []
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append({
                "index": index, "name": _text(nvml.nvmlDeviceGetName(handle)),
                "uuid": _text(nvml.nvmlDeviceGetUUID(handle)), "driver": driver,
                "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
                "sm_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                "mem_clock_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM),
                "temperature_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                "throttle_reasons": nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle),
                "processes": len(nvml.nvmlDeviceGetComputeRunningProcesses(handle)),
            })
    finally:
        nvml.nvmlShutdown()
    return gpus
