"""A stand-in for the `pynvml` module, built from the H200 readings (issue 27's drain probe), on a fake clock.

Utilization is sampled over periods of 200 ms ending at whole multiples of the period (host wall clock).
`nvmlDeviceGetProcessUtilization(handle, last_seen_us)` returns one sample per busy pid for every period
that ended after `last_seen_us` and by now, stamped with the period's end in microseconds, and raises
NVMLError_NotFound when there is none (as the H200 did between samples); `nvmlDeviceGetUtilizationRates`
reads the last period that ended: 99 % when anyone was busy in it, else 0. With `proportional`, a busy
pid's sample says the share of the period it was busy (sm %, rounded), as NVML's per-process figure means.
"""

from __future__ import annotations

from types import SimpleNamespace

PERIOD_US = 200_000
T0 = 1796400942.0               # seconds: a period boundary, the H200 probe's time of day


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(f"NVML error {value}")
        self.value = value


class NVMLError_NotFound(NVMLError):
    def __init__(self):
        super().__init__(6)


class Clock:
    """Host wall clock in seconds that moves only when something sleeps."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class FakeNvml:
    """`busy`: pid -> list of (start, end) host seconds during which it keeps the device busy."""

    NVMLError = NVMLError

    def __init__(self, clock: Clock, busy: dict[int, list[tuple[float, float]]], compute_pids=(1207, 2000),
                 process_error: int | None = None, device_error: int | None = None, init_error: int | None = None,
                 proportional: bool = False):
        self.clock, self.busy, self.compute, self.proportional = clock, busy, list(compute_pids), proportional
        self.process_error, self.device_error, self.init_error = process_error, device_error, init_error
        self.shut = 0
        self.calls = 0

    def nvmlInit(self):
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self):
        self.shut += 1

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=pid, usedGpuMemory=1_721_761_792) for pid in self.compute]

    def _busy_in(self, pid: int, end_us: int) -> bool:
        start_s, end_s = (end_us - PERIOD_US) / 1e6, end_us / 1e6
        return any(a < end_s and b > start_s for a, b in self.busy.get(pid, []))

    def _sm(self, pid: int, end_us: int) -> int:
        if not self.proportional:
            return 99
        start_s, end_s = (end_us - PERIOD_US) / 1e6, end_us / 1e6
        busy_s = sum(max(0.0, min(b, end_s) - max(a, start_s)) for a, b in self.busy.get(pid, []))
        return round(100 * busy_s / (PERIOD_US / 1e6))

    def _ends(self, after_us: int) -> list[int]:
        now_us = round(self.clock() * 1e6)
        last = now_us // PERIOD_US * PERIOD_US
        first = (after_us // PERIOD_US + 1) * PERIOD_US
        return list(range(max(first, last - 50 * PERIOD_US), last + 1, PERIOD_US))   # NVML keeps a bounded buffer

    def nvmlDeviceGetProcessUtilization(self, handle, last_seen_us):
        self.calls += 1
        if self.process_error is not None:
            raise NVMLError(self.process_error)
        samples = [SimpleNamespace(pid=pid, timeStamp=end, smUtil=self._sm(pid, end), memUtil=40, encUtil=0, decUtil=0)
                   for end in self._ends(last_seen_us) for pid in self.busy if self._busy_in(pid, end)]
        if not samples:
            raise NVMLError_NotFound()
        return samples

    def nvmlDeviceGetUtilizationRates(self, handle):
        if self.device_error is not None:
            raise NVMLError(self.device_error)
        last = round(self.clock() * 1e6) // PERIOD_US * PERIOD_US
        return SimpleNamespace(gpu=99 if any(self._busy_in(pid, last) for pid in self.busy) else 0, memory=0)
