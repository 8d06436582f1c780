"""The worker: the protocol over a socketpair with a fixture team, its errors as replies, pinned precision."""

import socket
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("torch")

from harness.probe import channel  # noqa: E402
from harness.probe.worker import WorkerError, read_precision, serve, set_precision  # noqa: E402

TEAMS = Path(__file__).resolve().parents[1] / "fixtures" / "teams"


@pytest.fixture
def worker(monkeypatch):
    # a real worker serves one team per process; here the teams share this process's module cache
    for name in ("predictor", "answers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))          # load puts team folders on it
    host, inside = socket.socketpair()
    thread = threading.Thread(target=serve, args=(inside,), daemon=True)
    thread.start()
    hello = channel.recv(host)
    assert hello["protocol"] == channel.PROTOCOL_VERSION
    yield host
    host.close()


def ask(sock, **request):
    nonce = channel.send_request(sock, request)
    reply = channel.recv(sock)
    assert reply.pop("nonce") == nonce.hex()          # every reply echoes its request's nonce
    return reply


def test_load_predict_params_and_stop(worker):
    loaded = ask(worker, op="load", task="csl", device="cpu", options={}, seed=1, precision="free", threads=1,
                 team_dir=str(TEAMS / "ok_team"), predictor="predictor:Predictor")
    assert loaded["ok"] and loaded["environment"]["device"] == "cpu"
    reply = ask(worker, op="predict", batch=[{"id": 3, "abst": "摘要", "keyword": ["词"]}])
    assert reply == {"ok": True, "predictions": [{"id": 3, "label": "0"}]}
    params = ask(worker, op="params")["report"]
    assert params["counted"] == 40 and params["dtypes"] == ["float32"]
    assert ask(worker, op="stop") == {"ok": True}


def test_prepare_drops_the_model_and_imports_libraries_before_any_team_code(worker):
    ask(worker, op="load", task="csl", device="cpu", options={}, seed=1, precision="free", threads=1,
        team_dir=str(TEAMS / "ok_team"), predictor="predictor:Predictor")
    reply = ask(worker, op="prepare", device="cpu")
    assert reply["ok"] and {"numpy", "torch"} <= set(reply["imported"])
    assert "params before load" in ask(worker, op="params")["error"]      # the last task's model is gone


def test_failures_are_replies_never_a_crash(worker):
    assert "predict before load" in ask(worker, op="predict", batch=[])["error"]
    assert "unknown request 'rm -rf'" in ask(worker, op="rm -rf")["error"]
    missing = ask(worker, op="load", task="csl", device="cpu", team_dir=str(TEAMS / "missing_class_team"),
                  predictor="predictor:Nope")
    assert not missing["ok"] and "has no class 'Nope'" in missing["error"]
    sys.modules.pop("predictor", None)
    ask(worker, op="load", task="csl", device="cpu", team_dir=str(TEAMS / "mixed_team"), predictor="predictor:Predictor")
    assert ask(worker, op="predict", batch=[{"id": 0}])["error"] == "ValueError: boom in csl"
    assert ask(worker, op="precision")["ok"]                  # still serving


def test_fp32_strict_turns_every_tf32_switch_off():
    set_precision("fp32-strict")
    state = read_precision()
    assert state["matmul_allow_tf32"] is False and state["cudnn_allow_tf32"] is False
    assert state["float32_matmul_precision"] == "highest"
    assert all(v == "ieee" for k, v in state.items() if k.endswith("fp32_precision"))
    with pytest.raises(WorkerError, match="unknown precision"):
        set_precision("tf32")


def test_prepare_runs_onnx_runtime_once_on_a_model_whose_every_output_is_an_eighth():
    """The warm-up model's rows are constant, so LayerNormalization makes zeros and Softmax over 8 gives 1/8
    each (worked out by hand); without onnxruntime imported it does nothing."""
    import subprocess
    import sys

    code = ("import sys; from harness.probe.onnx_warmup import warm_session; "
            "print(warm_session('cpu'), 'onnxruntime' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "False"]
    pytest.importorskip("onnxruntime")
    from harness.probe.onnx_warmup import warm_session

    out = warm_session("cpu")
    assert len(out) == 1 and len(out[0]) == 4 and all(v == pytest.approx(0.125) for row in out[0] for v in row)


def test_a_warm_up_that_cannot_run_is_a_note_for_the_row_not_a_failed_prepare(monkeypatch):
    from harness.probe import onnx_warmup, worker

    def broken(device):
        raise RuntimeError("opset 17 unsupported")

    monkeypatch.setattr(onnx_warmup, "warm_session", broken)
    reply = worker.Worker().prepare({"device": "cpu"})
    assert "ONNX Runtime's first session could not run" in reply["baseline_note"]
    assert "opset 17 unsupported" in reply["baseline_note"]


ONNX_TEAM = '''
import onnxruntime
from onnx import TensorProto, helper


class Predictor:
    """A session built from a Relu graph made here, on the CPU provider."""

    def __init__(self, task, device):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        self.session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def predict(self, examples):
        return [{"id": e["id"], "label": "0"} for e in examples]
'''


def test_params_reports_the_providers_of_the_teams_onnx_runtime_session(worker, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from harness.probe.onnx_sessions import session_providers

    (tmp_path / "onnx_session_predictor.py").write_text(ONNX_TEAM, encoding="utf-8")
    monkeypatch.delitem(sys.modules, "onnx_session_predictor", raising=False)
    before = session_providers()[0].count({"providers": ["CPUExecutionProvider"]})
    loaded = ask(worker, op="load", task="csl", device="cpu", options={}, seed=1, precision="free", threads=1,
                 team_dir=str(tmp_path), predictor="onnx_session_predictor:Predictor")
    assert loaded["ok"], loaded
    report = ask(worker, op="params")["report"]
    assert report["onnx_sessions"].count({"providers": ["CPUExecutionProvider"]}) == before + 1
    reference_side = ask(worker, op="params", scan_process=False)["report"]
    assert "onnx_sessions" not in reference_side          # not looked for where no team code runs
    assert ask(worker, op="prepare", device="cpu")["ok"]  # drops the team's session: none outlives this test
    assert session_providers()[0].count({"providers": ["CPUExecutionProvider"]}) == before


def test_prepares_own_warm_up_session_is_gone_before_the_team_loads():
    pytest.importorskip("onnxruntime")
    from harness.probe import worker
    from harness.probe.onnx_sessions import session_providers

    before = session_providers()[0]
    worker.Worker().prepare({"device": "cpu"})
    assert session_providers()[0] == before
