from harness.probe.timing import make_batches, percentile, summarize_rounds, time_predict_pass, warm_up, PassResult


class FakeClock:
    """A clock that advances only when the fake model works, so seconds are exact."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_each_call_is_synchronized_on_both_sides_and_timed_alone():
    clock, events = FakeClock(), []

    def predict(batch):
        events.append("predict")
        clock.now += 0.5 * len(batch)     # 0.5 s per example
        return [x["id"] for x in batch]

    def sync():
        events.append("sync")
        clock.now += 100.0                # queued device work before the call must not be billed

    result = time_predict_pass(predict, make_batches([{"id": i} for i in range(5)], 2), sync, clock)
    # 5 examples in batches of 2, 2, 1: the sync before the clock starts and after the call returns
    assert events == ["sync", "predict", "sync"] * 3
    assert result.outputs == ([0, 1], [2, 3], [4])
    # the second sync's 100 s lands after the call but before the clock stops: it belongs to the batch,
    # exactly as waiting for the batch's own kernels should
    assert result.batch_seconds == (101.0, 101.0, 100.5)


def test_warm_up_cycles_over_batches_untimed():
    seen = []
    warm_up(lambda b: seen.append(b[0]["id"]), make_batches([{"id": i} for i in range(3)], 2), 3, lambda: None)
    assert seen == [0, 2, 0]


def test_percentile_by_hand():
    # sorted [1,2,3,4]: p50 at position 1.5 -> 2.5; p90 at position 2.7 -> 3 + 0.7*(4-3) = 3.7
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert abs(percentile([4, 1, 3, 2], 90) - 3.7) < 1e-12
    assert percentile([7.0], 90) == 7.0


def test_summary_median_spread_and_noise():
    passes = [PassResult((1.0, 1.0), ()), PassResult((1.5, 1.5), ()), PassResult((1.2, 1.0), ())]
    s = summarize_rounds(passes, n_examples=4, noisy_spread=0.10)
    # rounds 2.0, 3.0, 2.2 -> median 2.2; spread (3.0-2.0)/2.2 = 0.4545
    assert s["rounds_s"] == [2.0, 3.0, 2.2]
    assert abs(s["median_round_s"] - 2.2) < 1e-12
    assert abs(s["spread"] - 1.0 / 2.2) < 1e-12 and s["noisy"] is True
    assert abs(s["time_per_example_s"] - 0.55) < 1e-12
    assert s["n_batches"] == 2
