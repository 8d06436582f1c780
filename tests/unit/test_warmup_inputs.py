"""Warm-up inputs: the timed inputs' shapes, content and ids drawn independently of them, consistent spans;
a pure function of (examples, seed). Issue 18: a team recognised a character bijection of the timed inputs,
computed its answers during warm-up from what a swap keeps, filed them under ids that mapped back, and
answered every timed call from that table."""

from harness.warmup_inputs import WARMUP_ID_OFFSET, WARMUP_ID_PREFIX, is_cjk, warmup_examples

WSC = [{"id": 0, "text": "小明去商店，他买了苹果。", "target": {"span1_index": 0, "span1_text": "小明",
                                                              "span2_index": 6, "span2_text": "他"}},
       {"id": 1, "text": "猫追着狗，它跑得很快。", "target": {"span1_index": 0, "span1_text": "猫",
                                                            "span2_index": 5, "span2_text": "它"}}]
CMRC = [{"id": "FIX_0_QUERY_0", "context": "长城位于中国北方，全长21196千米。It is long.", "question": "长城在哪里？"}]
# CSL: the answer depends on whether the keywords are the abstract's own; a swap of characters keeps that
CSL = [{"id": i, "abst": "本文提出一种轻量级中文预训练模型，在阅读理解与命名实体识别上取得了良好的效果。",
        "keyword": ["预训练", "中文", "阅读理解", "命名实体识别"]} for i in range(40)]


def shape(value, key=None):
    if key == "id":
        return type(value).__name__          # ids are fresh: their type is kept, not their text
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
        # punctuation stays where it was; CJK characters are drawn from the task's own
        assert [c for c in warm["text"] if not is_cjk(c)] == [c for c in original["text"] if not is_cjk(c)]
        pool = {c for e in WSC for c in e["text"] if is_cjk(c)}
        assert {c for c in warm["text"] if is_cjk(c)} <= pool


def test_content_is_drawn_independently_not_mapped():
    """Under a bijection all 160 keywords would still be found in their abstracts, and equal characters stay
    equal; drawn afresh, a keyword turns up in its abstract only by chance (a two-character one in about 3%
    of abstracts drawn from this pool of 36 characters), and the same character in two places gets two draws."""
    warm = warmup_examples(CSL, seed=3)
    kept = sum(keyword in w["abst"] for w in warm for keyword in w["keyword"])
    assert kept <= 8, kept                                    # of 160, every one in its abstract before
    assert len({w["abst"] for w in warm}) == len(warm)        # 40 identical abstracts became 40 different ones
    warm_cmrc = warmup_examples(CMRC, seed=3)[0]
    context, question = warm_cmrc["context"], warm_cmrc["question"]
    assert context[:2] != question[:2]                        # 长城 opens both: two independent draws now
    # digits become digits, letters letters of the same case, spaces and punctuation stay
    assert all(c.isdigit() for c in context[11:16]) and context[11:16] != "21196"
    assert context[19].isupper() and context[20].islower() and context[21] == " " and context[-1] == "."


def test_ids_are_fresh_and_name_no_timed_example():
    warm = warmup_examples(WSC + CMRC + CSL, seed=1)
    timed_ids = {e["id"] for e in WSC + CMRC + CSL}
    ids = [w["id"] for w in warm]
    assert len(set(ids)) == len(ids) and not set(ids) & timed_ids
    assert all(isinstance(i, int) and i >= WARMUP_ID_OFFSET for i in ids[:2])
    assert ids[2].startswith(WARMUP_ID_PREFIX) and "FIX_0_QUERY_0" not in ids[2]
    assert all((i - WARMUP_ID_OFFSET) not in timed_ids for i in ids if isinstance(i, int))


def test_pure_and_seeded():
    assert warmup_examples(WSC, seed=5) == warmup_examples(WSC, seed=5)
    assert warmup_examples(WSC, seed=5) != warmup_examples(WSC, seed=6)
    assert WSC[0]["text"] == "小明去商店，他买了苹果。"        # inputs are not modified
