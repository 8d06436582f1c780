"""What the box looked like while it was timing: CPU model and governor once, GPU clocks per round.

Recorded on the row so that two results can be compared (or not) on the facts of the machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.gpu import gpu_snapshot, throttle_names
from harness.cpusets import own_cpu_set

GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_description() -> dict[str, Any]:
    """CPU model, frequency governor (where readable) and CPU count of the host."""
    model = next((line.split(":", 1)[1].strip() for line in _read(Path("/proc/cpuinfo")).splitlines()
                  if line.startswith("model name")), "")
    return {"cpu_model": model, "governor": _read(GOVERNOR).strip() or None, "cpu_count": os.cpu_count(),
            "cpu_set": own_cpu_set()}


def round_snapshot() -> dict[str, Any]:
    """GPU clocks, temperature and throttle reasons now (taken between passes, outside every clock)."""
    return {"gpus": [{"sm_clock_mhz": g["sm_clock_mhz"], "mem_clock_mhz": g["mem_clock_mhz"],
                      "temperature_c": g["temperature_c"], "throttle": throttle_names(g["throttle_reasons"])}
                     for g in gpu_snapshot()]}
