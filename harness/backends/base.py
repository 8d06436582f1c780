"""What a backend does: build a team's environment from its setup script, and start a worker in it.

Backends differ in isolation (Docker containers vs. local subprocesses), not in what they measure: both start
the same worker (harness.probe.worker) connected to a socket the host created, and the host's timekeeper
does every measurement, so their numbers mean the same thing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Protocol

from harness.submission import Submission

LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 64 * 1024
WORKER_MODULE = "harness.probe.worker"


@dataclass(frozen=True)
class Built:
    """A team's built environment, or why it could not be built."""

    ok: bool
    handle: str               # venv python (local) or image tag (docker)
    team_dir: str             # the team folder as the worker sees it
    log_path: Path
    error: str = ""
    cached: bool = False


class WorkerHandle(Protocol):
    """A running worker process or container, as the host controls it (harness.worker_link keeps it)."""

    # The pid the worker connects from, as the host's SO_PEERCRED shows it: the link refuses any other peer.
    # None where the backend does not check it (a container: its pid is the engine's to say).
    pid: int | None

    def alive(self) -> bool: ...

    def kill(self) -> None: ...

    def freeze(self) -> None:
        """Stop every process of the worker while the other side is timed (harness.freezing); raise
        FreezeUnavailable, with why, where that cannot be done."""

    def thaw(self) -> None:
        """Let them run again; a worker already gone fails through its channel instead."""

    def host_pid(self) -> int | None:
        """The worker's pid on the host, for NVML's per-process memory; None when unknown."""

    def host_pids(self) -> set[int]:
        """Every process of this worker as the host (and NVML) sees it: the worker, what it started, and what
        was left behind and adopted; empty when unknown. The drain check (harness.device_activity) tells
        the timed side's device work from everyone else's by these."""

    def close(self) -> int | None:
        """Kill what is left, keep the (bounded) log, release everything; the exit code when it had one."""


class Backend(Protocol):
    name: str

    def build(self, submission: Submission, work_dir: Path) -> Built: ...

    def discard(self, submission: Submission) -> None: ...

    def build_reference(self, reference_dir: Path, work_dir: Path) -> Built: ...

    def worker_pool(self, built: Built, log_path: Path) -> ContextManager[None]:
        """While open, start_worker(built, ...) may start workers faster (the local backend forks them from a
        server that imported the libraries once); each worker is still fresh. Logs to `log_path`."""

    def start_worker(self, built: Built, channel_dir: Path, log_path: Path) -> WorkerHandle: ...

    def weight_file_bytes(self, built: Built, code: dict | None = None) -> int:
        """Bytes that count as weights wherever the team could write in its built environment, read by the
        host without running anything of the team's: every data file (harness.data_files.DataTally), code
        only where the worker mapped it executable (`code`: data_files.executable_mappings; None: no code)."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, for a row's error field; never follows a link or opens a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        os.lseek(fd, max(0, info.st_size - LOG_TAIL_BYTES), os.SEEK_SET)
        text = os.read(fd, LOG_TAIL_BYTES).decode("utf-8", errors="replace")
    finally:
        os.close(fd)
    return "\n".join(text.rstrip().splitlines()[-lines:])
