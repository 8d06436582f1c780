"""harness.stats: interval, verdict, settling and the caching audit, against values worked out by hand."""

import math
import random

import numpy as np

import pytest

from harness.stats import (Interval, binomial_tail, caching_audit, mean_pass_s, min_audit_batches,
                           order_statistic_rank, round_level_interval, settled, speedup_interval, t_quantile,
                           verdict)


def test_mean_pass_is_the_mean_of_round_totals():
    # rounds of (1 + 2) and (2 + 3) seconds: passes 3 and 5, mean 4
    assert mean_pass_s([[1, 2], [2, 3]]) == pytest.approx(4.0)


def test_noise_free_timings_give_a_point_interval():
    team = [[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]]       # 1 s a pass
    ref = [[[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]]]        # 4 s a pass
    interval = speedup_interval(team, ref, resamples=200)
    assert (interval.point, interval.low, interval.high) == pytest.approx((4.0, 4.0, 4.0))
    assert interval.half_width == pytest.approx(0.0)


def test_tasks_add_their_mean_pass_times_before_the_ratio():
    # task A: team 2 s, reference 6 s a pass; task B: team 1 s, reference 6 s. T = 3, T_bert = 12: 4x,
    # not the mean of the per-task ratios (3x and 6x: 4.5x)
    team = [[[1.0, 1.0]], [[0.5, 0.5]]]
    ref = [[[3.0, 3.0]], [[3.0, 3.0]]]
    assert speedup_interval(team, ref, resamples=100).point == pytest.approx(4.0)


def test_the_interval_contains_the_point_and_widens_with_noise():
    rng = random.Random(1)
    quiet = [[[1 + rng.gauss(0, 0.01) for _ in range(20)] for _ in range(5)]]
    noisy = [[[1 + rng.gauss(0, 0.3) for _ in range(20)] for _ in range(5)]]
    ref = [[[10 + rng.gauss(0, 0.1) for _ in range(20)] for _ in range(5)]]
    narrow = speedup_interval(quiet, ref, resamples=1000, seed=3)
    wide = speedup_interval(noisy, ref, resamples=1000, seed=3)
    for interval in (narrow, wide):
        assert interval.low <= interval.point <= interval.high
    assert wide.half_width > 3 * narrow.half_width


def test_the_interval_covers_the_true_ratio_about_95_percent_of_the_time():
    # simulated experiments with a known true speedup of 10 (reference 10 ms, team 1 ms a batch), noise
    # independent per batch: a 95% interval should miss in roughly 5 of 100 experiments
    rng = random.Random(7)
    covered = 0
    for experiment in range(100):
        team = [[[rng.gauss(1.0, 0.2) for _ in range(16)] for _ in range(5)]]
        ref = [[[rng.gauss(10.0, 1.0) for _ in range(16)] for _ in range(5)]]
        interval = speedup_interval(team, ref, resamples=400, seed=experiment)
        covered += interval.low <= 10.0 <= interval.high
    assert 85 <= covered <= 100


def test_unpaired_round_counts_still_give_an_interval():
    # a team timed on its first-sight round only (caching suspected) against three reference rounds
    team = [[[1.0, 1.2]]]
    ref = [[[4.0, 4.8], [4.4, 4.4], [4.2, 4.6]]]
    interval = speedup_interval(team, ref, resamples=500)
    assert interval.point == pytest.approx(8.8 / 2.2)
    assert interval.low <= interval.point <= interval.high


@pytest.mark.parametrize("team, ref, message", [
    ([], [], "non-empty"),
    ([[[1.0]]], [], "same"),
    ([[[1.0, 1.0]]], [[[1.0]]], "batches"),
    ([[[]]], [[[1.0]]], "non-empty"),
])
def test_bad_shapes_are_refused(team, ref, message):
    with pytest.raises(ValueError, match=message):
        speedup_interval(team, ref, resamples=10)


@pytest.mark.parametrize("low, high, expected", [
    (8.0, 9.0, "pass"),          # the low bound reaches 8x exactly: pass
    (8.5, 12.0, "pass"),
    (6.0, 7.99, "fail"),
    (7.5, 8.5, "borderline"),
    (7.0, 8.0, "borderline"),    # the high bound reaches 8x: not a clear fail
])
def test_verdict_is_decided_on_the_interval(low, high, expected):
    assert verdict(Interval((low + high) / 2, low, high, 0.95), 8.0) == expected


