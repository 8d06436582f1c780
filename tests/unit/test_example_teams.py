"""The example finalists under baselines/: parameter counts against figures worked out by hand, and valid
predictions for all four tasks on the fixture data.

Each hand figure is written out term by term (embeddings, per-layer attention / FFN / LayerNorms, pooler,
head), independently of transformers, and then compared with the harness's count (harness.probe.params)
and with transformers' num_parameters(). The harness also counts weights alive anywhere in the worker
process, so each count is taken while the predictor is the only model alive, and models built for
comparison are built after it.
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow       # real 4-7M-parameter models and ONNX exports: seconds each

from harness.probe.params import count_parameters  # noqa: E402
from harness.tasks import get_task  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BASELINES = REPO / "baselines"
DATA = REPO / "tests" / "fixtures" / "data"
GOLD_FILES = {"cluewsc2020": "cluewsc2020/dev.json", "csl": "csl/dev.json",
              "cluener2020": "cluener2020/dev.json", "cmrc2018": "cmrc2018/trial.json"}
TASKS = tuple(GOLD_FILES)
MAX_EXAMPLES = 3


# --- hand-worked figures ---------------------------------------------------------------------------------

def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def layer_norm(width: int) -> int:
    return 2 * width


def transformer_layer(hidden: int, ffn: int) -> int:
    """Q, K, V and output projections, LayerNorm, FFN in and out, LayerNorm (BERT's and ALBERT's layer)."""
    return 4 * linear(hidden, hidden) + layer_norm(hidden) + linear(hidden, ffn) + linear(ffn, hidden) \
        + layer_norm(hidden)


def heads(hidden: int) -> dict[str, int]:
    """Task head parameters, and whether the task's model keeps the pooler (only sequence classification)."""
    return {"cluewsc2020": linear(hidden, 2), "csl": linear(hidden, 2), "cluener2020": linear(hidden, 21),
            "cmrc2018": linear(hidden, 2)}


POOLED = {"cluewsc2020": True, "csl": True, "cluener2020": False, "cmrc2018": False}

# RoBERTa-tiny-CLUE: 8,021 x 312 words, 512 positions, 2 token types, LayerNorm; 4 layers of 312 / 1,248.
ROBERTA_EMBEDDINGS = 8021 * 312 + 512 * 312 + 2 * 312 + layer_norm(312)           # 2,663,544
ROBERTA_LAYER = transformer_layer(312, 1248)                                       # 1,172,184
POOLER_312 = linear(312, 312)                                                      # 97,656
ROBERTA_ENCODER = ROBERTA_EMBEDDINGS + 4 * ROBERTA_LAYER + POOLER_312
# ALBERT-tiny: 21,128 x 128 factorized embeddings, projection to 312, ONE layer used 4 times.
ALBERT_EMBEDDINGS = 21128 * 128 + 512 * 128 + 2 * 128 + layer_norm(128)            # 2,770,432
ALBERT_ENCODER = ALBERT_EMBEDDINGS + linear(128, 312) + transformer_layer(312, 1248) + POOLER_312
# TinyBERT-4 size (the ONNX team): RoBERTa-tiny's embeddings, 4 layers of 312 / 1,200.
TINYBERT_ENCODER = ROBERTA_EMBEDDINGS + 4 * transformer_layer(312, 1200) + POOLER_312


def with_head(encoder: int, task: str) -> int:
    return encoder - (0 if POOLED[task] else POOLER_312) + heads(312)[task]


def test_hand_figures_are_the_published_ones():
    assert ROBERTA_ENCODER == 7_449_936          # the figure in the issue, transformers' own count
    assert ALBERT_ENCODER == 4_080_520
    assert TINYBERT_ENCODER == 7_329_936


# --- loading a team as the probe does ---------------------------------------------------------------------

