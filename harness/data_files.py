"""Every data file a build added or a team ships counts as weights, whatever its size or first bytes.

The weight-file cross-check (crosscheck.unaccounted_files) sets these bytes against the count. The older
rule (crosscheck.counts_as_weights: a weight suffix, or 1 MiB or more without ELF magic) let weights through
in many small files or behind four bytes of ELF magic. Here a file is weights unless it is code or small
text, and code is told from data by what the worker itself maps executable, read by the host.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Iterable

from harness.crosscheck import ELF_MAGIC, _ChunkStream, _tree, read_start, regular_files

# ---- Every data file counts (issue 28.3) -----------------------------------------------------------------
# Whatever its size, suffix or first bytes, a file the build added or the team ships counts as weights unless
# it is one of two things that are not parameters:
# - code: the part of an ELF file that its program headers declare executable (PT_LOAD with PF_X) AND that the
#   worker's processes map with execute permission after load (read by the host from /proc/PID/maps, which no
#   code inside the worker can rewrite). A library the build installed that the worker never loads is data,
#   and so is everything of a loaded library outside its executable segment (its read-only data included).
#   At most MAX_CODE_BYTES_PER_FILE of one file is code: more than any library a pip install brings to a
#   team's CPU venv (onnxruntime's Python module: 27 MiB executable of its 34 MiB).
# - small text: a file of at most SMALL_TEXT_BYTES that is UTF-8 text without control bytes (a vocabulary, a
#   config, Python source, a script): data, but not parameters (the rules count embeddings, not the strings
#   of a vocabulary). Together they are let off up to TEXT_ALLOWANCE_BYTES only (the bundled teams ship
#   0.1-0.3 MiB of them), so weights written out as text in many small files still count beyond it.
# What can still hide here: weights inside an ELF's declared executable segment that the worker maps
# executable (up to MAX_CODE_BYTES_PER_FILE a file), TEXT_ALLOWANCE_BYTES of text, and what the flag rule
# itself lets pass (unaccounted_files: up to the limit's worth of bytes, or twice the count's).
SMALL_TEXT_BYTES = 2**20
TEXT_ALLOWANCE_BYTES = 8 * 2**20
MAX_CODE_BYTES_PER_FILE = 64 * 2**20
CODE_HEAD_BYTES = 4096             # an ELF header and its program headers are read from a file's first bytes
CodeMaps = dict  # path (as the worker sees it) -> [(file offset, length)] mapped with execute permission


def executable_mappings(pid: int | None) -> CodeMaps | None:
    """The files the worker's processes (`pid` and its descendants) map with execute permission, and which
    parts of them: read by the host from /proc/PID/maps, whose paths are those the worker sees (a container's
    own paths under Docker). None when the worker's maps cannot be read (then no file is taken as code)."""
    if not pid:
        return None
    try:
        processes = _tree(pid)
    except Exception:
        return None
    found: CodeMaps = {}
    for index, process in enumerate(processes):
        try:
            with open(f"/proc/{process.pid}/maps", encoding="utf-8", errors="surrogateescape") as maps:
                lines = maps.read().splitlines()
        except OSError:
            if index == 0:
                return None
            continue
        for line in lines:
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                continue
            try:
                low, high = (int(value, 16) for value in parts[0].split("-"))
                offset = int(parts[2], 16)
            except ValueError:
                continue
            path = parts[5].removesuffix(" (deleted)")
            found.setdefault(path, []).append((offset, high - low))
    return found


def merge_code_maps(into: CodeMaps | None, more: CodeMaps | None) -> CodeMaps | None:
    """The union of two readings (one per task's worker); None only while no reading succeeded."""
    if more is None:
        return into
    merged = {path: list(ranges) for path, ranges in (into or {}).items()}
    for path, ranges in more.items():
        merged.setdefault(path, []).extend(ranges)
    return merged


def elf_code_ranges(head: bytes) -> list[tuple[int, int]]:
    """(file offset, size) of the executable segments (PT_LOAD with PF_X) a little-endian ELF program or
    shared library declares in its first bytes; [] for anything else (four bytes of magic are not a library)."""
    import struct

    if len(head) < 64 or not head.startswith(ELF_MAGIC) or head[5] != 1 or head[4] not in (1, 2):
        return []
    wide = head[4] == 2
    e_type = struct.unpack_from("<H", head, 16)[0]
    if e_type not in (2, 3):                       # ET_EXEC, ET_DYN
        return []
    phoff = struct.unpack_from("<Q" if wide else "<I", head, 32 if wide else 28)[0]
    phentsize, phnum = struct.unpack_from("<HH", head, 54 if wide else 42)
    ranges = []
    for index in range(phnum):
        at = phoff + index * phentsize
        if at + (56 if wide else 32) > len(head):
            return []                              # program headers out of reach: not taken as code
        if wide:
            p_type, p_flags, p_offset = struct.unpack_from("<IIQ", head, at)
            p_filesz = struct.unpack_from("<Q", head, at + 32)[0]
        else:
            p_type, p_offset = struct.unpack_from("<II", head, at)
            p_filesz, p_flags = struct.unpack_from("<I", head, at + 16)[0], struct.unpack_from("<I", head, at + 24)[0]
        if p_type == 1 and p_flags & 1 and p_filesz:
            ranges.append((p_offset, p_filesz))
    return ranges


