"""Weights hidden from the weight-file check and the live-weight scan (issue 28.3), each caught on the row:
many small files, a file behind ELF magic mapped executable, raw buffers, a TorchScript module kept in C++.
The teams run on the local backend against the fake reference, two tasks each (see test_hostile_teams)."""

import pytest

from conftest import TEAMS
from test_hostile_teams import assert_ran, run_team

pytestmark = pytest.mark.slow

FILES_FLAG = "weights_unaccounted: the files the build added that count as weights"
SCAN_FLAG = "weights live in the worker process outside what the predictor shows"


def test_weights_in_many_small_files_are_counted(tmp_path):
    row, _ = run_team(TEAMS / "small_files_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert row["params"] == 40
    assert FILES_FLAG in row["flags"], row["flags"]


def test_weights_behind_elf_magic_mapped_executable_are_counted(tmp_path):
    # the worker maps libweights.so with execute permission, but it declares no executable segment: data
    row, _ = run_team(TEAMS / "elf_magic_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert row["params"] == 40
    assert FILES_FLAG in row["flags"], row["flags"]
    assert "memory maps could not be read" not in row["flags"]


def test_weights_in_raw_buffers_are_found_by_the_scan(tmp_path):
    row, record = run_team(TEAMS / "raw_holdings_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    # bytes, bytearray, the mmap and the storage at a byte an element (2M each), the float array at 4 bytes
    assert row["params"] == 40 + 4 * 2_000_000 + 500_000
    assert SCAN_FLAG in row["flags"], row["flags"]


def test_a_torchscript_modules_cpp_parameters_are_found_by_the_scan(tmp_path):
    row, _ = run_team(TEAMS / "torchscript_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert row["params"] == 40 + 1_000_000
    assert SCAN_FLAG in row["flags"], row["flags"]


def test_the_honest_twin_gets_neither_flag(tmp_path):
    row, _ = run_team(TEAMS / "sleep_team", tmp_path / "out", tmp_path / "cache")
    assert_ran(row)
    assert row["params"] == 40
    assert FILES_FLAG not in row["flags"] and SCAN_FLAG not in row["flags"], row["flags"]
