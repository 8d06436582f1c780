"""What the box looked like while it was timing: CPU model and governor once, GPU clocks per round.

Recorded on the row so that two results can be compared (or not) on the facts of the machine; and what the
row says of the two workers' environments (environment_flags, environment_notes): a device or a thread
count that differs between the team and the reference, a run on the CPU, a GPU other than the spec expects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

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


def environment_flags(team_env: Mapping[str, Any], ref_env: Mapping[str, Any], expected_gpu: str | None
                      ) -> list[str]:
    """The row's flags from the environments the team's and the reference's workers reported: devices or
    torch thread counts that differ (the speedup is not like for like), a GPU other than the spec's
    `expected_gpu`."""
    flags = []
    if team_env.get("device") and ref_env.get("device") and team_env["device"] != ref_env["device"]:
        flags.append(f"team ran on {team_env['device']} but the reference on {ref_env['device']}: speedup not comparable")
    if team_env.get("torch_threads") != ref_env.get("torch_threads"):
        flags.append(f"thread counts differ: team {team_env.get('torch_threads')}, reference {ref_env.get('torch_threads')}")
    if expected_gpu and team_env.get("device_name") not in (None, expected_gpu):
        flags.append(f"GPU is {team_env.get('device_name')}, the spec expects {expected_gpu}")
    return flags


def environment_notes(team_env: Mapping[str, Any]) -> list[str]:
    """The row's note for a run timed on the CPU: a state of the run, not a finding about the team."""
    if team_env.get("device") != "cpu":
        return []
    return ["timed on CPU: indicative only, the competition times on the GPU box"]
