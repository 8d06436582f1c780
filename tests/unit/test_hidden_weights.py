"""Weights hidden from the predictor-visible count are found in the process (live_weights).

Each hiding place runs in one fresh interpreter, so that tensors other tests keep alive cannot blur the
process-wide figure; honest predictors there must come out unflagged with the same count as before.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]
HIDDEN, VISIBLE = 12_500_000, 34
HIDING = ["LeftOutOfSources", "BoundMethod", "ClosureCell", "FrozenAway", "ModuleGlobal", "CreatedInPredict",
          "StubbedParameters"]

@pytest.fixture(scope="module")
def counts():
    run = subprocess.run([sys.executable, str(FIXTURES / "params" / "count_hiding.py"), ",".join(HIDING)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_an_honest_predictor_is_counted_as_before_and_not_flagged(counts):
    honest = counts["Honest"]
    assert (honest["counted"], honest["visible"], honest["hidden"], honest["flags"]) == (VISIBLE, VISIBLE, 0, [])


@pytest.mark.parametrize("name", HIDING)
def test_each_hiding_place_is_caught(counts, name):
    report = counts[name]
    assert report["counted"] >= HIDDEN          # over the 12M limit: the row cannot pass
    assert report["hidden"] + report["visible"] == report["counted"]
    if report["visible"] < HIDDEN:              # whatever the predictor showed, the rest was found and said
        assert any("outside what the predictor shows" in flag for flag in report["flags"]), report["flags"]


def test_bundled_teams_keep_their_counts_unflagged():
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        sys.path[:0] = [sys.argv[1], sys.argv[2]]
        from predictor import Predictor
        from harness.probe.params import count_parameters
        report = count_parameters(Predictor("cluewsc2020", "cpu"), Path(sys.argv[2]))
        print(json.dumps([report.counted, report.hidden_weights, list(report.flags)]))
    """)
    run = subprocess.run([sys.executable, "-c", script, str(REPO), str(REPO / "baselines" / "demo_team")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    # the demo team: a 21,128 x 128 character embedding, a 3-wide convolution 128 -> 128 and two heads
    expected = 21_128 * 128 + (128 * 128 * 3 + 128) + (2 * 128 + 2)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [expected, 0, []]


def test_storage_span_asks_storage_where_untyped_storage_is_missing():
    """torch 1.13 (the offline runner image's) has no Tensor.untyped_storage, only storage(), a TypedStorage
    with the same data_ptr() and nbytes(); tests/integration/test_docker_probe.py runs the scan on the real one."""
    from harness.probe.live_weights import storage_span

    class TypedStorage:
        def data_ptr(self):
            return 4096

        def nbytes(self):
            return 160

    class Torch113Tensor:
        def storage(self):
            return TypedStorage()

    assert storage_span(Torch113Tensor()) == (4096, 160)

    class OlderTypedStorage:                    # no nbytes(): its size in elements times the element size
        def data_ptr(self):
            return 4096

        def size(self):
            return 40

        def element_size(self):
            return 4

    Torch113Tensor.storage = lambda self: OlderTypedStorage()
    assert storage_span(Torch113Tensor()) == (4096, 160)


def test_a_scan_that_cannot_read_storages_flags_the_count(monkeypatch):
    import torch

    from harness.probe import live_weights
    from harness.probe.params import count_parameters

    def unreadable(tensor):
        raise RuntimeError("no storage on this torch")

    class Predictor:
        def __init__(self):
            self.model = torch.nn.Linear(8, 4)

    predictor = Predictor()
    monkeypatch.setattr(live_weights, "storage_span", unreadable)
    report = count_parameters(predictor)
    assert report.counted == 8 * 4 + 4
    assert any(flag.startswith("live-weight scan incomplete:") and "no storage on this torch" in flag
               for flag in report.flags), report.flags


# Issue 28.3: raw buffers, arrays behind untracked containers and TorchScript modules' C++ tensors
NEW_KINDS = ["BytesBlob", "ByteArrayBlob", "ArrayArray", "MmapFile", "BareStorage", "TypedStorageHeld",
             "ArraysInTuple", "ArraysInNestedDict", "ManySmallBytes", "ScriptedInCpp", "ScriptedAttribute"]


@pytest.fixture(scope="module")
def new_kind_counts():
    run = subprocess.run([sys.executable, str(FIXTURES / "params" / "count_hiding.py"), ",".join(NEW_KINDS)],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", NEW_KINDS)
def test_each_new_kind_of_holding_is_caught(new_kind_counts, name):
    report = new_kind_counts[name]
    assert report["visible"] == VISIBLE
    assert report["counted"] >= HIDDEN, report          # over the 12M limit: the row cannot pass
    assert any("outside what the predictor shows" in flag for flag in report["flags"]), report["flags"]
    assert not any("scan incomplete" in flag for flag in report["flags"]), report["flags"]


def test_a_typed_storage_counts_at_its_dtype_and_an_array_array_at_its_typecode(new_kind_counts):
    # 12.5M float32 elements, not their 50M bytes: the element size the object itself says
    assert new_kind_counts["TypedStorageHeld"]["hidden"] == HIDDEN
    assert new_kind_counts["ArrayArray"]["hidden"] == HIDDEN
    assert new_kind_counts["BareStorage"]["hidden"] == 4 * HIDDEN        # no dtype: a byte an element
    assert new_kind_counts["BytesBlob"]["hidden"] == HIDDEN + 4096
    assert new_kind_counts["Honest"]["hidden"] == 0 and new_kind_counts["Honest"]["flags"] == []


def test_memory_two_found_objects_share_counts_once():
    """An array over a bytes object, a tensor over a bare storage: one region, counted at the typed size."""
    script = textwrap.dedent("""
        import json, sys
        import numpy as np, torch
        from harness.probe.live_weights import hidden_weights
        blob = bytes(4_000_000)
        view = np.frombuffer(blob, dtype=np.float32)[:500_000]       # the first 2 MB, as 500,000 floats
        storage = torch.zeros(250_000).untyped_storage() if hasattr(torch.Tensor, "untyped_storage") else None
        tensor = torch.empty(0).set_(storage) if storage is not None else None
        found = hidden_weights([])
        print(json.dumps([found.elements, found.nbytes]))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    elements, nbytes = json.loads(run.stdout.strip().splitlines()[-1])
    # the view's root array spans the whole bytes object: 1,000,000 floats, its 4 MB not counted again as
    # bytes; the storage: 250,000 floats (the tensor's element size), its 1 MB not again as raw bytes
    assert nbytes == 4_000_000 + 1_000_000
    assert elements == 1_000_000 + 250_000


def test_small_raw_buffers_count_only_together_beyond_their_allowance():
    from harness.probe import raw_buffers

    script = textwrap.dedent("""
        import json, sys
        from harness.probe.live_weights import hidden_weights
        keep = [bytes([i % 200 + 1]) * 30_000 for i in range(int(sys.argv[1]))]
        print(json.dumps(hidden_weights([]).elements))
    """)
    few = raw_buffers.SMALL_BUFFERS_ALLOWANCE // 30_000 - 2           # under the allowance: nothing counts
    many = raw_buffers.SMALL_BUFFERS_ALLOWANCE // 30_000 + 2           # over it: every one counts
    found = []
    for n in (few, many):
        run = subprocess.run([sys.executable, "-c", script, str(n)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert run.returncode == 0, run.stderr[-2000:]
        found.append(json.loads(run.stdout.strip().splitlines()[-1]))
    assert found[0] < 1_000 and found[1] >= many * 30_000


def test_raw_buffer_memory_is_read_without_calling_team_code():
    import array
    import mmap

    from harness.probe.raw_buffers import UnreadableBuffer, raw_buffer_span

    data = bytes(range(256)) * 16
    device, address, nbytes, itemsize = raw_buffer_span(data)
    assert (device, nbytes, itemsize) == ("cpu", 4096, 1)
    assert ctypes_read(address, 4) == data[:4]                  # the bytes object's own memory
    assert raw_buffer_span(array.array("d", [1.0] * 10))[2:] == (80, 8)   # the typecode's element size

    class Sneaky(bytes):                                        # a __buffer__ of the team's (Python 3.12+)
        def __buffer__(self, flags):
            return memoryview(b"")

    with pytest.raises(UnreadableBuffer):
        raw_buffer_span(Sneaky(b"x" * 100))
    closed = mmap.mmap(-1, 4096)
    closed.close()
    assert raw_buffer_span(closed)[2] == 0                      # a closed map spans nothing


def ctypes_read(address, n):
    import ctypes

    return ctypes.string_at(address, n)


def test_a_bytes_literal_compiled_into_a_function_is_found():
    """Weights written into the source as a bytes literal live in a code object's constants, which the
    collector does not track: the scan reads them there (2 MiB: over the 1 MiB a raw buffer counts from)."""
    script = textwrap.dedent("""
        import json
        from harness.probe.live_weights import hidden_weights
        namespace = {}
        exec(compile("def weights():\\n    return " + repr(bytes(range(256)) * 8192), "team.py", "exec"), namespace)
        keep = namespace["weights"]
        del namespace
        print(json.dumps(hidden_weights([]).elements))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) >= 256 * 8192
