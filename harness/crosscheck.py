"""Cross-checks of a team's parameter count from outside its worker process, where team code patches nothing.

The count itself has to come from inside the worker (only the worker can load the model), and team code
shares that process, so the host checks it against figures the team cannot bend from inside:
- memory, in bytes: the worker reports the host-memory bytes of what it counted (dtype-aware; never taken
  as more than BYTES_PER_PARAM a counted parameter, explained_bytes). The team gets a fresh worker per task;
  the host reads from /proc, for that worker's whole process tree, its resident memory after `prepare`
  (libraries imported, device started, no team code run yet in that process): the task's baseline, where
  the peak (VmHWM) is reset too. Against it: the resident memory after `load`, and the peak after the
  timed passes. Bytes beyond the counted ones past the resident slack (resident_slack: RESIDENT_SLACK_BYTES,
  more for ONNX Runtime) or PEAK_SLACK_BYTES (what honest loads take beside their weights, measured by
  bench/memory_growth.py) flag the row ``weights_unaccounted``, whatever the count says; the unexplained
  bytes are in result.json.
- the files the build added that count as weights: every data file, whatever its size or first bytes, code
  being only what the worker maps executable (harness.data_files; counts_as_weights, the older rule by
  suffix and size, stays for the probe's model_file_bytes report); flagged when they imply, at 4 bytes a
  parameter (the lenient reading), more than the limit and more than twice the count;
- the device memory the worker holds, read per process from NVML on a GPU (harness.gpu.process_memory_bytes,
  compared with BERT-base's in pipeline.device_memory_flags).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Iterable

BYTES_PER_PARAM = 4
# Calibrated with bench/memory_growth.py (CPU, sample data, a fresh worker per task, both forked from the local
# backend's fork server and started plainly, 2026-11-30; prepare has run an ONNX Runtime session and a tiny
# BERT before the baseline, harness.probe.onnx_warmup) and the example teams in the offline runner image
# (tests/integration/test_example_teams_docker.py: torch 1.13, onnxruntime 1.18): beyond the bytes they
# counted, honest loads took at load at most 11.4 MiB resident with torch (BERT-base 11.4, albert_tiny 11.2,
# roberta_tiny 6.0, the demo 4.6) and with ONNX Runtime 20.8-29.9 MiB (onnxruntime 1.32) and 27.6-32.4 MiB
# (1.18, in the image) for the ONNX team's 28 MiB of initializers: ORT's prepacked copies of its MatMul
# weights, about 7 MiB, and what parsing the model leaves behind in the allocator. So the resident slack is
# RESIDENT_SLACK_BYTES, plus ONNX_RUNTIME_SHARE of the ONNX weights' fp32 bytes when the count found ONNX
# initializers (the ONNX team: 16 + 21 = 37 MiB); a team that shows no ONNX model hides at most 16 MiB. At
# their peak during the passes, honest loads took at most 564.4 MiB (the ONNX team on CMRC2018, batches of
# 8 x 512 tokens: attention activations kept in ONNX Runtime's arena; BERT-base 300 MiB). The slacks sit
# above those by 10-15%.
RESIDENT_SLACK_BYTES = 16 * 2**20
ONNX_RUNTIME_SHARE = 0.75
PEAK_SLACK_BYTES = 640 * 2**20
WEIGHT_FILE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".onnx", ".safetensors", ".ckpt", ".h5", ".npz",
                                  ".npy", ".pkl", ".pickle", ".msgpack", ".model", ".pb", ".tflite", ".gguf"})


LARGE_FILE_BYTES = 2**20        # a file this large counts as weights whatever its suffix (unless it is code)
ELF_MAGIC = b"\x7fELF"            # shared libraries and programs a pip install brings: code, not weights


def needs_head(name: str, size: int) -> bool:
    """Whether counts_as_weights must see the file's first bytes: large, and no weight suffix to go by."""
    return size >= LARGE_FILE_BYTES and Path(name).suffix.lower() not in WEIGHT_FILE_SUFFIXES


