"""The worker finds the live ONNX Runtime sessions of its process and reads their providers (issue 27: on an
H200 the ONNX team ran on CPU providers and no row said so). Real sessions on CPU, built from a tiny model
made here with onnx.helper; fake session classes for what a hostile team's code could answer."""

import gc
import sys

import pytest

from harness.probe import onnx_sessions
from harness.probe.onnx_sessions import (MAX_PROVIDER_CHARS, MAX_PROVIDERS, MAX_SESSIONS, live_sessions,
                                         session_providers)

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def relu_model() -> bytes:
    """y = Relu(x) on a [1, 2] float tensor: the smallest graph ONNX Runtime runs."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8                     # loadable by onnxruntime 1.18 (the offline image) too
    return model.SerializeToString()


def cpu_session():
    return ort.InferenceSession(relu_model(), providers=["CPUExecutionProvider"])


def seen(session, sessions) -> int:
    """How many of `sessions` are this session (its wrapper or its C++ half)."""
    native = session._sess
    return sum(1 for s in sessions if s is native or s is session)


class Holder:
    pass


def test_a_cpu_session_reports_the_cpu_provider_once_for_its_wrapper_and_its_native_half():
    session = cpu_session()
    sessions = live_sessions()
    assert seen(session, sessions) == 1                 # the wrapper and its _sess are one session
    assert any(s is session._sess for s in sessions)     # read from the C++ half
    found, notes = session_providers([session._sess])
    assert found == [{"providers": ["CPUExecutionProvider"]}] and notes == []


def test_the_whole_process_report_lists_the_new_session():
    before, _ = session_providers()
    session = cpu_session()
    after, notes = session_providers()
    assert len(after) == len(before) + 1 and notes == []
    assert after.count({"providers": ["CPUExecutionProvider"]}) == before.count(
        {"providers": ["CPUExecutionProvider"]}) + 1
    del session


def test_a_dropped_session_in_a_reference_cycle_is_not_live():
    session = cpu_session()
    native = id(session._sess)
    cycle = Holder()
    cycle.me, cycle.session = cycle, session
    del session, cycle                                   # garbage, not yet collected
    assert all(id(s) != native for s in live_sessions())


def test_only_the_native_half_kept_in_a_list_is_still_seen():
    session = cpu_session()
    holder = Holder()
    holder.keep = [session._sess]
    native = session._sess
    del session
    gc.collect()
    sessions = live_sessions()
    assert sum(1 for s in sessions if s is native) == 1
    assert session_providers([native])[0] == [{"providers": ["CPUExecutionProvider"]}]
    del holder, native


def test_a_native_half_kept_only_in_an_untracked_tuple_is_not_seen_as_the_docstring_says():
    # what the module cannot see: the collector untracks a tuple of untracked objects and never visits it
    session = cpu_session()
    holder = Holder()
    holder.keep = (session._sess,)
    native_id = id(session._sess)
    del session
    gc.collect()
    assert not gc.is_tracked(holder.keep)
    assert all(id(s) != native_id for s in live_sessions())
    del holder


def test_nothing_is_looked_for_when_onnxruntime_was_never_imported(monkeypatch):
    session = cpu_session()
    monkeypatch.delitem(sys.modules, "onnxruntime")
    assert live_sessions() == [] and session_providers() == ([], [])
    del session


@pytest.fixture(autouse=True)
def no_session_outlives_its_test():
    """Sessions (fakes included) left in reference cycles are collected: later tests in this process look
    for live sessions too (params' process-wide scan), and a raised exception ties a fake to its frame."""
    yield
    gc.collect()


class FakeSession:
    """Stands in for a session whose get_providers() the team's code patched; an exception class as the
    answer is raised (made here, so that no exception kept by pytest's parameters holds a fake alive)."""

    def __init__(self, answer):
        self.answer = answer

    def get_providers(self):
        if isinstance(self.answer, type):
            raise self.answer("patched")
        return self.answer


FakeSession.__module__ = "onnxruntime.capi.fake"


def test_a_fake_session_class_is_found_by_its_module_and_name():
    fake = FakeSession(["CUDAExecutionProvider"])
    assert any(s is fake for s in live_sessions())


@pytest.mark.parametrize("answer", [RuntimeError, "CPUExecutionProvider", [1, 2], None, {"a": 1}])
def test_providers_that_cannot_be_read_are_left_out_and_said(answer):
    found, notes = session_providers([FakeSession(answer), FakeSession(["CPUExecutionProvider"])])
    assert found == [{"providers": ["CPUExecutionProvider"]}]
    assert len(notes) == 1 and notes[0].startswith("the execution providers of 1 ONNX Runtime session(s) could not")


def test_long_lists_long_names_and_lone_surrogates_are_bounded_before_the_host_sees_them():
    answer = ["\ud800CPU", "x" * 10_000] + ["CPUExecutionProvider"] * 100
    found, notes = session_providers([FakeSession(answer)] * (MAX_SESSIONS + 5))
    assert len(found) == MAX_SESSIONS and notes == [
        f"5 ONNX Runtime session(s) past the first {MAX_SESSIONS} are not listed with their providers"]
    providers = found[0]["providers"]
    assert len(providers) == MAX_PROVIDERS and providers[0] == "\\ud800CPU"
    assert len(providers[1]) == MAX_PROVIDER_CHARS
    for name in providers:
        name.encode("utf-8")                              # raises on a lone surrogate


def test_the_module_imports_no_torch_so_that_the_host_can_read_its_limits():
    import subprocess

    code = "import sys, harness.probe.onnx_sessions; print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert onnx_sessions.MAX_SESSIONS == MAX_SESSIONS
