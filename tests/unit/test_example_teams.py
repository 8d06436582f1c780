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

import numpy as np
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
# The fast team: 8,004 characters x 312, 512 positions, 3 segments, LayerNorm; RoBERTa-tiny's 4 layers (Q, K
# and V fused in one 312 -> 936 projection: the same 3 x (312 x 312 + 312)); no pooler but for classification.
FAST_EMBEDDINGS = 8004 * 312 + 512 * 312 + 3 * 312 + layer_norm(312)                # 2,658,552
FAST_ENCODER = FAST_EMBEDDINGS + 4 * ROBERTA_LAYER + POOLER_312                    # with the pooler


def with_head(encoder: int, task: str) -> int:
    return encoder - (0 if POOLED[task] else POOLER_312) + heads(312)[task]


def test_hand_figures_are_the_published_ones():
    assert ROBERTA_ENCODER == 7_449_936          # the figure in the issue, transformers' own count
    assert ALBERT_ENCODER == 4_080_520
    assert TINYBERT_ENCODER == 7_329_936
    assert FAST_ENCODER == 7_444_944 and with_head(FAST_ENCODER, "csl") == 7_445_570


# --- loading a team as the probe does ---------------------------------------------------------------------

def import_predictor_module(team_dir: Path, module: str = "predictor"):
    """The team's predictor module with the team folder on sys.path, and none of its modules left behind:
    every team has its own `predictor` and `task_inputs`."""
    for name in ("predictor", "task_inputs", "export_onnx"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(team_dir))
    try:
        return importlib.import_module(module)
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


@pytest.mark.parametrize("team", ["roberta_tiny_team", "albert_tiny_team", "onnx_team", "fast_tiny_team"])
def test_team_folders_are_complete(team):
    folder = BASELINES / team
    for name in ("harness.toml", "setup.sh", "predictor.py", "task_inputs.py", "config.json", "vocab.txt"):
        assert (folder / name).is_file(), name
    assert (folder / "setup.sh").stat().st_mode & 0o111
    assert 'tasks = ["cluewsc2020", "csl", "cluener2020", "cmrc2018"]' in (folder / "harness.toml").read_text()


# --- the fast team ----------------------------------------------------------------------------------------

FAST = BASELINES / "fast_tiny_team"


@pytest.mark.parametrize("task", TASKS)
def test_fast_tiny_team_counts_predicts_and_caches_nothing(task):
    module = import_predictor_module(FAST)
    predictor = module.Predictor(task, "cpu")
    assert count_alone(predictor) == with_head(FAST_ENCODER, task) \
        == sum(p.numel() for p in predictor.model.parameters())
    spec = get_task(task)
    examples = spec.strip_labels(spec.read_gold(DATA / GOLD_FILES[task]))
    first, rest = examples[:MAX_EXAMPLES], examples[MAX_EXAMPLES:] or examples[:1]
    answer = predictor.predict(first)
    assert_valid(task, first, answer)
    # a call's output depends only on its input: the same again, after another input, and from a fresh
    # predictor that never saw anything (nothing kept from one call to the next can change an answer)
    assert predictor.predict(first) == answer
    predictor.predict(rest)
    assert predictor.predict(first) == answer
    del predictor
    gc.collect()
    assert module.Predictor(task, "cpu").predict(first) == answer


@pytest.mark.parametrize("task", TASKS)
def test_fast_tiny_team_ablations_answer_the_same(task):
    """The variants bench/example_teams.py --ablate times compute the same answers: per-example Python
    instead of numpy, and rows padded to static buckets instead of the batch's longest."""
    module = import_predictor_module(FAST)
    examples = fixture_inputs(task)
    shipped = module.Predictor(task, "cpu").predict(examples)
    assert module.Predictor(task, "cpu", vectorized=False).predict(examples) == shipped
    assert module.Predictor(task, "cpu", static_shapes=True).predict(examples) == shipped


def test_fast_tiny_team_splits_long_cmrc_batches_and_answers_every_example():
    module = import_predictor_module(FAST)
    predictor = module.Predictor("cmrc2018", "cpu")
    examples = [{"id": str(i), "question": "哪里？", "context": "北京是首都。" * (300 + 50 * i)} for i in range(4)]
    chunks = predictor.encode(examples)
    # 1,800, 2,100, 2,400 and 2,700 characters; a 3-character question leaves room for 506, every 378:
    # 1 + ceil((n - 506) / 378) = 5, 6, 7, 7 windows, 25 in all: one chunk (at most 32 windows)
    assert [c["example"].tolist() for c in chunks] == [[0] * 5 + [1] * 6 + [2] * 7 + [3] * 7]
    predictor.max_rows = 8                  # force the split: at most 8 windows a chunk
    chunks = predictor.encode(examples)
    assert [c["n"] for c in chunks] == [1, 1, 1, 1] and max(len(c["example"]) for c in chunks) <= 8
    answers = predictor.predict(examples)
    assert [a["id"] for a in answers] == ["0", "1", "2", "3"]
    assert all(a["answer"] in e["context"] and 0 < len(a["answer"]) <= 30 for a, e in zip(answers, examples))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("task", TASKS)
