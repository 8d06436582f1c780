"""The bundled baselines: the BERT-base reference, the demo team, and the sample data with gold labels.

Offline and on CPU. Prediction formats are checked here against the protocol's rules directly (not through
harness.tasks), so these tests pin the baselines to the rules themselves. Tests that build the full
BERT-base are marked slow (a few seconds each); they still run by default.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

BASELINES = Path(__file__).resolve().parents[2] / "baselines"
REFERENCE_DIR = BASELINES / "bert_reference"
DEMO_DIR = BASELINES / "demo_team"
SAMPLE_DIR = BASELINES / "sample_data"
TASKS = ("cluewsc2020", "csl", "cluener2020", "cmrc2018")
NER_TYPES = {"address", "book", "company", "game", "government", "movie", "name", "organization",
             "position", "scene"}


# --- helpers: the probe's view of a team and of the data -------------------------------------------------

def import_team_module(team_dir: Path, module_name: str):
    """Import a module from a team folder as the probe does (team folder on sys.path), without leaving it
    in sys.modules: both baselines name their module `predictor`."""
    before = set(sys.modules)
    sys.path.insert(0, str(team_dir))
    sys.modules.pop(module_name, None)
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(str(team_dir))
        for name in set(sys.modules) - before:
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(team_dir)):
                del sys.modules[name]


def load_predictor_class(team_dir: Path) -> type:
    module_name, class_name = read_manifest(team_dir)["predictor"].split(":")
    return getattr(import_team_module(team_dir, module_name), class_name)


def read_manifest(team_dir: Path) -> dict:
    return tomllib.loads((team_dir / "harness.toml").read_text(encoding="utf-8"))


def read_gold(task: str) -> list[dict]:
    if task == "cmrc2018":
        document = json.loads((SAMPLE_DIR / "cmrc2018" / "trial.json").read_text(encoding="utf-8"))
        return [{"id": qa["id"], "context": paragraph["context"], "question": qa["question"],
                 "answers": qa["answers"]}
                for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    lines = (SAMPLE_DIR / task / "dev.json").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def strip_labels(task: str, gold: list[dict]) -> list[dict]:
    """The inputs a predictor sees: raw records with an "id", without labels."""
    if task == "cluewsc2020":
        return [{"id": r["idx"], "idx": r["idx"], "target": r["target"], "text": r["text"]} for r in gold]
    if task == "csl":
        return [{"id": r["id"], "abst": r["abst"], "keyword": r["keyword"]} for r in gold]
    if task == "cluener2020":
        return [{"id": i, "text": r["text"]} for i, r in enumerate(gold)]
    return [{"id": r["id"], "context": r["context"], "question": r["question"]} for r in gold]


def prediction_problems(task: str, example: dict, prediction: object) -> list[str]:
    """Why `prediction` is not a valid prediction for `example` under the protocol; [] when it is."""
    if not isinstance(prediction, dict):
        return [f"not a dict: {prediction!r}"]
    problems = [] if prediction.get("id") == example["id"] else [f"id {prediction.get('id')!r} != {example['id']!r}"]
    if task == "cluewsc2020" and prediction.get("label") not in ("true", "false"):
        problems.append(f"label {prediction.get('label')!r} is not 'true' or 'false'")
    if task == "csl" and prediction.get("label") not in ("0", "1"):
        problems.append(f"label {prediction.get('label')!r} is not '0' or '1'")
    if task == "cluener2020":
        problems += entity_problems(example["text"], prediction.get("label"))
    if task == "cmrc2018":
        answer = prediction.get("answer")
        if not isinstance(answer, str) or answer not in example["context"]:
            problems.append(f"answer {answer!r} is not a substring of the context")
    return problems


def entity_problems(text: str, label: object) -> list[str]:
    if not isinstance(label, dict):
        return [f"label is not a dict: {label!r}"]
    problems = []
    for kind, entities in label.items():
        if kind not in NER_TYPES or not isinstance(entities, dict):
            problems.append(f"bad type entry {kind!r}: {entities!r}")
            continue
        for entity, spans in entities.items():
            for span in spans if isinstance(spans, list) else [spans]:
                ok = (isinstance(span, list) and len(span) == 2 and all(type(i) is int for i in span)
                      and 0 <= span[0] <= span[1] < len(text) and text[span[0]:span[1] + 1] == entity)
                if not ok:
                    problems.append(f"{kind} {entity!r}: span {span!r} does not hold that text")
    return problems


def assert_valid_predictions(task: str, examples: list[dict], predictions: object) -> None:
    assert isinstance(predictions, list) and len(predictions) == len(examples)
    problems = [p for e, pred in zip(examples, predictions) for p in prediction_problems(task, e, pred)]
    assert problems == []


def count_unique_parameters(modules) -> int:
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


# --- the validator itself catches what it must ------------------------------------------------------------

@pytest.mark.parametrize("task, example, prediction", [
    ("cluewsc2020", {"id": 3}, {"id": 3, "label": True}),
    ("cluewsc2020", {"id": 3}, {"id": 4, "label": "true"}),
    ("csl", {"id": 1}, {"id": 1, "label": 1}),
    ("cluener2020", {"id": 0, "text": "张伟在北京"}, {"id": 0, "label": {"name": {"张伟": [[0, 0]]}}}),
    ("cluener2020", {"id": 0, "text": "张伟在北京"}, {"id": 0, "label": {"person": {"张伟": [[0, 1]]}}}),
    ("cluener2020", {"id": 0, "text": "张伟在北京"}, {"id": 0, "label": {"address": {"北京": [[3, 5]]}}}),
    ("cmrc2018", {"id": "Q", "context": "长城很长。"}, {"id": "Q", "answer": "黄河"}),
    ("cmrc2018", {"id": "Q", "context": "长城很长。"}, ["长城"]),
])
def test_validator_rejects_malformed_predictions(task, example, prediction):
    assert prediction_problems(task, example, prediction)


def test_validator_accepts_well_formed_predictions():
    assert prediction_problems("cluener2020", {"id": 0, "text": "张伟在北京见张伟"},
                               {"id": 0, "label": {"name": {"张伟": [[0, 1], [6, 7]]}, "address": {"北京": [[3, 4]]}}}) == []
    assert prediction_problems("cmrc2018", {"id": "Q", "context": "长城很长。"}, {"id": "Q", "answer": "长城"}) == []


# --- team folders -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("team_dir, team", [(REFERENCE_DIR, "bert-base-reference"), (DEMO_DIR, "demo-team")])
def test_team_folder_is_a_valid_submission(team_dir, team):
    manifest = read_manifest(team_dir)
    assert manifest["team"] == team
    assert set(manifest) <= {"team", "setup", "predictor", "tasks"}
    assert os.access(team_dir / manifest["setup"], os.X_OK)
    module_name, _ = manifest["predictor"].split(":")
    assert (team_dir / f"{module_name}.py").is_file()
    assert tuple(manifest.get("tasks", TASKS)) == TASKS
    assert isinstance(load_predictor_class(team_dir), type)


def test_reference_config_is_bert_base_chinese():
    config = json.loads((REFERENCE_DIR / "config.json").read_text(encoding="utf-8"))
    assert {k: config[k] for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "intermediate_size", "max_position_embeddings", "type_vocab_size",
                                   "hidden_act", "layer_norm_eps")} == {
        "vocab_size": 21128, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12}


@pytest.mark.parametrize("team_dir", [REFERENCE_DIR, DEMO_DIR])
def test_vocabulary_has_21128_tokens(team_dir):
    # one token per "\n"-terminated line (splitlines() would also split at token 343, U+2028)
    tokens = (team_dir / "vocab.txt").read_text(encoding="utf-8").removesuffix("\n").split("\n")
    assert len(tokens) == 21128
    assert tokens[:1] == ["[PAD]"] and tokens[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tokens[343] == "\u2028"


def test_demo_character_ids_match_bert_token_ids():
    tokenizer = import_team_module(REFERENCE_DIR, "predictor").build_tokenizer()
    vocab = import_team_module(DEMO_DIR, "predictor").CharVocab(DEMO_DIR / "vocab.txt")
    text = "长城ABC的龘"   # ids past the U+2028 tokens (343 and 13502), upper case, a rare character
    assert vocab.encode(text) == tokenizer(list(text), is_split_into_words=True, add_special_tokens=False)["input_ids"]


def test_reference_tokenizer_loads_the_whole_vocabulary():
    """transformers 5 ignores vocab_file= silently (5 tokens, all [UNK]); the reference must not."""
    inputs = import_team_module(REFERENCE_DIR, "predictor")
    tokenizer = inputs.build_tokenizer()
    assert len(tokenizer) == 21128
    assert tokenizer.convert_ids_to_tokens(tokenizer("长城")["input_ids"]) == ["[CLS]", "长", "城", "[SEP]"]


@pytest.mark.slow
def test_reference_encoder_with_pooler_has_102267648_parameters():
    # embeddings: words 21128*768 = 16,226,304 + positions 512*768 = 393,216 + token types 2*768 = 1,536
    #             + LayerNorm 2*768 = 1,536                                              = 16,622,592
    # per layer:  Q, K, V, output 4*(768*768 + 768) = 2,362,368 + LayerNorm 1,536
    #             + intermediate 768*3072 + 3072 = 2,362,368 + output 3072*768 + 768 = 2,360,064
    #             + LayerNorm 1,536                                                      =  7,087,872
    # 12 layers:  12 * 7,087,872                                                         = 85,054,464
    # pooler:     768*768 + 768                                                          =    590,592
    # total:      16,622,592 + 85,054,464 + 590,592                                      = 102,267,648
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig.from_json_file(str(REFERENCE_DIR / "config.json")), add_pooling_layer=True)
    assert sum(p.numel() for p in model.parameters()) == 102_267_648


# --- sample data ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, count", [("cluewsc2020", 12), ("csl", 12), ("cluener2020", 12), ("cmrc2018", 9)])
def test_sample_data_counts(task, count):
    assert len(read_gold(task)) == count


def test_sample_cmrc_has_three_passages_with_sample_ids():
    document = json.loads((SAMPLE_DIR / "cmrc2018" / "trial.json").read_text(encoding="utf-8"))
    paragraphs = [p for article in document["data"] for p in article["paragraphs"]]
    assert [p["id"] for p in paragraphs] == ["SAMPLE_0", "SAMPLE_1", "SAMPLE_2"]
    assert all(qa["id"] == f"{p['id']}_QUERY_{k}" for p in paragraphs for k, qa in enumerate(p["qas"]))


def test_sample_wsc_spans_are_at_their_indexes_and_labels_balanced():
    gold = read_gold("cluewsc2020")
    for row in gold:
        target, text = row["target"], row["text"]
        for key in ("span1", "span2"):
            start, span = target[f"{key}_index"], target[f"{key}_text"]
            assert text[start:start + len(span)] == span, (row["idx"], key)
    assert [row["idx"] for row in gold] == list(range(len(gold)))
    assert sorted(row["label"] for row in gold) == ["false"] * 6 + ["true"] * 6


def test_sample_csl_has_balanced_labels_and_short_keyword_lists():
    gold = read_gold("csl")
    assert [row["id"] for row in gold] == list(range(len(gold)))
    assert sorted(row["label"] for row in gold) == ["0"] * 6 + ["1"] * 6
    assert all(3 <= len(row["keyword"]) <= 4 for row in gold)


def test_sample_ner_spans_hold_their_entity_texts():
    gold = read_gold("cluener2020")
    assert all("id" not in row for row in gold)   # like the real dev file: ids are line numbers
    assert all(entity_problems(row["text"], row["label"]) == [] for row in gold)
    assert {kind for row in gold for kind in row["label"]} == NER_TYPES


def test_sample_cmrc_answers_are_at_their_starts():
    for row in read_gold("cmrc2018"):
        assert row["answers"]
        for answer in row["answers"]:
            start = answer["answer_start"]
            assert row["context"][start:start + len(answer["text"])] == answer["text"], row["id"]


# --- the demo team ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_class():
    return load_predictor_class(DEMO_DIR)


@pytest.mark.parametrize("task", TASKS)
def test_demo_predicts_valid_records_for_every_sample_example(demo_class, task):
    examples = strip_labels(task, read_gold(task))
    predictor = demo_class(task, "cpu")
    assert_valid_predictions(task, examples, predictor.predict(examples))
    assert count_unique_parameters(predictor.parameter_sources()) < 12_000_000


@pytest.mark.parametrize("task, examples", [
    ("cluener2020", [{"id": 0, "text": ""}, {"id": 1, "text": "  Riddick 和 😀 在 Ａ市 "}]),
    ("cmrc2018", [{"id": "a", "context": "", "question": "什么？"}, {"id": "b", "context": "短。", "question": ""}]),
    ("cluewsc2020", [{"id": 0, "idx": 0, "target": {"span1_index": 9, "span1_text": "猫", "span2_index": 0,
                                                    "span2_text": "它"}, "text": "它"}]),
])
def test_demo_handles_empty_and_odd_inputs(demo_class, task, examples):
    assert_valid_predictions(task, examples, demo_class(task, "cpu").predict(examples))


def test_demo_answers_are_at_most_30_characters(demo_class):
    examples = [{"id": i, "context": "长城是中国古代的军事防御工程" * 10, "question": "长城是什么？"} for i in range(4)]
    predictions = demo_class("cmrc2018", "cpu").predict(examples)
    assert all(0 < len(p["answer"]) <= 30 for p in predictions)


def test_demo_is_deterministic_and_under_the_limit_on_every_task(demo_class):
    examples = strip_labels("cluener2020", read_gold("cluener2020"))
    assert demo_class("cluener2020", "cpu").predict(examples) == demo_class("cluener2020", "cpu").predict(examples)
    # the task with the widest head: embedding 21128*128 + conv 128*128*3 + 128 + head 128*21 + 21
    assert count_unique_parameters(demo_class("cluener2020", "cpu").parameter_sources()) == 2_756_373


def test_demo_csl_heuristic_prefers_genuine_when_a_keyword_is_not_in_the_abstract(demo_class):
    examples = [{"id": 0, "abst": "本文研究了湿地候鸟.", "keyword": ["湿地", "候鸟"]},
                {"id": 1, "abst": "本文研究了湿地候鸟.", "keyword": ["湿地", "种群动态"]}]
    assert [p["label"] for p in demo_class("csl", "cpu").predict(examples)] == ["0", "1"]


# --- the reference: its helpers (fast) and its predictor (slow) -------------------------------------------

@pytest.fixture(scope="module")
def reference_inputs():
    return import_team_module(REFERENCE_DIR, "reference_inputs")


def test_reference_marks_wsc_spans_like_clue(reference_inputs):
    mark = reference_inputs.mark_wsc_spans
    target = {"span1_index": 4, "span1_text": "花瓶", "span2_index": 12, "span2_text": "它"}
    assert mark("桌子上的花瓶被猫碰倒了，它摔成了碎片。", target) == "桌子上的_花瓶_被猫碰倒了，[它]摔成了碎片。"
    # adjacent spans: the candidate closes before the pronoun opens
    assert mark("猫它", {"span1_index": 0, "span1_text": "猫", "span2_index": 1, "span2_text": "它"}) == "_猫_[它]"
    # a wrong index falls back to the nearest occurrence; a missing span is left unmarked
    assert mark("猫和猫", {"span1_index": 1, "span1_text": "猫", "span2_text": "狗", "span2_index": 0}) == "_猫_和猫"


def test_reference_decodes_bio_like_clue(reference_inputs):
    text = "张伟在北京见张伟"
    labels = ["B-name", "I-name", "O", "B-address", "I-address", "I-name", "B-name", "I-name"]
    assert reference_inputs.decode_bio(text, labels) == {"name": {"张伟": [[0, 1], [6, 7]]},
                                                         "address": {"北京": [[3, 4]]}}
    assert reference_inputs.decode_bio("北京", ["I-address", "I-address"]) == {}


def test_reference_maps_token_labels_to_characters(reference_inputs):
    labels = reference_inputs.NER_LABELS
    assert len(labels) == 21
    # "a b": the space has no token; "b" is split in two tokens and takes the first one's label
    tags = [0, labels.index("B-name"), labels.index("O"), labels.index("B-game"), 0]
    assert reference_inputs.char_labels([None, 0, 2, 2, None], tags, 3) == ["B-name", "O", "O"]


def test_reference_best_span_stays_in_context_and_within_30_characters(reference_inputs):
    # tokens: [CLS] q [SEP] c0 c1 c2 [SEP]; c1 covers 40 characters (a long run of ASCII, say)
    offsets = torch.tensor([[[0, 0], [0, 1], [0, 0], [0, 1], [1, 41], [41, 42], [0, 0]]])
    in_context = torch.tensor([[False, False, False, True, True, True, False]])
    start = torch.tensor([[9.0, 9.0, 0.0, 1.0, 5.0, 0.0, 9.0]])
    end = torch.tensor([[9.0, 9.0, 0.0, 0.0, 0.0, 2.0, 9.0]])
    score, first, last = reference_inputs.best_spans(start, end, in_context, offsets, max_chars=30)
    # unconstrained, [CLS]..[SEP] would win; within the context c1..c2 (5+2) would, but it spans 41
    # characters and c1 alone 40; of what is left, c2 alone (0+2) beats c0 alone (1+0)
    assert (first.item(), last.item(), score.item()) == (5, 5, 2.0)


def test_reference_pads_as_the_spec_says():
    reference = import_team_module(REFERENCE_DIR, "predictor")
    tokenizer = reference.build_tokenizer()
    for padding, width in (("max_length", 32), ("longest", 6)):   # [CLS] 长城很长 [SEP]
        stub = SimpleNamespace(tokenizer=tokenizer, max_seq_length=32, padding=padding)
        assert reference.Predictor._encode(stub, ["长城", "长城很长"])["input_ids"].shape == (2, width)
    stub = SimpleNamespace(tokenizer=tokenizer, max_seq_length=8, padding="longest")
    assert reference.Predictor._encode(stub, ["长城是中国古代的军事防御工程"])["input_ids"].shape == (1, 8)


@pytest.fixture(scope="module")
def reference_class():
    return load_predictor_class(REFERENCE_DIR)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_reference_predicts_valid_records_for_every_sample_example(reference_class, task):
    examples = strip_labels(task, read_gold(task))
    if task == "cmrc2018":   # a question longer than the window is clipped; an empty context answers ""
        examples += [{"id": "long", "context": examples[0]["context"], "question": "长城" * 40 + "？"},
                     {"id": "empty", "context": "", "question": "长城在哪里？"}]
    predictor = reference_class(task, "cpu", max_seq_length=32, padding="max_length", doc_stride=128, seed=2020)
    predictions = predictor.predict(examples)
    assert_valid_predictions(task, examples, predictions)
    if task == "cmrc2018":   # 32 tokens leave room for a few context characters: many windows, answers <= 30
        assert all(len(p["answer"]) <= 30 for p in predictions)
    assert count_unique_parameters(predictor.parameter_sources()) == REFERENCE_PARAMETERS[task]


# The encoder (102,267,648 with the pooler, 101,677,056 without: token and span heads do not use it) plus
# the head: 768*2 + 2 = 1,538 for two classes or start/end, 768*21 + 21 = 16,149 for the NER tags.
REFERENCE_PARAMETERS = {"cluewsc2020": 102_269_186, "csl": 102_269_186, "cluener2020": 101_693_205,
                        "cmrc2018": 101_678_594}
