"""Warm-up inputs: other content, same shapes, consistent spans, new ids; a pure function of (examples, seed)."""

from harness.warmup_inputs import WARMUP_ID_OFFSET, WARMUP_ID_PREFIX, cjk_bijection, is_cjk, warmup_examples

WSC = [{"id": 0, "text": "小明去商店，他买了苹果。", "target": {"span1_index": 0, "span1_text": "小明",
                                                              "span2_index": 6, "span2_text": "他"}},
       {"id": 1, "text": "猫追着狗，它跑得很快。", "target": {"span1_index": 0, "span1_text": "猫",
                                                            "span2_index": 5, "span2_text": "它"}}]
CMRC = [{"id": "FIX_0_QUERY_0", "context": "长城位于中国北方。It is long.", "question": "长城在哪里？"}]


def test_the_substitution_is_a_bijection_over_the_characters_present():
    table = cjk_bijection(WSC, seed=7)
    present = {c for e in WSC for c in e["text"] if is_cjk(c)}
    assert set(table) == present and set(table.values()) == present
    assert all(a != b for a, b in table.items())        # every character moves


def test_spans_stay_consistent_and_lengths_unchanged():
    for original, warm in zip(WSC, warmup_examples(WSC, seed=7)):
        assert len(warm["text"]) == len(original["text"]) and warm["text"] != original["text"]
        t = warm["target"]
        assert warm["text"][t["span1_index"]:t["span1_index"] + len(t["span1_text"])] == t["span1_text"]
        assert warm["text"][t["span2_index"]:t["span2_index"] + len(t["span2_text"])] == t["span2_text"]
        assert t["span1_index"] == original["target"]["span1_index"]
        # punctuation is not CJK: it stays where it was
        assert [c for c in warm["text"] if not is_cjk(c)] == [c for c in original["text"] if not is_cjk(c)]


def test_ids_change_string_prefixed_and_integer_offset():
    warm = warmup_examples(WSC + CMRC, seed=1)
    assert [w["id"] for w in warm[:2]] == [WARMUP_ID_OFFSET, WARMUP_ID_OFFSET + 1]
    assert warm[2]["id"] == WARMUP_ID_PREFIX + "FIX_0_QUERY_0"


def test_latin_text_is_untouched_and_the_same_character_maps_the_same_everywhere():
    warm = warmup_examples(CMRC, seed=3)[0]
    assert warm["context"].endswith("It is long.")
    # 长城 opens both the context and the question: both get the same substitute
    assert warm["context"][:2] == warm["question"][:2] != "长城"


def test_pure_and_seeded():
    assert warmup_examples(WSC, seed=5) == warmup_examples(WSC, seed=5)
    assert warmup_examples(WSC, seed=5) != warmup_examples(WSC, seed=6)
    assert WSC[0]["text"] == "小明去商店，他买了苹果。"        # inputs are not modified