def test_fast_tiny_team_graphs_answer_as_eager_on_a_gpu(task):
    module = import_predictor_module(FAST)
    examples = fixture_inputs(task)
    graphed = module.Predictor(task, "cuda")
    assert graphed.graphs and not graphed.graph_error and graphed.half and graphed.pinned
    answer = graphed.predict(examples)
    assert_valid(task, examples, answer)
    assert graphed.predict(examples) == answer
    assert module.Predictor(task, "cuda", cuda_graphs=False).predict(examples) == answer


def test_fast_tiny_team_host_helpers_by_hand():
    inputs = import_predictor_module(FAST, "task_inputs")
    # windows: question 4 characters, context 1,000, 512 tokens: room 505, overlap 128, step 377
    example, first, length = inputs.cmrc_windows(np.array([4, 4]), np.array([1000, 10]), 512, 128)
    assert example.tolist() == [0, 0, 0, 1] and first.tolist() == [0, 377, 754, 0]
    assert length.tolist() == [505, 505, 246, 10]
    # [CLS] a b [SEP] c [SEP] and a bucket row of [CLS] alone; segments 0 then 1
    flat = np.array([10, 11, 12, 0])
    ids, segments = inputs.layout([(flat, np.array([0]), np.array([2])), (flat, np.array([2]), np.array([1]))],
                                  8, 2)
    assert ids.tolist() == [[2, 10, 11, 3, 12, 3, 0, 0], [2, 0, 0, 0, 0, 0, 0, 0]]
    assert segments.tolist() == [[0, 0, 0, 0, 1, 1, 0, 0], [0] * 8]
    # longest-first: 10 + 1,000 in 253 keeps the short one whole; 200 + 200 splits 126 / 127
    kept = inputs.pair_lengths(np.array([10, 200]), np.array([1000, 200]), 253)
    assert [k.tolist() for k in kept] == [[10, 126], [243, 127]]
    # characters: upper case reads as lower case, whitespace and unknown characters as [UNK]
    table = inputs.CharTable(FAST / "vocab.txt")
    flat, starts, lengths = table.lookup(["Ab", "", " 的", "🔥😀\uffff"])
    assert flat[:-1].tolist() == [table.ids["a"], table.ids["b"], 1, table.ids["的"], table.ids["🔥"], 1, 1]
    assert starts.tolist() == [0, 2, 2, 4] and lengths.tolist() == [2, 0, 2, 3]
    assert table.lookup(["Ab", "", " 的", "🔥😀\uffff"], vectorized=False)[0].tolist() == flat.tolist()


def test_fast_tiny_team_bio_decoding_matches_clues_rule():
    inputs = import_predictor_module(FAST, "task_inputs")
    label = {name: i for i, name in enumerate(inputs.NER_LABELS)}
    # 张三在北京工作: B-name I-name O B-address I-address I-name(stray: ends the address) O
    row = [label[x] for x in ("B-name", "I-name", "O", "B-address", "I-address", "I-name", "O")]
    found = inputs.entity_dicts(["张三在北京工作"], *inputs.bio_entities(np.array([row]), np.array([7])))
    assert found == [{"name": {"张三": [[0, 1]]}, "address": {"北京": [[3, 4]]}}]
    rng = np.random.default_rng(0)
    for _ in range(200):                      # the vectorized decoder against the per-text one
        texts = ["".join(chr(0x4E00 + c) for c in rng.integers(0, 20, rng.integers(0, 9))) for _ in range(3)]
        labels = rng.choice([0, 1, 2, 2, 3, 4, 4], size=(3, 6))
        lengths = np.minimum([len(t) for t in texts], 6)
        want = [inputs.decode_bio(t, [inputs.NER_LABELS[c] for c in row[:n]] + ["O"] * (len(t) - n))
                for t, row, n in zip(texts, labels.tolist(), lengths)]
        assert inputs.entity_dicts(texts, *inputs.bio_entities(labels, lengths)) == want


def test_fast_tiny_team_vocabulary_is_roberta_tiny_characters_and_reproducible():
    make_vocab = import_predictor_module(FAST, "make_vocab")
    sys.modules.pop("make_vocab", None)
    tokens = make_vocab.character_vocabulary(make_vocab.read_tokens(make_vocab.SOURCE))
    assert tokens == make_vocab.read_tokens(FAST / "vocab.txt")
    assert len(tokens) == len(set(tokens)) == 8004 and tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert all(len(t) == 1 and not t.isspace() for t in tokens[5:])