def counts_as_weights(name: str, size: int, head: bytes) -> bool:
    """A weight-like suffix, or any file of LARGE_FILE_BYTES or more that is not an ELF binary: weights
    renamed to .txt, .dat or no suffix at all count as well (`head`: the file's first bytes)."""
    if Path(name).suffix.lower() in WEIGHT_FILE_SUFFIXES:
        return True
    return size >= LARGE_FILE_BYTES and not head.startswith(ELF_MAGIC)


def _head(path: Path) -> bytes | None:
    """The first bytes of a regular file, opened without following a link or blocking on a FIFO put there
    since it was looked at; None when it is no longer a regular file or cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, len(ELF_MAGIC))
    except OSError:
        return None
    finally:
        os.close(fd)


def weight_files(root: Path) -> list[tuple[Path, int]]:
    """(path, bytes) of the regular files under `root` that count as weights (counts_as_weights), in a
    stable order; links and special files are never followed (lstat, O_NOFOLLOW), so a team cannot point
    the reader anywhere."""
    found = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            head = _head(path) if needs_head(name, info.st_size) else b""
            if head is not None and counts_as_weights(name, info.st_size, head):
                found.append((path, info.st_size))
    return found


def weight_file_bytes(root: Path) -> int:
    """Bytes of the files under `root` that count as weights (weight_files)."""
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
    """Bytes of the regular files in a tar stream that count as weights (counts_as_weights), from their
    headers and, for a large file without a weight suffix, its first four bytes: nothing is written out,
    and links or special files count for nothing (a link says nothing about what it points to)."""
    total = 0
    with tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks), 1 << 20), mode="r|") as archive:
        for member in archive:
            if not member.isreg():
                continue
            head = b""
            if needs_head(member.name, member.size):
                reader = archive.extractfile(member)
                head = reader.read(len(ELF_MAGIC)) if reader is not None else b""
            if counts_as_weights(member.name, member.size, head):
                total += member.size
    return total


def implied_params(nbytes: int) -> int:
    return max(0, int(nbytes)) // BYTES_PER_PARAM


def unaccounted_files(counted: int, limit: int, file_bytes: int | None) -> str | None:
    """The reason for a `weights_unaccounted` flag from the build's weight files, or None when the count
    stands: the files imply (at BYTES_PER_PARAM each) more parameters than the limit AND more than twice
    the count (a big tokenizer beside a small model is no reason)."""
    if file_bytes is None:
        return None
    implied = implied_params(file_bytes)
    if implied > limit and implied > 2 * counted:
        return (f"weights_unaccounted: the files the build added that count as weights ({file_bytes:,} bytes) "
                f"imply at least {implied:,} parameters at {BYTES_PER_PARAM} bytes each, but {counted:,} were "
                "counted")
    return None


def _tree(pid: int) -> list:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def resident_bytes(pid: int | None) -> int | None:
    """Resident memory of process `pid` and all its descendants, read by the host (psutil, from /proc); None
    when it cannot be read. A child process holding the weights is part of the worker's tree, so counts."""
    if not pid:
        return None
    try:
        import psutil

        total = 0
        for process in _tree(pid):
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total
    except Exception:
        return None


def child_resident(pid: int | None) -> dict[str, int] | None:
    """How many processes run under `pid` and their resident memory, summed (part of resident_bytes): a
    child's resident memory includes the pages it shares with the worker (a fork's copy-on-write pages), so
    a pool of forked children reads as several times the worker's size. The flag says how much of it is
    theirs; None when it cannot be read."""
    if not pid:
        return None
    try:
        import psutil

        children = _tree(pid)[1:]
        total = 0
        for process in children:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return {"child_processes": len(children), "child_resident_bytes": total}
    except Exception:
        return None


