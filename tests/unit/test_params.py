"""count_parameters: unique weights, tied and shared layers once, hidden weights counted and flagged.

Every expected number is worked out by hand in a comment beside it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.probe.params import (ONNX_MISSING, ParamReport, count_onnx_initializers, count_parameters)


class Holder:
    """A plain Python object, the way team code often keeps its pieces."""

    def __init__(self, **attributes):
        self.__dict__.update(attributes)


# --- tied and shared weights ---------------------------------------------------------------------------

class TinyLM(nn.Module):
    def __init__(self, tie: str | None):
        super().__init__()
        self.embed = nn.Embedding(100, 8)            # 100*8 = 800
        self.norm = nn.LayerNorm(8)                  # 8 weight + 8 bias = 16
        self.head = nn.Linear(8, 100, bias=False)    # 8*100 = 800 unless tied
        if tie == "same":
            self.head.weight = self.embed.weight
        elif tie == "view":  # a distinct Parameter object over the same memory
            self.head.weight = nn.Parameter(self.embed.weight.data)


@pytest.mark.parametrize("tie", ["same", "view"])
def test_tied_input_output_embeddings_count_once(tie):
    report = count_parameters(Holder(model=TinyLM(tie)))
    assert report.params == 816          # 800 embedding (= head) + 16 LayerNorm
    assert report.counted == 816
    assert report.n_modules == 1
    assert report.flags == ()


def test_untied_embeddings_count_twice():
    report = count_parameters(Holder(model=TinyLM(None)))
    assert report.params == 1616         # 800 embedding + 800 head + 16 LayerNorm


def test_albert_style_shared_layer_counts_once():
    class SharedEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.Linear(16, 16)                          # 16*16 + 16 = 272
            self.layers = nn.ModuleList([layer] * 12)          # the same layer, used 12 times

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    report = count_parameters(SharedEncoder())
    assert report.params == 272          # not 12 * 272 = 3264
    assert report.counted == 272
    assert report.sources == ("predictor (SharedEncoder)",)


# --- weights outside the parameter registry --------------------------------------------------------------

def test_plain_tensor_attribute_is_counted_and_flagged():
    predictor = Holder(model=nn.Linear(4, 2),                 # 4*2 + 2 = 10
                       w=torch.randn(30, 20))                 # 30*20 = 600, a weight matrix in disguise
    report = count_parameters(predictor)
    assert report.params == 10
    assert report.plain_tensors == 600
    assert report.unregistered_weights == 600
    assert report.counted == 610         # 10 + 600
    assert report.flags == (
        "600 weights in plain tensors outside the nn.Module parameter registry (attribute predictor.w): "
        "counted towards the limit",)


def test_unregistered_tensor_inside_a_module_and_numpy_array_are_counted():
    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(2, 2)                       # 2*2 + 2 = 6
            self.table = torch.randn(5, 6)                    # plain attribute, not a buffer: 30

    predictor = Holder(model=Sneaky(), lookup=np.ones((10, 10), dtype=np.float32))   # 100
    report = count_parameters(predictor)
    assert report.params == 6
    assert report.unregistered_weights == 130                 # 30 + 100
    assert report.counted == 136                              # 6 + 130
    assert len(report.flags) == 2
    assert "predictor.model.table" in report.flags[0] and "predictor.lookup" in report.flags[1]


def test_views_of_parameters_held_as_plain_attributes_are_not_counted_again():
    model = nn.Linear(10, 10)                                 # 10*10 + 10 = 110
    predictor = Holder(model=model, weight_view=model.weight.detach(),   # same memory as model.weight
                       rows=model.weight.detach()[2:5],                  # a slice of it
                       as_numpy=model.weight.detach().numpy())           # numpy over the same memory
    report = count_parameters(predictor)
    assert report.params == 110
    assert report.plain_tensors == 0
    assert report.counted == 110
    assert report.flags == ()


def test_two_dimensional_float_buffer_is_counted_and_flagged():
    model = nn.Linear(4, 2)                                   # 10
    model.register_buffer("table", torch.randn(3, 5))         # 15
    report = count_parameters(Holder(model=model))
    assert report.params == 10
    assert report.buffers == 15
    assert report.unregistered_weights == 15
    assert report.counted == 25                               # 10 + 15
    assert len(report.flags) == 1
    assert "15 weights in a buffer" in report.flags[0] and "predictor.model.table" in report.flags[0]


def test_int_buffer_and_one_dimensional_float_buffers_are_reported_not_counted():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))   # 4*4 + 4 = 20; BatchNorm 4 + 4 = 8
    model.register_buffer("position_ids", torch.arange(512).expand((1, -1)))           # 512 int64
    report = count_parameters(model)
    assert report.params == 28                                  # 20 + 8
    # 512 position ids + running_mean 4 + running_var 4 + num_batches_tracked 1
    assert report.buffers == 521
    assert report.unregistered_weights == 0
    assert report.counted == 28
    assert report.flags == ()


def test_large_uncounted_int_tensor_is_flagged_for_a_look_but_not_counted():
    predictor = Holder(model=nn.Linear(1, 1), ids=torch.zeros(1000, 200, dtype=torch.long))  # 2 + 0
    report = count_parameters(predictor)
    assert report.counted == 2
    assert report.plain_tensors == 200_000
    assert len(report.flags) == 1 and "200,000 elements (int64, 2-D)" in report.flags[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_quantized_packed_weights_are_counted():
    quantize = getattr(getattr(torch, "ao", None), "quantization", None)
    if quantize is None or not hasattr(quantize, "quantize_dynamic"):
        pytest.skip("this torch has no eager-mode dynamic quantization")
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 8))
    quantized = quantize.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    report = count_parameters(quantized)
    assert sum(p.numel() for p in quantized.parameters()) == 40   # what parameters() alone would say
    assert report.params == 80           # embedding 10*4 = 40 + int8 weight 4*8 = 32 + bias 8


# --- where modules are found ----------------------------------------------------------------------------

def test_parameter_sources_win_over_discovery():
    class Predictor:
        def __init__(self):
            self.teacher = nn.Linear(100, 100)                # 10,100: held, but not the model
            self.student = nn.Linear(3, 2)                    # 3*2 + 2 = 8

        def parameter_sources(self):
            return [self.student]

    report = count_parameters(Predictor())
    assert report.params == 8
    assert report.n_modules == 1
    assert report.sources == ("parameter_sources()[0] (Linear)",)


def test_parameter_sources_cannot_hide_plain_tensors():
    class Predictor:
        def __init__(self):
            self.student = nn.Linear(3, 2)                    # 8
            self.w = torch.randn(5, 5)                        # 25

        def parameter_sources(self):
            return [self.student]

    report = count_parameters(Predictor())
    assert report.counted == 33                               # 8 + 25
    assert report.unregistered_weights == 25


def test_modules_nested_in_dicts_lists_and_plain_objects_are_found():
    shared = nn.Linear(3, 1)                                  # 3 + 1 = 4
    predictor = Holder(models=[nn.Linear(2, 3)],              # 2*3 + 3 = 9
                       config={"heads": {"a": shared}},       # 4
                       parts=Holder(encoder=Holder(layer=nn.Linear(4, 4))),   # 16 + 4 = 20
                       pair=(shared, shared),                 # the same head again: 0
                       whole=nn.Sequential(shared, nn.ReLU()))   # contains the head: 0
    predictor.myself = predictor                              # a cycle must not loop
    report = count_parameters(predictor)
    assert report.params == 33                                # 9 + 4 + 20
    assert report.n_modules == 3                              # list item, Sequential (holds the head), layer
    assert "predictor.parts.encoder.layer (Linear)" in report.sources


def test_an_object_that_raises_when_inspected_does_not_stop_the_count():
    class Hostile:
        def __getattribute__(self, name):
            raise RuntimeError("no peeking")

    report = count_parameters(Holder(hostile=Hostile(), model=nn.Linear(2, 2)))   # 6
    assert report.params == 6
    assert any("predictor.hostile" in note for note in report.notes)


def test_nothing_found_is_flagged():
    report = count_parameters(Holder(name="rules only"))
    assert report.counted == 0
    assert report.flags and "parameter_sources()" in report.flags[0]


# --- files ----------------------------------------------------------------------------------------------

def test_model_file_bytes_counts_weight_like_files(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.bin").write_bytes(b"\0" * 1234)
    (tmp_path / "ckpt.PT").write_bytes(b"\0" * 10)            # suffixes match case-insensitively
    (tmp_path / "vocab.txt").write_text("x" * 50)             # not a weight file
    report = count_parameters(Holder(model=nn.Linear(1, 1)), team_dir=tmp_path)
    assert report.model_file_bytes == 1244                    # 1234 + 10


def _write_onnx_with_duplicate(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)
    initializers = [
        numpy_helper.from_array(weight, "w"),                                   # 12, raw_data
        helper.make_tensor("w_copy", TensorProto.FLOAT, [4, 3],                 # same content, typed field
                           weight.flatten().tolist(), raw=False),              # duplicate: 0
        numpy_helper.from_array(weight.T.copy(), "w_t"),                        # its transpose: 0
        numpy_helper.from_array(weight + 1, "w_other"),                         # same dims, other values: 12
        numpy_helper.from_array(np.ones(3, dtype=np.float32), "bias"),          # 3
    ]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h1"]),
             helper.make_node("MatMul", ["x", "w_copy"], ["h2"]),
             helper.make_node("MatMul", ["x", "w_other"], ["h3"]),
             helper.make_node("MatMul", ["w_t", "w_other"], ["t"]),
             helper.make_node("Add", ["h1", "bias"], ["y"])]
    graph = helper.make_graph(
        nodes, "dup", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("y", "h2", "h3")]
        + [helper.make_tensor_value_info("t", TensorProto.FLOAT, [3, 3])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8                                      # loadable by onnxruntime releases too
    onnx.save(model, str(path))


def test_onnx_duplicated_initializer_counts_once(tmp_path):
    path = tmp_path / "model.onnx"
    _write_onnx_with_duplicate(path)
    single = count_onnx_initializers(path)
    assert (single.params, single.initializers, single.duplicates_dropped) == (27, 5, 2)   # 12 + 12 + 3

    class Predictor:
        def parameter_sources(self):
            return ["model.onnx"]                             # relative to the team directory

    report = count_parameters(Predictor(), team_dir=tmp_path)
    assert report.onnx_params == 27
    assert report.onnx_duplicates_dropped == 2                # the typed-field copy and the transpose
    assert report.counted == 27
    assert report.onnx_files == (str(path),)


def test_counted_bytes_are_what_the_counted_tensors_hold_at_their_dtype(tmp_path):
    """explained_bytes on the host rests on counted_cpu_bytes: an fp16 or int8 tensor holds 2 or 1 bytes an
    element, not the 4 a lenient reading would give it (room for weights the count never saw)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    initializers = [numpy_helper.from_array(np.ones((4, 3), dtype=np.float16), "half"),      # 12 x 2 = 24
                    numpy_helper.from_array(np.arange(5, dtype=np.int8), "quantized"),      # 5 x 1 = 5
                    numpy_helper.from_array(np.ones(3, dtype=np.float32), "bias")]          # 3 x 4 = 12
    graph = helper.make_graph([helper.make_node("Identity", ["bias"], ["y"])], "bytes", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "model.onnx"))
    assert count_onnx_initializers(tmp_path / "model.onnx").nbytes == 41

    class Predictor:
        def __init__(self):
            self.embed = nn.Embedding(10, 4).half()                       # 40 x 2 = 80

        def parameter_sources(self):
            return [self.embed, "model.onnx"]

    report = count_parameters(Predictor(), team_dir=tmp_path, scan_process=False)
    assert report.counted == 40 + 20
    assert report.counted_cpu_bytes == 80 + 41