@pytest.mark.parametrize("windows, expected", [
    ([], False),
    ([1.0] * 5, False),                            # six windows at least: three against three
    ([3.0, 2.0, 1.5, 1.2, 1.1, 1.0], False),       # medians 2.0 then 1.1, ranges [1.5, 3] and [1, 1.2] apart
    ([3.0, 1.0, 1.02, 1.0, 1.04, 1.01], True),     # medians 1.02 then 1.01: within 5%
    ([1.0, 1.0, 1.0, 1.0, 5.0, 1.03], True),       # one stray slow window moves no median: 1.0 then 1.03
    ([1.0, 1.0, 1.0, 1.1, 1.06, 1.07], False),     # medians 1.0 then 1.07 (7%), ranges [1, 1] and [1.06, 1.1]
    ([1.0, 1.3, 0.9, 1.2, 0.95, 1.25], True),      # medians 1.0 then 1.2, but ranges [0.9, 1.3] and
                                                   # [0.95, 1.25] overlap: noise, not a trend
    ([2.0, 1.9, 1.8, 1.7, 1.6, 1.5], False),       # a steady trend: ranges [1.8, 2] and [1.5, 1.7] apart
])
def test_settled_asks_for_no_trend_between_the_last_three_windows_and_the_three_before(windows, expected):
    assert settled(windows, 0.05) is expected


@pytest.mark.parametrize("probability, df, table", [
    (0.975, 1, 12.706), (0.975, 4, 2.776), (0.975, 9, 2.262), (0.975, 30, 2.042), (0.995, 4, 4.604),
    (0.95, 19, 1.729),
])
def test_t_quantiles_match_the_printed_tables(probability, df, table):
    # values from any Student-t table (two-sided 95%: 0.975 one-sided; 99%: 0.995; one-sided 95%: 0.95)
    assert t_quantile(probability, df) == pytest.approx(table, abs=5e-4)


def test_round_level_interval_is_worked_by_hand():
    # one task, one batch a round. Team passes 1.0, 1.2, 0.8 (mean 1.0, s^2 = 0.04); reference 10, 10, 10
    # (no spread). Var(log ratio) = 0.04 / 3 / 1.0^2 = 0.013333; se = 0.11547; t(0.975, 2) = 4.3027;
    # half-width in log = 0.49683: interval 10 * exp(-+0.49683) = [6.0848, 16.4345]
    team, ref = np.array([[1.0], [1.2], [0.8]]), np.array([[10.0], [10.0], [10.0]])
    low, high = round_level_interval([(team, ref)], 0.95)
    assert (low, high) == pytest.approx((6.0848, 16.4345), rel=1e-4)


def test_paired_drift_that_hits_both_sides_alike_cancels_in_the_round_level_interval():
    # both sides twice as slow in round 2: every round's ratio is 4, so nothing is uncertain
    team, ref = np.array([[1.0], [2.0], [1.0]]), np.array([[4.0], [8.0], [4.0]])
    assert round_level_interval([(team, ref)], 0.95) == pytest.approx((4.0, 4.0))


def test_the_interval_covers_the_true_ratio_when_the_box_drifts_between_rounds():
    # the box's state changes from round to round and a host-bound team feels it more than the reference
    # (a per-round factor, sd 20%, on the team only): five rounds of sixteen batches, true ratio 10. The
    # batches within a round cannot show that drift; the interval must still hold 10 about 95% of the time.
    rng = random.Random(11)
    covered = 0
    for experiment in range(100):
        team, ref = [], []
        for _ in range(5):
            drift = math.exp(rng.gauss(0, 0.2))
            team.append([drift * rng.gauss(1.0, 0.05) for _ in range(16)])
            ref.append([rng.gauss(10.0, 0.5) for _ in range(16)])
        interval = speedup_interval([team], [ref], resamples=400, seed=experiment)
        covered += interval.low <= 10.0 <= interval.high
    assert 88 <= covered <= 100          # the bootstrap alone holds it in 82 of these 100


def test_order_statistic_ranks_match_the_sign_test_by_hand():
    # n values bound their median by the k-th smallest and k-th largest with probability 1 - 2 P(B <= k-1),
    # B ~ Binomial(n, 1/2). At 95% that tail must be at most 2.5%:
    #   n=5:  P(B <= 0) = 1/32 = 3.1%            -> no interval at all
    #   n=6:  P(B <= 0) = 1/64 = 1.6%, P(B <= 1) = 7/64 = 10.9%          -> k = 1 (the extremes)
    #   n=9:  P(B <= 1) = 10/512 = 1.95%, P(B <= 2) = 46/512 = 9.0%      -> k = 2
    #   n=12: P(B <= 2) = 79/4096 = 1.93%, P(B <= 3) = 299/4096 = 7.3%   -> k = 3
    assert [order_statistic_rank(n, 0.95) for n in (1, 5, 6, 8, 9, 11, 12)] == [0, 0, 1, 1, 2, 2, 3]
    assert binomial_tail(6, 6) == pytest.approx(1 / 64) and binomial_tail(9, 8) == pytest.approx(10 / 512)
    assert min_audit_batches(0.95) == 6 and min_audit_batches(0.90) == 5    # 1/32 = 3.1% <= 5%


