"""Every data file counts (harness.data_files): whatever its size or first bytes; code is only what an ELF
declares executable and the worker maps executable; small text is let off up to an allowance. The folder
walk (local backend) and the tar stream (Docker backend) agree."""

import ctypes
import io
import mmap
import os
import struct
import tarfile

import pytest

from harness import data_files
from harness.data_files import (MAX_CODE_BYTES_PER_FILE, TEXT_ALLOWANCE_BYTES, DataTally, code_bytes,
                                data_bytes_in_tar, data_file_bytes, elf_code_ranges, executable_mappings,
                                merge_code_maps, tar_file_digests)


def elf64(code_offset, code_size, total, data_offset=None, data_size=0):
    """A little-endian ELF64 shared object: one PT_LOAD R+X segment, optionally one PT_LOAD R segment."""
    headers = [(1, 5, code_offset, code_size)] + ([(1, 4, data_offset, data_size)] if data_offset else [])
    head = bytearray(64)
    head[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<H", head, 16, 3)                        # ET_DYN
    struct.pack_into("<Q", head, 32, 64)                       # program headers right after the ELF header
    struct.pack_into("<HH", head, 54, 56, len(headers))
    for p_type, p_flags, offset, size in headers:
        entry = bytearray(56)
        struct.pack_into("<IIQ", entry, 0, p_type, p_flags, offset)
        struct.pack_into("<Q", entry, 32, size)
        head += entry
    return bytes(head) + b"\xcc" * (total - len(head))


def tar_of(folder_name, files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(f"{folder_name}/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return [data[i:i + 999] for i in range(0, len(data), 999)]


def test_elf_code_ranges_come_from_the_program_headers_and_magic_alone_is_no_library():
    lib = elf64(4096, 8192, 20_000, data_offset=12288, data_size=4000)
    assert elf_code_ranges(lib[:4096]) == [(4096, 8192)]                 # the R segment is not code
    assert elf_code_ranges(b"\x7fELF" + bytes(4092)) == []               # four bytes of magic
    assert elf_code_ranges(b"\x7fELF\x02\x01" + bytes(58)) == []         # ET_NONE
    assert elf_code_ranges(b"plain data" * 100) == []


def test_code_is_what_the_headers_declare_and_the_worker_maps_executable():
    lib = elf64(4096, 8192, 20_000)
    head = lib[:4096]
    assert code_bytes(len(lib), head, None) == 0                         # not mapped: data
    assert code_bytes(len(lib), head, [(4096, 8192)]) == 8192
    assert code_bytes(len(lib), head, [(0, 20_480)]) == 8192             # all mapped: still only the segment
    assert code_bytes(len(lib), head, [(4096, 4096)]) == 4096            # half mapped: half
    assert code_bytes(len(lib), b"\x7fELF" + bytes(4092), [(0, 20_480)]) == 0


def test_code_is_capped_per_file(monkeypatch):
    monkeypatch.setattr(data_files, "MAX_CODE_BYTES_PER_FILE", 1000)
    lib = elf64(4096, 8192, 20_000)
    assert data_files.code_bytes(len(lib), lib[:4096], [(0, 20_480)]) == 1000
    assert MAX_CODE_BYTES_PER_FILE == 64 * 2**20


def test_many_small_binary_files_and_elf_magic_count_whatever_their_size(tmp_path):
    team = tmp_path / "team"
    (team / "shards").mkdir(parents=True)
    for i in range(50):
        (team / "shards" / f"{i:02d}").write_bytes(bytes([i + 1, 0]) * 1500)   # 3 KB of binary each
    (team / "libweights.so").write_bytes(b"\x7fELF" + b"\1" * 9996)           # magic, no library
    (team / "vocab.txt").write_text("的\n是\n" * 1000, encoding="utf-8")       # small text: let off
    (team / "predictor.py").write_text("print('hi')\n", encoding="utf-8")
    code = {str((team / "libweights.so").resolve()): [(0, 12288)]}            # even mapped executable
    assert data_file_bytes(team, code) == 50 * 3000 + 10_000


def test_a_library_the_worker_maps_counts_only_outside_its_code(tmp_path):
    team = tmp_path / "build"
    team.mkdir()
    lib = elf64(4096, 8192, 20_000)
    (team / "libfast.so").write_bytes(lib)
    (team / "libunused.so").write_bytes(lib)                                  # installed, never loaded: data
    code = {str((team / "libfast.so").resolve()): [(4096, 8192)]}
    assert data_file_bytes(team, code) == (20_000 - 8192) + 20_000
    assert data_file_bytes(team, None) == 40_000                              # maps unread: nothing is code


def test_small_text_counts_beyond_its_allowance(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    piece = 1_000_000
    n = TEXT_ALLOWANCE_BYTES // piece + 3
    for i in range(n):
        (team / f"part{i}.txt").write_bytes(b"QUJD" * (piece // 4))          # base64-looking text
    assert data_file_bytes(team) == n * piece - TEXT_ALLOWANCE_BYTES
    tally = DataTally()
    tally.add(5, b"ab\0cd", None)                                             # a NUL: not text
    tally.add(3, b"a\x01b", None)                                            # a control byte: not text
    tally.add(4, b"\xff\xfe\xfd\xfc", None)                                   # not UTF-8: not text
    assert (tally.data, tally.text, tally.counted) == (12, 0, 12)


def test_the_folder_walk_and_the_tar_stream_agree(tmp_path):
    lib = elf64(4096, 8192, 20_000)
    files = {"libfast.so": lib, "shard0": b"\2" * 7000, "vocab.txt": b"a\nb\n" * 100, "sub/model.bin": b"\3" * 500}
    root = tmp_path / "team"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    local = data_file_bytes(root, {str((root / "libfast.so").resolve()): [(4096, 8192)]})
    docker = data_bytes_in_tar(tar_of("team", files), "/team", {"/team/libfast.so": [(4096, 8192)]}).counted
    assert local == docker == (20_000 - 8192) + 7000 + 500


def test_the_runner_images_unchanged_files_are_not_the_builds(tmp_path):
    runner = {"lib/python3.11/site-packages/pip/w64.exe": b"\4" * 6000, "bin/tool": b"\5" * 3000}
    team = {**runner, "bin/tool": b"\6" * 3000, "fetched.dat": b"\7" * 1000}    # tool changed, one file added
    unchanged = tar_file_digests(tar_of("team-venv", runner))
    tally = data_bytes_in_tar(tar_of("team-venv", team), "/opt/team-venv", None, unchanged)
    assert tally.counted == 3000 + 1000
    assert data_bytes_in_tar(tar_of("team-venv", team), "/opt/team-venv").counted == 6000 + 3000 + 1000


def test_links_and_fifos_are_never_followed(tmp_path):
    team = tmp_path / "team"
    team.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"\1" * 100_000)
    (team / "link").symlink_to(outside)
    os.mkfifo(team / "pipe")
    (team / "real").write_bytes(b"\1" * 10)
    assert data_file_bytes(team) == 10


def test_the_host_reads_which_files_a_process_maps_executable(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\1" * 8192)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(blob, os.O_RDONLY)
    address = libc.mmap(None, 8192, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_PRIVATE, fd, 0)
    os.close(fd)
    if address in (None, ctypes.c_void_p(-1).value):
        pytest.skip("this box refuses executable file maps")
    try:
        found = executable_mappings(os.getpid())
        assert found is not None
        assert found.get(str(blob.resolve())) == [(0, 8192)]
        assert any(".so" in path or "python" in path for path in found)       # the interpreter's own code
    finally:
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.munmap(address, 8192)
    assert executable_mappings(None) is None
    assert executable_mappings(2**22 + 12345) is None                         # no such process


def test_readings_of_several_workers_merge():
    assert merge_code_maps(None, None) is None
    assert merge_code_maps(None, {"/a": [(0, 1)]}) == {"/a": [(0, 1)]}
    assert merge_code_maps({"/a": [(0, 1)]}, {"/a": [(4, 2)], "/b": [(0, 3)]}) == {"/a": [(0, 1), (4, 2)],
                                                                                 "/b": [(0, 3)]}
    assert merge_code_maps({"/a": [(0, 1)]}, None) == {"/a": [(0, 1)]}


def test_a_files_flag_says_when_the_maps_were_not_read(tmp_path):
    from harness.backends.base import Built
    from harness.pipeline import weight_file_flags

    class Files:
        def __init__(self):
            self.asked = []

        def weight_file_bytes(self, built, code=None):
            self.asked.append(code)
            return 400

    built = Built(True, "image", "/team", tmp_path / "build.log")
    files = Files()
    unread = weight_file_flags(files, built, [10], limit=50)[0]
    assert "memory maps could not be read" in unread
    read = weight_file_flags(files, built, [10], limit=50, code={"/team/lib.so": [(0, 4096)]})[0]
    assert "memory maps" not in read and files.asked == [None, {"/team/lib.so": [(0, 4096)]}]