@pytest.mark.filterwarnings("ignore")
def test_torch_onnx_export_of_tied_embeddings_counts_the_tied_weight_once(tmp_path):
    pytest.importorskip("onnx")

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = TinyLM("same")

        def forward(self, ids):
            return self.lm.head(self.lm.norm(self.lm.embed(ids)))

    path = tmp_path / "tied.onnx"
    # constant folding writes the head as a transposed copy of the embedding, a second initializer
    torch.onnx.export(Logits().eval(), (torch.zeros(1, 5, dtype=torch.long),), str(path), dynamo=False)
    counted = count_onnx_initializers(path)
    assert counted.params == 816                              # 800 tied embedding + 16 LayerNorm, as in torch
    assert counted.duplicates_dropped == 1


def test_onnx_files_in_team_dir_are_counted_when_nothing_else_is_found(tmp_path):
    _write_onnx_with_duplicate(tmp_path / "exported.onnx")
    report = count_parameters(Holder(session_options={"threads": 1}), team_dir=tmp_path)
    assert report.counted == 27
    assert any("conservative" in note for note in report.notes)


def test_malformed_onnx_file_is_a_flag_not_a_crash(tmp_path):
    pytest.importorskip("onnx")
    (tmp_path / "broken.onnx").write_bytes(b"this is not a protobuf \xff\xfe" * 10)

    class Predictor:
        def parameter_sources(self):
            return [nn.Linear(2, 1), tmp_path / "broken.onnx"]   # 2 + 1 = 3

    report = count_parameters(Predictor())
    assert report.counted == 3
    assert report.onnx_files == ()
    assert any("broken.onnx" in flag and "could not be read" in flag for flag in report.flags)


