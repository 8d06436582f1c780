"""Inputs of a task's timing (harness.warmup_inputs): real examples under opaque ids, synthetic ones of their
shapes. Issue 18: a team recognised a character bijection of the timed inputs, computed its answers during
warm-up from what a swap keeps, filed them under ids that mapped back, and answered every timed call from that
table. Issue 28: warm-up ids had their own format and content its own statistics, so a team could tell the
real inputs from the rest and cache only those."""

import re
from collections import Counter

import numpy as np
import pytest

from harness.warmup_inputs import (OPAQUE_INT_RANGE, BigramText, InputMaker, is_cjk, shared_pieces,
                                   warmup_examples)

WSC = [{"idx": 0, "id": 0, "text": "小明去商店，他买了苹果。", "target": {"span1_index": 0, "span1_text": "小明",
                                                                   "span2_index": 6, "span2_text": "他"}},
       {"idx": 1, "id": 1, "text": "猫追着狗，它跑得很快。", "target": {"span1_index": 0, "span1_text": "猫",
                                                                 "span2_index": 5, "span2_text": "它"}}]
CMRC = [{"id": "FIX_0_QUERY_0", "context": "长城位于中国北方，全长21196千米。It is long.", "question": "长城在哪里？"}]
SENTENCES = ["本文提出一种轻量级中文预训练模型", "在阅读理解与命名实体识别上取得了良好的效果", "实验表明该方法优于基线",
             "我们在三个数据集上进行了评测", "模型参数量仅为原来的十分之一", "推理速度提高了八倍以上"]
# CSL-like: 30 different abstracts, two keywords from the abstract, one not in it
CSL = [{"id": i, "abst": SENTENCES[i % 6] + "，" + SENTENCES[(i + 1) % 6] + "。" + SENTENCES[(i + 3) % 6],
        "keyword": [SENTENCES[i % 6][2:5], SENTENCES[(i + 1) % 6][1:4], "深度学习"]} for i in range(30)]


def shape(value, key=None):
    if key in ("id", "idx"):
        return type(value).__name__          # ids are opaque: their type is kept, not their text
    if isinstance(value, str):
        return ("str", len(value))
    if isinstance(value, dict):
        return {k: shape(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def test_same_shapes_every_string_length_list_size_and_key():
    for examples in (WSC, CMRC, CSL):
        warm = warmup_examples(examples, seed=7)
        assert [shape(w) for w in warm] == [shape(e) for e in examples]


def test_spans_are_re_read_from_the_new_text():
    for original, warm in zip(WSC, warmup_examples(WSC, seed=7)):
        t = warm["target"]
        assert warm["text"][t["span1_index"]:t["span1_index"] + len(t["span1_text"])] == t["span1_text"]
        assert warm["text"][t["span2_index"]:t["span2_index"] + len(t["span2_text"])] == t["span2_text"]
        assert t["span1_index"] == original["target"]["span1_index"]
        assert set(warm["text"]) <= {c for e in WSC for c in e["text"]}   # the task's own characters


def test_a_piece_shared_with_the_main_text_is_shared_at_the_same_place():
    """Which keywords stand in the abstract is what a team reads off a real CSL input in microseconds: the
    stand-ins keep it, so it tells them apart from nothing. The third keyword is in no abstract: drawn."""
    maker = InputMaker(CSL, seed=3)
    for real, fake in zip(CSL, maker.fresh(CSL)):
        for keyword, fake_keyword in zip(real["keyword"][:2], fake["keyword"][:2]):
            at = real["abst"].find(keyword)
            assert fake["abst"][at:at + len(keyword)] == fake_keyword
        assert fake["abst"] != real["abst"]
    fakes = maker.fresh(CSL)
    assert sum(f["keyword"][2] in f["abst"] for f in fakes) < 10
    assert shared_pieces("长城在哪里？", "长城位于中国北方") == [(0, 0, 2)]
    assert shared_pieces("在北方的长城", "长城位于中国北方") == [(1, 6, 2), (4, 0, 2)]


def test_content_reads_like_the_task_but_copies_no_example():
    """Characters and their pairs come from the task's text (but after a character the corpus never follows,
    where the next is drawn on its own: rare); no synthetic abstract is a real one."""
    fakes = InputMaker(CSL, seed=5).fresh(CSL)
    texts = [e["abst"] for e in CSL] + [k for e in CSL for k in e["keyword"]]
    real_pairs = {a + b for text in texts for a, b in zip(text, text[1:])}
    fake_pairs = [a + b for f in fakes for a, b in zip(f["abst"], f["abst"][1:])]
    assert sum(pair in real_pairs for pair in fake_pairs) > 0.9 * len(fake_pairs)
    assert all(f["abst"] not in {e["abst"] for e in CSL} for f in fakes)
    assert len({f["abst"] for f in fakes}) == len(fakes)


def test_bigram_frequencies_follow_the_corpus():
    """A corpus where 'a' is followed by 'b' three times as often as by 'c': drawn text keeps about 3:1."""
    text = BigramText(["ab"] * 30 + ["ac"] * 10)
    drawn = text.draw([2] * 4000, np.random.default_rng(0))
    after_a = Counter(s[1] for s in drawn if s[0] == "a")
    assert 2.5 < after_a["b"] / after_a["c"] < 3.6
    starts = Counter(s[0] for s in drawn)           # first characters from the unigram: a 40, b 30, c 10
    assert 0.45 < starts["a"] / len(drawn) < 0.55
    assert sorted(len(s) for s in text.draw([5, 0, 3], np.random.default_rng(1))) == [0, 3, 5]


def test_ids_are_opaque_alike_for_real_and_synthetic_inputs():
    examples = WSC + CMRC
    maker = InputMaker(examples, seed=1)
    masked, fresh = maker.masked(examples), maker.fresh(examples)
    for real, m, f in zip(examples, masked, fresh):
        for key in ("id", "idx"):
            if key in real:
                assert type(m[key]) is type(f[key]) is type(real[key])
                assert m[key] != real[key] and f[key] != real[key]
        if isinstance(real["id"], int):
            assert 0 <= m["id"] < OPAQUE_INT_RANGE and 0 <= f["id"] < OPAQUE_INT_RANGE
            assert m["idx"] == m["id"] and f["idx"] == f["id"]      # equal in the real example, equal here
        else:
            assert re.fullmatch(r"[0-9a-f]{12}", m["id"]) and re.fullmatch(r"[0-9a-f]{12}", f["id"])
        assert maker.real_id(m["id"]) == real["id"]
        with pytest.raises(KeyError):
            maker.real_id(f["id"])
        assert {k: v for k, v in m.items() if k not in ("id", "idx")} == \
            {k: v for k, v in real.items() if k not in ("id", "idx")}
    ids = [e["id"] for e in masked + fresh + maker.masked(examples)]
    assert len(set(ids)) == len(ids)                                   # never the same id twice


def test_every_fresh_call_draws_anew_and_the_maker_is_seeded():
    maker = InputMaker(CSL, seed=2)
    assert maker.fresh(CSL) != maker.fresh(CSL)
    assert warmup_examples(WSC, seed=5) == warmup_examples(WSC, seed=5)
    assert warmup_examples(WSC, seed=5) != warmup_examples(WSC, seed=6)
    assert WSC[0]["text"] == "小明去商店，他买了苹果。" and WSC[0]["id"] == 0        # inputs are not modified


def test_is_cjk():
    assert is_cjk("中") and not is_cjk("a") and not is_cjk("，")