def code_bytes(size: int, head: bytes, mapped: list[tuple[int, int]] | None) -> int:
    """Bytes of a file that are code: declared executable by its ELF headers and mapped executable by the
    worker, at most MAX_CODE_BYTES_PER_FILE."""
    if not mapped:
        return 0
    covered = 0
    for offset, length in elf_code_ranges(head):
        start, end = offset, min(offset + length, size)
        spans = sorted((max(start, low), min(end, low + span)) for low, span in mapped
                       if low < end and low + span > start)
        cursor = start
        for low, high in spans:
            low = max(low, cursor)
            if high > low:
                covered += high - low
                cursor = high
    return min(covered, size, MAX_CODE_BYTES_PER_FILE)


_CONTROL_BYTES = bytes(c for c in range(32) if c not in (9, 10, 12, 13)) + b"\x7f"   # not in text files


def is_small_text(size: int, content: bytes) -> bool:
    """A file of at most SMALL_TEXT_BYTES that is UTF-8 text: no NUL or other control bytes but tab, newline,
    form feed and carriage return (`content`: all of it)."""
    if size > SMALL_TEXT_BYTES or len(content) != size or len(content.translate(None, _CONTROL_BYTES)) != size:
        return False
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class DataTally:
    """Bytes of a build's files by kind: data (counted), small text (counted beyond TEXT_ALLOWANCE_BYTES), code."""

    def __init__(self):
        self.data = self.text = self.code = 0

    def add(self, size: int, content: bytes, mapped: list[tuple[int, int]] | None) -> None:
        """One regular file: `content` is all of it when size <= SMALL_TEXT_BYTES, else its first bytes."""
        if is_small_text(size, content):
            self.text += size
            return
        code = code_bytes(size, content[:CODE_HEAD_BYTES], mapped)
        self.code += code
        self.data += size - code

    @property
    def counted(self) -> int:
        return self.data + max(0, self.text - TEXT_ALLOWANCE_BYTES)


def _read_start(path: Path, size: int) -> bytes | None:
    """All of a small file, or the first CODE_HEAD_BYTES of a large one (crosscheck.read_start: no link
    followed, no FIFO blocked on); None when it is no longer a regular file or cannot be read."""
    return read_start(path, size if size <= SMALL_TEXT_BYTES else CODE_HEAD_BYTES)


def data_file_bytes(root: Path, code: CodeMaps | None = None) -> int:
    """Bytes of the files under `root` that count as weights under the every-data-file rule (DataTally); links
    and special files are never followed. `code`: executable_mappings of the worker, whose paths are matched
    against each file's real path (None: nothing is code)."""
    tally = DataTally()
    real_root = os.path.realpath(root)
    for path, info in regular_files(root):
        start = _read_start(path, info.st_size)
        if start is not None:
            real = os.path.normpath(os.path.join(real_root, os.path.relpath(path, root)))
            tally.add(info.st_size, start, (code or {}).get(real))
    return tally.counted


def tar_file_digests(chunks: Iterable[bytes]) -> set[tuple[str, int, str]]:
    """(name, size, sha256) of the regular files in a tar stream: the runner image's own files, which a team
    image's archive of the same folder leaves out when unchanged (data_bytes_in_tar's `unchanged`)."""
    found = set()
    with tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks), 1 << 20), mode="r|") as archive:
        for member in archive:
            reader = archive.extractfile(member) if member.isreg() else None
            if reader is not None:
                found.add((member.name, member.size, _digest_and_start(reader, member.size)[0]))
    return found


def _digest_and_start(reader, size: int) -> tuple[str, bytes]:
    """sha256 of a tar member, read in pieces, and what DataTally.add needs of it (all of a small file, the
    head of a large one)."""
    import hashlib

    digest, start = hashlib.sha256(), b""
    keep = size if size <= SMALL_TEXT_BYTES else CODE_HEAD_BYTES
    while True:
        piece = reader.read(1 << 20)
        if not piece:
            return digest.hexdigest(), start
        digest.update(piece)
        if len(start) < keep:
            start += piece[:keep - len(start)]


def data_bytes_in_tar(chunks: Iterable[bytes], folder: str, code: CodeMaps | None = None,
                      unchanged: set[tuple[str, int, str]] | None = None) -> DataTally:
    """DataTally of the regular files in the engine's archive of `folder` (its members are named from the
    folder's own name down): links and special files count for nothing, nothing is written out. A file the
    runner image already holds with the same content (`unchanged`, from tar_file_digests) is not the build's."""
    import posixpath

    tally = DataTally()
    parent = posixpath.dirname(folder.rstrip("/")) or "/"
    with tarfile.open(fileobj=io.BufferedReader(_ChunkStream(chunks), 1 << 20), mode="r|") as archive:
        for member in archive:
            reader = archive.extractfile(member) if member.isreg() else None
            if reader is None:
                continue
            if unchanged:
                digest, content = _digest_and_start(reader, member.size)
                if (member.name, member.size, digest) in unchanged:
                    continue
            else:
                content = reader.read(member.size if member.size <= SMALL_TEXT_BYTES else CODE_HEAD_BYTES)
            path = posixpath.normpath(posixpath.join(parent, member.name))
            tally.add(member.size, content, (code or {}).get(path))
    return tally


def maps_note(code: CodeMaps | None) -> str:
    """Said beside a files flag when the worker's maps could not be read (so no file was taken as code)."""
    return "" if code is not None else (" (the worker's memory maps could not be read: no file was taken as "
                                        "code, shared libraries included)")
