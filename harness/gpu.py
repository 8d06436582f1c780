"""The GPU box, read through NVML (nvidia-ml-py): what it is, and what state it is in.

Host-side only, and optional: without NVML (no driver, no GPU, package missing) every function says so
instead of raising, and the harness goes on.
"""

from __future__ import annotations

import os
from typing import Any, Mapping


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


# NVML clock-throttle reason bits that mean the measurement ran slower than the box can (nvml.h).
THROTTLE_BITS = {0x4: "software power cap", 0x8: "hardware slowdown", 0x20: "software thermal slowdown",
                 0x40: "hardware thermal slowdown", 0x80: "power brake"}


def process_memory_bytes(pid: int | None) -> int | None:
    """Device memory NVML sees held by process `pid` (a worker, by its host pid), over every GPU; None when
    NVML cannot say. Read from the host, so the team's code cannot bend it."""
    nvml = _nvml() if pid else None
    if nvml is None:
        return None
    try:
        total, seen = 0, False
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if process.pid == pid and process.usedGpuMemory is not None:
                    total, seen = total + int(process.usedGpuMemory), True
        return total if seen else None
    except Exception:
        return None
    finally:
        nvml.nvmlShutdown()


def device_memory_reading(pids: list[int] | tuple[int, ...] | None) -> tuple[int | None, str]:
    """(bytes, why not): the device memory NVML sees held by the processes `pids` together (a worker's whole
    tree, by host pid), summed over every GPU; bytes None, with the reason, when NVML cannot say: no NVML,
    an NVML error, no pid of the tree listed on any GPU, or a listed pid whose usage NVML does not report
    (usedGpuMemory None, as under MIG or some containers). Read from the host: team code cannot bend it."""
    if not pids:
        return None, "no process id for the worker"
    nvml = _nvml()
    if nvml is None:
        return None, nvml_unavailable_reason() or "NVML does not answer"
    wanted = set(pids)
    try:
        total, listed, unreported = 0, set(), set()
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if process.pid not in wanted:
                    continue
                listed.add(process.pid)
                if process.usedGpuMemory is None:
                    unreported.add(process.pid)
                else:
                    total += int(process.usedGpuMemory)
    except Exception as exc:
        return None, f"NVML failed to list the GPU's processes ({type(exc).__name__}: {exc})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    if unreported:
        return None, f"NVML lists process(es) {sorted(unreported)} without their memory use"
    if not listed:
        return None, f"NVML lists none of the worker's processes {sorted(wanted)} on any GPU"
    return total, ""


def visible_gpus(gpus: list[dict[str, Any]], environ: Mapping[str, str] = os.environ) -> list[dict[str, Any]]:
    """The GPUs of an NVML snapshot this process's CUDA sees: CUDA_VISIBLE_DEVICES's entries (NVML indices, or
    `GPU-` UUIDs or their prefixes; CUDA stops at the first it cannot read), every GPU where it is unset. On a
    box of several slots each slot's process sees its own GPU (harness.slots.pin_process), so another slot's
    workers on the other GPUs are not this run's business. A MIG entry cannot be matched to a snapshot: all
    GPUs then, the careful answer."""
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return gpus
    chosen = []
    for entry in (e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",")):
        if entry.startswith("MIG-"):
            return gpus
        if entry.isdigit():
            found = [g for g in gpus if g["index"] == int(entry)]
        elif entry.startswith("GPU-"):
            found = [g for g in gpus if str(g["uuid"]).startswith(entry)]
        else:
            found = []
        if len(found) != 1:
            break
        chosen += [g for g in found if g not in chosen]
    return chosen


def gpu_busy_reason(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the GPU this process's CUDA sees is not ours alone (processes already on it), or None; None without
    NVML too."""
    busy = [g for g in visible_gpus(gpu_snapshot(), environ) if g["processes"]]
    if not busy:
        return None
    return "; ".join(f"{g['processes']} other process(es) hold GPU {g['index']} ({g['name']})" for g in busy)


def throttle_names(bits: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if bits & bit]


class GpuMonitor:
    """Samples the GPUs this process's CUDA sees (visible_gpus) in a background thread while a measurement runs: state before and after, the
    hottest temperature, and every throttle reason seen. A no-op (summary says so) without NVML."""

    def __init__(self, interval_s: float = 0.5):
        import threading

        self.interval_s = interval_s
        self.before: list[dict[str, Any]] = []
        self.after: list[dict[str, Any]] = []
        self.samples = 0
        self.max_temperature_c: float | None = None
        self.throttle_bits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _record(self, gpus: list[dict[str, Any]]) -> None:
        for g in gpus:
            self.samples += 1
            self.throttle_bits |= g["throttle_reasons"]
            self.max_temperature_c = max(self.max_temperature_c or g["temperature_c"], g["temperature_c"])

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._record(visible_gpus(gpu_snapshot()))

    def __enter__(self) -> "GpuMonitor":
        self.before = visible_gpus(gpu_snapshot())
        if self.before:
            self._record(self.before)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.before:
            self._stop.set()
            self._thread.join()
            self.after = visible_gpus(gpu_snapshot())
            self._record(self.after)

    def summary(self) -> dict[str, Any]:
        if not self.before:
            return {"available": False, "why": nvml_unavailable_reason() or "no GPU"}
        return {"available": True, "before": self.before, "after": self.after, "samples": self.samples,
                "max_temperature_c": self.max_temperature_c, "throttle_reasons": throttle_names(self.throttle_bits)}

    def flags(self) -> list[str]:
        reasons = throttle_names(self.throttle_bits)
        return [f"GPU throttled during the measurement ({', '.join(reasons)})"] if reasons else []
