"""Cross-checks of a team's parameter count from outside its worker process, where team code patches nothing.

The count itself has to come from inside the worker (only the worker can load the model), and team code
shares that process, so the host checks it against figures the team cannot bend from inside:
- memory, in bytes: the worker reports the bytes of what it counted, dtype-aware, apart for host memory
  (counted_cpu_bytes) and a device's (counted_device_bytes, counted_device_params); never taken as more than
  BYTES_PER_PARAM a counted parameter in all (explained_bytes, explained_device_bytes). The team gets a fresh
  worker per task; after `prepare` (libraries imported and warmed, device started and its lazily loaded
  kernels warmed, no team code run yet in that process: the task's baseline) the host reads, for the
  worker's whole process tree, its resident memory from /proc (and resets the peak, VmHWM) and, on a GPU,
  its device memory from NVML (every pid of the tree, harness.gpu.device_memory_reading).
  - host: the resident memory right after `load`, and the peak after the timed passes. The host may explain
    its growth by the counted host bytes plus HOST_COPY_BYTES for each parameter counted on the device (the
    host copy a model is built in before it moves: RoBERTa-tiny, 7.45M parameters on an H200, grew 25.8 MiB
    resident at load). Bytes beyond that past the resident slack (resident_slack: RESIDENT_SLACK_BYTES, more
    for ONNX Runtime) or PEAK_SLACK_BYTES (bench/memory_growth.py) flag the row ``weights_unaccounted``.
  - device: the device memory right after `load` (the worker empties the caching allocator's free blocks
    after the team's constructor), before any batch, less the baseline, beyond the counted device bytes
    (ONNX initializers at BYTES_PER_PARAM too: a CUDA session holds them on the device); flagged past the allowance (device_allowance): the reference's own growth at load beyond
    its counted device bytes, for that task on that box (BERT-base, harness code, loading beside the team:
    the caching allocator's rounding, the kernels its load ran), plus DEVICE_MARGIN_BYTES. Without the
    reference's figure, or a reading, the row says the device check did not run (device_reasons). The device
    memory after the passes (`device_memory_bytes`: the allocator's cache of the largest batch's activations
    included) is reported, never compared.
  A peak that could not be reset or read, and the worker's own note on its baseline, are said on the row too
  (reading_reasons): a check that could not run never passes in silence.
  What can still hide, in parameters: on the host, RESIDENT_SLACK_BYTES (4.2M fp32, 16.8M int8) plus, for a
  model on the device, one fp32 parameter for each parameter counted there (its host copy's room, when the
  copy was freed: up to 12M more at the 12M limit); on the device, the allowance: 20 MiB (5.2M fp32, 10.5M
  fp16 parameters) plus the reference's overhead at load R, another R/4 fp32 parameters (R unmeasured yet on
  a GPU: bench/memory_growth.py --device cuda prints it).
- the files the build added that count as weights: every data file, whatever its size or first bytes, code
  being only what the worker maps executable (harness.data_files; counts_as_weights, the older rule by
  suffix and size, stays for the probe's model_file_bytes report); flagged when they imply, at 4 bytes a
  parameter (the lenient reading), more than the limit and more than twice the count.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

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
# Device memory (NVML, per process) at load, beyond the counted device bytes: the allowance is calibrated on the
# box, per task, by the reference worker (BERT-base, harness code) loading beside the team: its own growth at
# load beyond its counted device bytes (device_overhead). A team's load may differ from the reference's in two
# ways the reference cannot show, covered by the margin: its tensor sizes (PyTorch's CUDA caching allocator,
# c10/cuda/CUDACachingAllocator.cpp, packs blocks of 1-10 MiB into 20 MiB segments (kLargeBuffer) and
# rounds larger ones to 2 MiB (kRoundLarge): different sizes can leave one more partly filled 20 MiB segment),
# and kernels its load runs that neither prepare's warm-up nor the reference's load ran (CUDA loads kernel
# code lazily, on first use). DEVICE_MARGIN_BYTES is that one segment: the allocator's constant, not a
# measurement; the next GPU day measures what the kernels add (bench/memory_growth.py --device cuda).
DEVICE_MARGIN_BYTES = 20 * 2**20
# The host copy of a parameter counted on the device: a model is commonly built (or read) in host memory and
# then moved; freed host pages mostly stay resident (the H200, 2026-12-04: RoBERTa-tiny, 7.45M parameters on
# the device, 0 bytes on the host, grew 25.8 MiB resident at load; ALBERT-tiny 4.08M 17.1 MiB; the demo 2.75M
# 6.0 MiB). Taken at fp32 (4 bytes), the lenient reading: a model built in fp32 and halved still fits.
HOST_COPY_BYTES = 4
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


def read_start(path: Path, want: int) -> bytes | None:
    """Up to the first `want` bytes of a regular file (fewer only at its end), opened without following a link
    or blocking on a FIFO put there since it was looked at; None when it is no longer a regular file or
    cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, got = [], 0
        while got < want:
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _head(path: Path) -> bytes | None:
    """The first bytes of a regular file (read_start): as many as ELF_MAGIC."""
    return read_start(path, len(ELF_MAGIC))