def audit_of(team_first, team_flanks, ref_first, ref_flanks, team_later=None, ref_later=None, rounds=3):
    """caching_audit on rounds made of round 0 (first sight) and `rounds - 1` later rounds equal to `*_later`
    (first sight's own values when not given)."""
    team = [list(team_first)] + [list(team_later or team_first)] * (rounds - 1)
    ref = [list(ref_first)] + [list(ref_later or ref_first)] * (rounds - 1)
    return caching_audit(team, team_flanks, ref, ref_flanks, 0.1)


def test_the_caching_audit_needs_batches_for_an_interval_and_says_so():
    # 5 batches, the team's real input twice its flanks on all: a point of 2x, but no 95% interval from 5
    # batches: T from first sight, noted, not flagged
    audit = audit_of([2] * 5, [[1, 1]] * 5, [1] * 5, [[1, 1]] * 5)
    assert audit.suspected is False and audit.later_rounds_count is False
    assert audit.flanks.gain == pytest.approx(2.0) and audit.flanks.low is None
    assert audit.later_rounds.gain == pytest.approx(1.0)
    assert audit.note == ("not enough batches to audit (5 < 6 for a 95% interval); T from first sight only: the "
                          "team's gain (real against fresh inputs beside it 2.00x, its own ratio or its ratio over the "
                          "reference's, the smaller) is above 1.10x, not decided on an interval")
    # the same without a gain: the later rounds count, and the row still says no interval could be had
    audit = audit_of([1] * 5, [[1, 1]] * 5, [1] * 5, [[1, 1]] * 5)
    assert audit.later_rounds_count and audit.note == "not enough batches to audit (5 < 6 for a 95% interval)"
    with pytest.raises(ValueError, match="one first sight and its flank times"):
        audit_of([1.0] * 6, [[1.0, 1.0]] * 5, [1.0] * 6, [[1.0, 1.0]] * 6)
    with pytest.raises(ValueError, match="same batches"):
        audit_of([1.0] * 6, [[1.0, 1.0]] * 6, [1.0] * 5, [[1.0, 1.0]] * 5)


def test_a_team_that_skips_work_on_made_up_inputs_but_one_batch_is_flagged():
    # five batches: real 1 s, flanks 0.01 s (100x); the sixth honest. The old sign test's low end was that one
    # batch (1x): no flag. The mean of log gains is 5/6 log 100: a gain of 100**(5/6) = 46.4. Resampling six
    # batches, the count k of cheating ones drawn is Binomial(6, 5/6): P(k <= 2) = 0.8%, P(k <= 3) = 6.2%,
    # so the 2.5% percentile has k = 3: exp(3/6 log 100) = 10, wholly above 1.1
    audit = audit_of([1] * 6, [[0.01, 0.01]] * 5 + [[1, 1]], [1] * 6, [[1, 1]] * 6)
    assert audit.flanks.gain == pytest.approx(100 ** (5 / 6)) and audit.flanks.team_ratio == pytest.approx(46.4, 0.01)
    assert audit.flanks.low == pytest.approx(10.0) and audit.flanks.high == pytest.approx(100.0)
    assert audit.suspected and not audit.later_rounds_count and audit.note == ""


def test_a_team_faster_in_the_later_rounds_than_at_first_sight_is_flagged():
    # flanks agree with the real input (no gain there); the later rounds take half of first sight's time
    # while the reference's take all of it: (6 / 3) / (6 / 6) = 2 on every resample
    audit = audit_of([1] * 6, [[1, 1]] * 6, [1] * 6, [[1, 1]] * 6, team_later=[0.5] * 6)
    assert audit.flanks.gain == pytest.approx(1.0)
    assert audit.later_rounds.team_ratio == pytest.approx(2.0) and audit.later_rounds.reference_ratio == 1.0
    assert audit.later_rounds.gain == audit.later_rounds.low == audit.later_rounds.high == pytest.approx(2.0)
    assert audit.suspected and not audit.later_rounds_count
    assert audit.record()["later_rounds"]["gain"] == pytest.approx(2.0)


def test_a_1_2x_gain_on_every_batch_is_flagged_and_one_within_the_tolerance_counts():
    audit = audit_of([1.2] * 8, [[1.0, 1.0]] * 8, [1.0] * 8, [[1.0, 1.0]] * 8)
    assert audit.suspected and audit.flanks.low == pytest.approx(1.2)
    # 1.05x: what the tolerance lets through, so the later rounds count (the team gains at most 5%)
    audit = audit_of([1.0] * 8, [[1.0, 1.0]] * 8, [1.0] * 8, [[1.0, 1.0]] * 8, team_later=[1 / 1.05] * 8)
    assert audit.later_rounds.gain == pytest.approx(1.05) and audit.later_rounds_count and not audit.suspected