def test_missing_onnx_package_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "model.onnx").write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, "onnx", None)             # import onnx now raises ImportError
    monkeypatch.setitem(sys.modules, "onnx.numpy_helper", None)
    with pytest.raises(ImportError, match=r"pip install lightlm-harness\[onnx\]"):
        count_parameters(Holder(), team_dir=tmp_path)
    assert "install onnx" in ONNX_MISSING


# --- the report -----------------------------------------------------------------------------------------

def test_report_is_frozen_and_json_ready():
    report = count_parameters(Holder(model=nn.Linear(2, 2), w=torch.randn(2, 2)))   # 6 + 4
    with pytest.raises(AttributeError):
        report.counted = 0
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) == set(ParamReport.__dataclass_fields__)
    assert data["counted"] == 10 and isinstance(data["flags"], list) and len(data["flags"]) == 1


def test_onnxruntime_session_on_the_predictor_is_counted_from_its_file(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    _write_onnx_with_duplicate(tmp_path / "model.onnx")
    (tmp_path / "stale.onnx").write_bytes(b"an old export the predictor does not use")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    report = count_parameters(Holder(session=session), team_dir=tmp_path)
    assert report.counted == 27                               # model.onnx only: 12 + 12 + 3
    assert report.onnx_files == (str(tmp_path / "model.onnx"),)
    assert report.flags == ()


def test_a_session_built_from_bytes_on_the_predictor_is_flagged_once(tmp_path):
    # its weights cannot be located; the walk flags it, and the process-wide look at live sessions knows
    # it is the predictor's own rather than one held elsewhere
    ort = pytest.importorskip("onnxruntime")
    _write_onnx_with_duplicate(tmp_path / "model.onnx")
    session = ort.InferenceSession((tmp_path / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    report = count_parameters(Holder(session=session), team_dir=None)
    assert [f for f in report.flags if "built from bytes" in f] == [
        "ONNX Runtime session predictor.session was built from bytes, so its weights cannot be located: "
        "list the ONNX file in parameter_sources()"]


def test_the_reference_count_without_process_scans_says_so_and_counts_what_the_predictor_shows():
    class WithHiddenGlobal:
        def __init__(self):
            self.head = nn.Linear(16, 2)                       # 16 * 2 + 2 = 34 parameters in view

    hidden = nn.Embedding(2_000, 1_000)                        # 2,000,000 parameters in this test's frame only
    report = count_parameters(WithHiddenGlobal(), scan_process=False)
    assert (report.counted, report.hidden_weights) == (34, 0)
    assert any("process-wide scans not run" in note for note in report.notes)
    del hidden