def weight_files(root: Path) -> list[tuple[Path, int]]:
    """(path, bytes) of the regular files under `root` that count as weights (counts_as_weights), in a
    stable order; links and special files are never followed (lstat, O_NOFOLLOW), so a team cannot point
    the reader anywhere."""
    found = []
    for path, info in regular_files(root):
        head = _head(path) if needs_head(path.name, info.st_size) else b""
        if head is not None and counts_as_weights(path.name, info.st_size, head):
            found.append((path, info.st_size))
    return found


def regular_files(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """(path, lstat) of every regular file under `root`, in a stable order; links are never followed and
    special files are passed over (lstat), so a team cannot point a reader anywhere."""
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield path, info


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


def tree_pids(pid: int | None) -> list[int]:
    """The host pids of `pid` and all its descendants (the worker's tree, as resident_bytes reads it); [] when
    they cannot be read."""
    if not pid:
        return []
    try:
        return [process.pid for process in _tree(pid)]
    except Exception:
        return []


def _cpu_explained(report: dict) -> int:
    counted = int(report.get("counted") or 0)
    said = report.get("counted_cpu_bytes")
    ceiling = BYTES_PER_PARAM * counted
    return ceiling if said is None else min(int(said), ceiling)


def explained_bytes(report: dict) -> int:
    """Host memory the counted weights explain: the bytes the worker says it counted in host memory, plus,
    for the parameters it counted on a device, the host copy a model is commonly built in before it moves
    there (HOST_COPY_BYTES a parameter: fp32, the lenient reading); never more than BYTES_PER_PARAM a counted
    parameter in all (the report is the team process's word; fp32 is the most it gets)."""
    ceiling = BYTES_PER_PARAM * int(report.get("counted") or 0)
    on_device = min(int(report.get("counted_device_params") or 0), int(report.get("counted") or 0))
    return min(ceiling, _cpu_explained(report) + HOST_COPY_BYTES * on_device)


def explained_device_bytes(report: dict) -> int:
    """Device memory the counted weights explain: the torch device bytes the worker says it counted
    (dtype-aware), never more than what is left of BYTES_PER_PARAM a counted parameter once its host bytes
    are taken (a tensor is in one place; the report is the team process's word); plus BYTES_PER_PARAM for
    each counted ONNX initializer, which a CUDA execution provider session holds on the device while its
    host copy stays (the host explains them too); never more than BYTES_PER_PARAM a counted parameter."""
    counted = int(report.get("counted") or 0)
    ceiling = BYTES_PER_PARAM * counted
    said = int(report.get("counted_device_bytes") or 0)
    on_host = min(int(report.get("counted_cpu_bytes") or 0), ceiling)
    onnx = BYTES_PER_PARAM * min(int(report.get("onnx_params") or 0), counted)
    return min(ceiling, max(0, min(said, ceiling - on_host)) + onnx)


def device_overhead(report: dict, baseline: int | None, after_load: int | None) -> int | None:
    """The reference's calibration figure: its device growth at load beyond its own counted device bytes
    (the caching allocator's rounding, the kernels its load ran for the first time), on this box, this
    task; None when either reading is missing."""
    if baseline is None or after_load is None:
        return None
    return after_load - baseline - explained_device_bytes(report)


def device_allowance(reference_overhead: int | None) -> int | None:
    """Device bytes an honest load may take beside its counted device bytes: the reference's own overhead at
    load for the task (never below 0) plus DEVICE_MARGIN_BYTES; None (not calibrated) without the reference's
    figure."""
    return None if reference_overhead is None else max(0, reference_overhead) + DEVICE_MARGIN_BYTES


def unexplained_device(report: dict, baseline: tuple[int | None, str], after_load: tuple[int | None, str],
                       reference_overhead: int | None, reference_why: str = "") -> dict:
    """The device check at load, as result.json keeps it: the worker's device memory (NVML, its whole tree)
    after prepare and right after load, the growth, what the counted device bytes explain, the allowance
    (device_allowance) and the bytes beyond the counted ones; `device_check_note` says why the check could
    not run (a reading missing, or no calibration), "" when it ran."""
    before, after = baseline[0], after_load[0]
    growth = after - before if before is not None and after is not None else None
    explained = explained_device_bytes(report)
    allowance = device_allowance(reference_overhead)
    note = ""
    if before is None:
        note = f"the device memory after prepare could not be read: {baseline[1]}"
    elif after is None:
        note = f"the device memory after load could not be read: {after_load[1]}"
    elif allowance is None:
        note = ("not calibrated: BERT-base's device growth at load, the allowance's base, could not be read"
                + (f" ({reference_why})" if reference_why else ""))
    return {"device_baseline_bytes": before, "device_after_load_bytes": after, "device_load_growth_bytes": growth,
            "device_explained_bytes": explained, "device_allowance_bytes": allowance,
            "device_reference_overhead_bytes": reference_overhead,
            "unexplained_device_bytes": None if growth is None else growth - explained, "device_check_note": note}


def device_reasons(record: dict) -> list[str]:
    """weights_unaccounted when the device growth at load passes the counted device bytes by more than the
    allowance; a check that could not run says why (never passes in silence). Nothing for a record without
    the device check (CPU)."""
    if "device_check_note" not in record:
        return []
    if record["device_check_note"]:
        return [f"device memory at load not checked: {record['device_check_note']}"]
    value, allowance = record.get("unexplained_device_bytes"), record.get("device_allowance_bytes")
    if value is None or allowance is None or value <= allowance:
        return []
    overhead = record.get("device_reference_overhead_bytes") or 0
    return [f"weights_unaccounted: the device memory taken at load is {value / 2**20:,.1f} MiB beyond the "
            f"{record.get('device_explained_bytes', 0) / 2**20:,.1f} MiB the counted weights explain on the device "
            f"(allowance {allowance / 2**20:,.1f} MiB: BERT-base's own {max(0, overhead) / 2**20:,.1f} MiB at load "
            f"on this box + a {DEVICE_MARGIN_BYTES / 2**20:.0f} MiB margin)"]


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


def reading_reasons(record: Mapping[str, Any]) -> list[str]:
    """What the host-memory checks could not see, from one task's timing record: a resident peak that could
    not be reset or read (reset_peaks, peak_bytes: `peak_unreadable`), and the worker's note on its baseline
    after prepare (`baseline_note`: why the reading there may be high)."""
    reasons = []
    if record.get("peak_unreadable"):
        reasons.append(f"peak memory not checked: {record['peak_unreadable']}")
    if record.get("baseline_note"):
        reasons.append(f"memory baseline: {record['baseline_note']}")
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