def _status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_bytes(pid: int | None) -> int | None:
    """The peak resident memory (VmHWM, kept by the kernel) of `pid` and its descendants, summed: what the
    tree held at its fullest since the peaks were last reset (reset_peaks). A transient copy, weights
    decompressed or read from a file inside a call and dropped after it, shows here and not in the resident
    reading. None when /proc cannot say (not Linux, a process gone)."""
    if not pid:
        return None
    try:
        peaks = [_status_kib(process.pid, "VmHWM") for process in _tree(pid)]
    except Exception:
        return None
    return None if not peaks or None in peaks else 1024 * sum(peaks)


def reset_peaks(pid: int | None) -> str | None:
    """Reset the peak resident memory of `pid` and its descendants to what they hold now (writing 5 to
    /proc/PID/clear_refs, Linux 4.0+); None when done, else why not (then the peak check cannot run)."""
    if not pid:
        return "no process id for the worker"
    try:
        for process in _tree(pid):
            with open(f"/proc/{process.pid}/clear_refs", "w", encoding="ascii") as refs:
                refs.write("5")
    except Exception as exc:
        return f"the peak resident memory could not be reset ({type(exc).__name__}: {exc})"
    return None


def explained_bytes(report: dict) -> int:
    """Host memory the counted weights explain: the bytes the worker says it counted, never more than
    BYTES_PER_PARAM a counted parameter (the report is the team process's word; fp32 is the most it gets)."""
    counted = int(report.get("counted") or 0)
    said = report.get("counted_cpu_bytes")
    ceiling = BYTES_PER_PARAM * counted
    return ceiling if said is None else min(int(said), ceiling)


def resident_slack(report: dict) -> int:
    """Bytes an honest load takes beside its counted weights: RESIDENT_SLACK_BYTES, plus ONNX_RUNTIME_SHARE of
    the ONNX initializers' fp32 bytes (never more initializers than the count holds: the report is the team
    process's word, and what it counts is what it is scored on)."""
    onnx = min(int(report.get("onnx_params") or 0), int(report.get("counted") or 0))
    return RESIDENT_SLACK_BYTES + int(ONNX_RUNTIME_SHARE * BYTES_PER_PARAM * onnx)


def unexplained_memory(report: dict, growth: int | None, peak: int | None) -> dict[str, int | None]:
    """Bytes the worker's tree took beyond what its count explains, at load (resident growth) and at its
    fullest during the passes (peak growth): each None when it could not be read; and the resident slack
    that load is allowed (resident_slack)."""
    explained = explained_bytes(report)
    return {"explained_bytes": explained, "resident_slack_bytes": resident_slack(report),
            "unexplained_resident_bytes": None if growth is None else growth - explained,
            "unexplained_peak_bytes": None if peak is None else peak - explained}


def memory_reasons(unexplained: dict[str, int | None]) -> list[str]:
    """weights_unaccounted reasons: memory beyond the counted bytes past its calibrated slack, whatever the
    count says."""
    reasons = []
    resident = unexplained.get("resident_slack_bytes") or RESIDENT_SLACK_BYTES
    for key, label, slack in (("unexplained_resident_bytes", "resident memory taken at load", resident),
                              ("unexplained_peak_bytes", "peak resident memory during the timed passes",
                               PEAK_SLACK_BYTES)):
        value = unexplained.get(key)
        if value is not None and value > slack:
            reasons.append(f"weights_unaccounted: the {label} is {value / 2**20:,.0f} MiB beyond the "
                           f"{unexplained.get('explained_bytes', 0) / 2**20:,.1f} MiB the counted weights explain "
                           f"(slack {slack / 2**20:.1f} MiB)"
                           + (_children_part(unexplained) if key == "unexplained_resident_bytes" else ""))
    return reasons


def _children_part(unexplained: dict) -> str:
    """Where child processes ran at load: how much of the reading is theirs (an honest process pool reads
    as its children's whole resident memory, the pages they share with the worker included)."""
    count, held = unexplained.get("child_processes"), unexplained.get("child_resident_bytes")
    if not count or held is None:
        return ""
    return (f"; {held / 2**20:,.0f} MiB of it in {count} child process{'es' if count != 1 else ''} of the "
            "worker, each counted at its whole resident memory, the pages it shares with the worker included "
            "(threads are counted once)")
