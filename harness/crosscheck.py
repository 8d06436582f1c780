"""Cross-checks of a team's parameter count from outside its worker process, where team code patches nothing.

The count itself has to come from inside the worker (only the worker can load the model), so the host
compares it with figures the team cannot bend from inside:
- the bytes of weight-like files in the built environment (here);
- the resident memory the worker's process tree took while loading the model: read from /proc by the host
  after the worker's `prepare` (its libraries imported, its device started, no team code run yet) and
  again after `load` (resident_bytes);
- the device memory the worker holds, read per process from NVML on a GPU (harness.gpu.process_memory_bytes,
  compared with BERT-base's in pipeline.device_memory_flags).
Figures implying far more parameters than were counted flag the row ``weights_unaccounted``.

Bytes become a parameter floor at 4 bytes a parameter (fp32): the most lenient reading for the team, since
fp16 or int8 weights would imply more. "Far more" is more than the spec's limit AND more than twice the
count. Memory growth first loses RESIDENT_SLACK_BYTES, what an honest load costs beside its weights (a
tokenizer's vocabulary, the allocator's arenas, the team's own imports); bench/memory_growth.py measures
that on the bundled teams and the reference, and the end-to-end tests keep them unflagged.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Iterable

BYTES_PER_PARAM = 4
# Calibrated with bench/memory_growth.py (CPU, after the worker's prepare): the bundled teams take at most
# 31 MiB beyond 4 bytes a counted parameter (the ONNX team: ONNX Runtime's arenas), the reference 11 MiB; the
# slack is twice the worst, so a hidden model shows from about 16M fp32 parameters beyond the limit's room.
RESIDENT_SLACK_BYTES = 64 * 2**20
WEIGHT_FILE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".onnx", ".safetensors", ".ckpt", ".h5", ".npz",
                                  ".npy", ".pkl", ".pickle", ".msgpack", ".model", ".pb", ".tflite", ".gguf"})


def weight_files(root: Path) -> list[tuple[Path, int]]:
    """(path, bytes) of regular files with a weight-like suffix under `root`, in a stable order; links and
    special files are never followed or opened (lstat only), so a team cannot point the reader anywhere."""
    found = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            if Path(name).suffix.lower() not in WEIGHT_FILE_SUFFIXES:
                continue
            path = Path(folder) / name
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path, info.st_size))
    return found


def weight_file_bytes(root: Path) -> int:
    """Bytes of the weight-like files under `root` (weight_files)."""
    return sum(size for _, size in weight_files(root))


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (the engine's archive stream), read once, in order."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks, self._left = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n], self._left = self._left[:n], self._left[n:]
        return n


def weight_bytes_in_tar(chunks: Iterable[bytes]) -> int:
    """Bytes of regular files with a weight-like suffix in a tar stream, from its headers alone: nothing is
    extracted, and links or special files count for nothing (a link says nothing about what it points to)."""
    total = 0
    with tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks), 1 << 20), mode="r|") as archive:
        for member in archive:
            if member.isreg() and Path(member.name).suffix.lower() in WEIGHT_FILE_SUFFIXES:
                total += member.size
    return total


def implied_params(nbytes: int) -> int:
    return max(0, int(nbytes)) // BYTES_PER_PARAM


def unaccounted_weights(counted: int, limit: int, memory_growth: int | None = None,
                        file_bytes: int | None = None) -> str | None:
    """The reason for a `weights_unaccounted` flag, or None when the count stands."""
    figures = (("the resident memory the worker took at load", memory_growth, RESIDENT_SLACK_BYTES),
               ("the weight files in the built environment", file_bytes, 0))
    for label, nbytes, slack in figures:
        if nbytes is None:
            continue
        implied = implied_params(nbytes - slack)
        if implied > limit and implied > 2 * counted:
            less = f", less {slack / 2**20:g} MiB of slack," if slack else ""
            return (f"weights_unaccounted: {label} ({nbytes:,} bytes{less}) imply at least {implied:,} "
                    f"parameters at {BYTES_PER_PARAM} bytes each, but {counted:,} were counted")
    return None


def resident_bytes(pid: int | None) -> int | None:
    """Resident memory of process `pid` and all its descendants, read by the host (psutil, from /proc); None
    when it cannot be read. A child process holding the weights is part of the worker's tree, so counts."""
    if not pid:
        return None
    try:
        import psutil

        root = psutil.Process(pid)
        total = 0
        for process in [root, *root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total
    except Exception:
        return None