def import_predictor_module(team_dir: Path):
    """The team's predictor module with the team folder on sys.path, and none of its modules left behind:
    every team has its own `predictor` and `task_inputs`."""
    for name in ("predictor", "task_inputs", "export_onnx"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(team_dir))
    try:
        return importlib.import_module("predictor")
    finally:
        sys.path.remove(str(team_dir))
        for name in ("predictor", "task_inputs", "export_onnx"):
            sys.modules.pop(name, None)


def fixture_inputs(task: str) -> list[dict]:
    spec = get_task(task)
    return spec.strip_labels(spec.read_gold(DATA / GOLD_FILES[task]))[:MAX_EXAMPLES]


def assert_valid(task: str, examples: list[dict], predictions: list[dict]) -> None:
    spec = get_task(task)
    assert len(predictions) == len(examples)
    assert [p["id"] for p in predictions] == [e["id"] for e in examples]
    assert [spec.check_prediction(p) for p in predictions] == [None] * len(predictions)
    if task == "cmrc2018":
        assert all(p["answer"] in e["context"] for e, p in zip(examples, predictions))
    if task == "cluener2020":
        for e, p in zip(examples, predictions):
            for entities in p["label"].values():
                for text, spans in entities.items():
                    assert all(e["text"][a:b + 1] == text for a, b in spans)


def count_alone(predictor) -> int:
    """The harness's count with the predictor as the only model alive; nothing may be flagged."""
    gc.collect()
    report = count_parameters(predictor)
    assert report.flags == ()
    assert report.hidden_weights == 0
    return report.counted


# --- the torch teams --------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_roberta_tiny_team_counts_and_predicts(task):
    module = import_predictor_module(BASELINES / "roberta_tiny_team")
    predictor = module.Predictor(task, "cpu")
    assert count_alone(predictor) == with_head(ROBERTA_ENCODER, task) == predictor.model.num_parameters()
    examples = fixture_inputs(task)
    assert_valid(task, examples, predictor.predict(examples))


def test_roberta_tiny_encoder_is_7449936_by_transformers_count():
    from transformers import BertConfig, BertModel

    config = BertConfig.from_json_file(str(BASELINES / "roberta_tiny_team" / "config.json"))
    assert BertModel(config).num_parameters() == ROBERTA_ENCODER == 7_449_936


def test_roberta_tiny_vocabulary_is_8021_tokens_and_reproducible(tmp_path):
    team = BASELINES / "roberta_tiny_team"
    sys.path.insert(0, str(team))
    try:
        make_vocab = importlib.import_module("make_vocab")
    finally:
        sys.path.remove(str(team))
        sys.modules.pop("make_vocab", None)
    tokens = make_vocab.cut_vocabulary(make_vocab.read_tokens(make_vocab.SOURCE),
                                       make_vocab.sample_characters(make_vocab.SAMPLES))
    assert tokens == make_vocab.read_tokens(team / "vocab.txt")
    assert len(tokens) == len(set(tokens)) == 8021 and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (BASELINES / "onnx_team" / "vocab.txt").read_bytes() == (team / "vocab.txt").read_bytes()


@pytest.mark.parametrize("task", TASKS)
def test_albert_team_counts_the_shared_layer_once(task):
    module = import_predictor_module(BASELINES / "albert_tiny_team")
    predictor = module.Predictor(task, "cpu")
    counted = count_alone(predictor)
    assert counted == with_head(ALBERT_ENCODER, task) == predictor.model.num_parameters()
    # four layers deep, one layer's weights: a per-use count would add three more copies of it
    assert predictor.model.config.num_hidden_layers == 4
    layer = sum(p.numel() for name, p in predictor.model.named_parameters() if ".albert_layers." in name)
    assert layer == transformer_layer(312, 1248) == 1_172_184
    examples = fixture_inputs(task)
    assert_valid(task, examples, predictor.predict(examples))


# --- the ONNX team ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """The four ONNX models, exported once as setup.sh does (a few seconds per task on CPU)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    team = BASELINES / "onnx_team"
    out = tmp_path_factory.mktemp("onnx_models")
    sys.path.insert(0, str(team))
    try:
        export_onnx = importlib.import_module("export_onnx")
        for task in TASKS:
            export_onnx.export(task, out / f"{task}.onnx")
    finally:
        sys.path.remove(str(team))
        sys.modules.pop("export_onnx", None)
    gc.collect()
    return out