def test_the_flanks_before_and_after_are_averaged_geometrically():
    # flanks 1 s and 4 s beside a 2 s real input: sqrt(1 * 4) = 2, a gain of exactly 1 (load that rose
    # across the batch's three calls)
    audit = audit_of([2.0] * 6, [[1.0, 4.0]] * 6, [1.0] * 6, [[1.0, 1.0]] * 6, team_later=[2.0] * 6)
    assert audit.flanks.gain == pytest.approx(1.0) and audit.later_rounds_count and not audit.suspected


def test_a_burst_on_a_few_real_calls_keeps_the_later_rounds_out_but_is_never_flagged():
    # batches 4 and 5: load arrived on the real call only (5x and 3x): a mean log gain of (log 5 + log 3) / 6,
    # 1.57x, above the tolerance, so T is taken from first sight. A resample without either batch has
    # probability (4/6)**6 = 8.8% > 2.5%, so the interval reaches 1 and nothing is flagged
    audit = audit_of([1, 1, 1, 1, 5, 3], [[1.0, 1.0]] * 6, [1.0] * 6, [[1.0, 1.0]] * 6, team_later=[1] * 6)
    assert audit.flanks.gain == pytest.approx(math.exp((math.log(5) + math.log(3)) / 6))
    assert audit.flanks.low == pytest.approx(1.0) and audit.suspected is False and not audit.later_rounds_count
    assert audit.note.startswith("T from first sight only")


def test_load_that_slows_a_whole_batch_is_not_caching():
    # load doubles batches 0-2 on the team's side and quadruples 3-5 on the reference's: each batch's calls
    # share their load, so every ratio is 1
    audit = audit_of([2, 2, 2, 1, 1, 1], [[2, 2]] * 3 + [[1, 1]] * 3, [1, 1, 1, 4, 4, 4],
                     [[1, 1]] * 3 + [[4, 4]] * 3)
    assert audit.flanks.gain == pytest.approx(1.0) and audit.flanks.low == pytest.approx(1.0)
    assert audit.later_rounds_count and audit.suspected is False


def test_the_reference_s_own_ratio_is_what_the_box_does_and_is_taken_off():
    # the made-up inputs cost every model less here (the real ones 1.3x theirs, the reference's too): the box
    # and the inputs, not the team; the team's gain over the reference's is 1
    audit = audit_of([1.3] * 6, [[1.0, 1.0]] * 6, [2.6] * 6, [[2.0, 2.0]] * 6)
    assert audit.flanks.team_ratio == pytest.approx(1.3) and audit.flanks.reference_ratio == pytest.approx(1.3)
    assert audit.flanks.gain == pytest.approx(1.0) and not audit.suspected and audit.later_rounds_count
    # and the later rounds likewise: both sides' later passes 20% faster than first sight
    audit = audit_of([1.2] * 6, [[1.2, 1.2]] * 6, [2.4] * 6, [[2.4, 2.4]] * 6, team_later=[1.0] * 6,
                     ref_later=[2.0] * 6)
    assert audit.later_rounds.team_ratio == pytest.approx(1.2) and audit.later_rounds.gain == pytest.approx(1.0)
    assert audit.later_rounds_count


def test_without_later_rounds_only_the_flanks_decide():
    audit = caching_audit([[1.0] * 6], [[1.0, 1.0]] * 6, [[1.0] * 6], [[1.0, 1.0]] * 6, 0.1)
    assert audit.later_rounds is None and audit.later_rounds_count and audit.record()["later_rounds"] is None


def test_the_reference_can_excuse_a_team_never_accuse_it():
    # beside bursty load a BERT-base reference's later rounds ran slower than its first sight (1/1.4), while a
    # sleeping team's did not move: its gain over the reference reads 1.4 with an interval above 1.1, its own
    # ratio 1. Held to the smaller, it keeps its later rounds and is not flagged
    audit = audit_of([1.0] * 6, [[1.0, 1.0]] * 6, [1.0] * 6, [[1.0, 1.0]] * 6, ref_later=[1.4] * 6)
    assert audit.later_rounds.gain == pytest.approx(1.4) and audit.later_rounds.low == pytest.approx(1.4)
    assert audit.later_rounds.team_ratio == audit.later_rounds.team_low == pytest.approx(1.0)
    assert audit.later_rounds_count and not audit.suspected and audit.note == ""
    # and a team 2x faster later while the box made the reference 2x faster too: its own ratio 2, its gain 1
    audit = audit_of([1.0] * 6, [[1.0, 1.0]] * 6, [1.0] * 6, [[1.0, 1.0]] * 6, team_later=[0.5] * 6,
                     ref_later=[0.5] * 6)
    assert audit.later_rounds.team_ratio == pytest.approx(2.0) and audit.later_rounds.gain == pytest.approx(1.0)
    assert audit.later_rounds_count and not audit.suspected
