"""What a backend does: build a team's environment from its setup script, and run the probe in it.

Backends differ in isolation (Docker containers vs. local subprocesses), not in what they measure: both run
the same probe with the same run manifest, so their numbers mean the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.probe.manifest import MEASUREMENTS, RunManifest
from harness.submission import Submission

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Built:
    """A team's built environment, or why it could not be built."""

    ok: bool
    handle: str               # venv python (local) or image tag (docker)
    team_dir: str             # the team folder as the probe sees it
    log_path: Path
    error: str = ""
    cached: bool = False


@dataclass(frozen=True)
class ProbeRun:
    status: str               # ok, probe_failed or timeout
    error: str
    measurements: dict[str, Any] | None
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Backend(Protocol):
    name: str

    def build(self, submission: Submission, work_dir: Path) -> Built: ...

    def build_reference(self, reference_dir: Path, work_dir: Path) -> Built: ...

    def run(self, built: Built, manifest: RunManifest, out_dir: Path, timeout_s: float, log_path: Path
            ) -> ProbeRun: ...


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, for a row's error field (the whole file stays beside the results)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def read_measurements(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out_dir / MEASUREMENTS).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def probe_outcome(exit_code: int | None, timed_out: bool, timeout_s: float, out_dir: Path, log_path: Path
                  ) -> ProbeRun:
    """Turn how the probe process ended into a ProbeRun (shared by every backend)."""
    measurements = read_measurements(out_dir)
    if timed_out:
        return ProbeRun("timeout", f"timed out after {timeout_s:g} s and was killed", measurements, log_path)
    if measurements is None:
        last = log_tail(log_path, 1) or "no output"
        return ProbeRun("probe_failed", f"probe exited with code {exit_code} without measurements: {last}",
                        None, log_path)
    if exit_code != 0 or not measurements.get("ok"):
        return ProbeRun("probe_failed", measurements.get("error") or f"probe exited with code {exit_code}",
                        measurements, log_path)
    return ProbeRun("ok", "", measurements, log_path)