@pytest.mark.parametrize("task", TASKS)
def test_onnx_team_counts_initializers_like_its_torch_model_and_predicts(task, onnx_models):
    module = import_predictor_module(BASELINES / "onnx_team")
    predictor = module.Predictor(task, "cpu", models_dir=onnx_models)
    assert predictor.provider == "CPUExecutionProvider"
    report = count_parameters(predictor)
    assert report.onnx_files == (str(onnx_models / f"{task}.onnx"),) and report.flags == ()
    assert report.counted == report.onnx_params == with_head(TINYBERT_ENCODER, task)
    examples = fixture_inputs(task)
    assert_valid(task, examples, predictor.predict(examples))
    batch, _ = predictor.encode(examples)
    feed = {name: batch[name].astype("int64") for name in ("input_ids", "attention_mask", "token_type_ids")}
    onnx_out = predictor.session.run(None, {**feed, "position_ids": _positions(feed["input_ids"])})
    del predictor
    sys.path.insert(0, str(BASELINES / "onnx_team"))
    try:
        torch_model = importlib.import_module("export_onnx").build_model(task)
    finally:
        sys.path.remove(str(BASELINES / "onnx_team"))
        sys.modules.pop("export_onnx", None)
    assert torch_model.num_parameters() == report.onnx_params
    # the exported graph computes what the torch model computes, at the task's real (padded) length
    with torch.inference_mode():
        out = torch_model(**{name: torch.from_numpy(value) for name, value in feed.items()})
    expected = [out.start_logits, out.end_logits] if task == "cmrc2018" else [out.logits]
    for got, want in zip(onnx_out, expected):
        assert torch.allclose(torch.from_numpy(got), want, atol=1e-4)


def _positions(ids):
    import numpy as np

    return np.ascontiguousarray(np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape))


@pytest.mark.parametrize("device, available, wanted", [
    ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"],
     [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]),
    ("cuda:1", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]),
    ("cuda", ["AzureExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
    ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
])
def test_onnx_team_asks_for_cuda_first_on_a_gpu_when_onnxruntime_offers_it(device, available, wanted, monkeypatch):
    pytest.importorskip("onnxruntime")
    module = import_predictor_module(BASELINES / "onnx_team")
    monkeypatch.setattr(module.ort, "get_available_providers", lambda: available)
    assert module.choose_providers(device) == wanted


def test_onnx_team_says_when_a_cuda_device_runs_on_the_cpu_all_the_same(onnx_models, capsys):
    # this onnxruntime (CPU) offers no CUDA provider: the session falls back, and the log says so
    module = import_predictor_module(BASELINES / "onnx_team")
    if "CUDAExecutionProvider" in module.ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA: no fallback to see")
    predictor = module.Predictor("csl", "cuda", models_dir=onnx_models)
    assert predictor.provider == "CPUExecutionProvider"
    assert "WARNING device cuda but ONNX Runtime runs on CPUExecutionProvider" in capsys.readouterr().err


def test_onnx_team_without_its_export_says_how_to_fix_it(tmp_path):
    pytest.importorskip("onnxruntime")
    module = import_predictor_module(BASELINES / "onnx_team")
    with pytest.raises(FileNotFoundError, match="setup.sh"):
        module.Predictor("csl", "cpu", models_dir=tmp_path)


@pytest.mark.parametrize("team", ["roberta_tiny_team", "albert_tiny_team", "onnx_team"])
def test_team_folders_are_complete(team):
    folder = BASELINES / team
    for name in ("harness.toml", "setup.sh", "predictor.py", "task_inputs.py", "config.json", "vocab.txt"):
        assert (folder / name).is_file(), name
    assert (folder / "setup.sh").stat().st_mode & 0o111
    assert 'tasks = ["cluewsc2020", "csl", "cluener2020", "cmrc2018"]' in (folder / "harness.toml").read_text()
