"""The bundled sample data's batch sizes: each task cut into the caching audit's six batches where its examples
allow, any other folder at the spec's sizes. Golden sizes worked out by hand: with n examples a batch size b
makes ceil(n / b) batches, and the size wanted is the largest b (at most the spec's) with ceil(n / b) >= 6."""

from dataclasses import replace

import pytest

from harness.paths import SAMPLE_DATA_DIR
from harness.sample_batches import audit_batch_size, sample_batches
from harness.spec import load_spec

SPEC = load_spec()


@pytest.mark.parametrize("examples, spec_size, size", [
    (12, 16, 2),     # 6 batches of 2; 3 would make 4
    (9, 8, 1),       # 9 batches of 1; 2 would make 5
    (11, 16, 2),     # 2,2,2,2,2,1: the short last batch counts
    (10, 16, 1),     # 2 would make 5
    (36, 16, 7),     # ceil(36/7) = 6, ceil(36/8) = 5
    (6, 16, 1),      # exactly the minimum
    (200, 16, 16),   # enough batches at the spec's size: unchanged
    (5, 16, 16),     # fewer examples than batches needed: no size helps, the spec's is kept
    (2, 8, 8),
])
def test_the_largest_batch_that_makes_six(examples, spec_size, size):
    assert audit_batch_size(examples, spec_size, 6) == size


def test_the_bundled_sample_is_timed_in_the_audits_six_batches_and_the_row_says_so():
    # baselines/sample_data/README.md: 12 examples each for the first three tasks, 9 CMRC2018 questions
    spec, note = sample_batches(SPEC, SAMPLE_DATA_DIR, None)
    assert [t.batch_size for t in spec.tasks] == [2, 2, 2, 1]
    assert [t.batch_size for t in SPEC.tasks] == [16, 16, 16, 8]          # the loaded spec is untouched
    assert note == ("bundled sample data timed in batches smaller than the spec's, so that each task makes the "
                    "caching audit's 6: cluewsc2020 2 (spec 16), csl 2 (spec 16), cluener2020 2 (spec 16), "
                    "cmrc2018 1 (spec 8)")
    assert spec.sha256 == SPEC.sha256 and spec.limits == SPEC.limits and spec.timing == SPEC.timing


def test_a_quick_run_too_small_for_the_audit_keeps_the_spec_sizes():
    assert sample_batches(SPEC, SAMPLE_DATA_DIR, 2) == (SPEC, "")
    spec, _ = sample_batches(SPEC, SAMPLE_DATA_DIR, 6)                       # six examples: batches of one
    assert [t.batch_size for t in spec.tasks] == [1, 1, 1, 1]


def test_any_other_data_folder_keeps_the_spec_sizes(tmp_path):
    assert sample_batches(SPEC, tmp_path, None) == (SPEC, "")


def test_the_minimum_follows_the_specs_confidence():
    # at 99% the sign test needs 8 batches (1/2**7 < 0.01 <= 1/2**6 two-sided): 12 examples -> batches of 1
    strict = replace(SPEC, timing=replace(SPEC.timing, confidence=0.99))
    spec, note = sample_batches(strict, SAMPLE_DATA_DIR, None)
    assert [t.batch_size for t in spec.tasks] == [1, 1, 1, 1] and "caching audit's 8" in note
