"""The timekeeper against in-process fake workers (a thread on a socketpair) with controllable sleep models."""

import json
import os
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.measurement import task_records
from harness.probe import channel
from harness.spec import load_spec
from harness.timekeeper import (MIN_WINDOW_S, TimingPlan, checked_predictions, make_batches, measure_task,
                                predict_frames, timed_pass)
from harness.warmup_inputs import warmup_examples
from harness.worker_link import WorkerFailed, WorkerLink, WorkerTimeout

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPEC = load_spec(FIXTURES / "spec_small.toml")
EXAMPLES = [{"id": i, "label_free": f"句子{i}"} for i in range(10)]
LOADS = {"team": {"task": "csl"}, "reference": {"task": "csl"}}


class FakeWorker(threading.Thread):
    """Answers the worker protocol; `delay(batch, seen)` says how long predict sleeps."""

    def __init__(self, sock, delay, log):
        super().__init__(daemon=True)
        self.sock, self.delay, self.log, self.seen = sock, delay, log, set()

    def run(self):
        try:
            while True:
                nonce, request = channel.recv_request(self.sock)
                if request["op"] == "predict":
                    ids = tuple(e["id"] for e in request["batch"])
                    self.log.append(ids)
                    time.sleep(self.delay(ids, ids in self.seen))
                    self.seen.add(ids)
                    channel.send(self.sock, {"ok": True, "nonce": nonce, "predictions": [
                        {"id": i, "label": "0"} for i in ids]})
                elif request["op"] == "stop":
                    return
                else:
                    channel.send(self.sock, {"ok": True, "nonce": nonce, "environment": {}, "precision": {}})
        except channel.ChannelError:
            return


def link(name, delay, log, deadline_s=30.0):
    host, worker = socket.socketpair()
    FakeWorker(worker, delay, log).start()
    return WorkerLink(name, host, time.monotonic() + deadline_s, {"protocol": channel.PROTOCOL_VERSION})


def plan(**overrides):
    values = dict(run_seed=11, rounds=3, max_rounds=3, warmup_min_s=0.0, warmup_max_s=0.3, settle_tolerance=0.5,
                  confidence=0.95, min_speedup=8.0)
    values.update(overrides)
    return TimingPlan(**values)


def test_rounds_interleave_shuffle_and_keep_canonical_order():
    team_log, ref_log = [], []
    team = link("team", lambda ids, seen: 0.002, team_log)
    ref = link("reference", lambda ids, seen: 0.008, ref_log)
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    assert len(times.orders) == 3 and all(sorted(o) == list(range(5)) for o in times.orders)
    assert len({tuple(o) for o in times.orders}) > 1                   # shuffled afresh each round
    assert all(len(r) == 5 for r in times.team.rounds + times.reference.rounds)
    # round 0's predictions are in canonical order whatever the order they were sent in
    assert [p["id"] for p in times.team.predictions[0]] == list(range(10))
    assert 2.0 < times.interval.point < 6.0 and times.interval.low <= times.interval.point <= times.interval.high
    # timed batches arrive in the shuffled order of each round: one first-sight pass, then windows of passes
    timed = [ids for ids in team_log if ids[0] < 10]
    assert len(timed) == 5 * times.team.passes
    assert [ids[0] // 2 for ids in timed[:5]] == times.orders[0]
    assert [ids[0] // 2 for ids in timed[5:10]] == times.orders[1]


def test_round_0_is_one_pass_and_later_rounds_are_windows_of_at_least_100_ms():
    team_log, ref_log = [], []
    team = link("team", lambda ids, seen: 0.002, team_log)          # 10 ms a pass of 5 batches
    ref = link("reference", lambda ids, seen: 0.03, ref_log)        # 150 ms a pass: a window by itself
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    team_passes, ref_passes = times.team.passes, times.reference.passes
    assert ref_passes == 3                                           # one pass in each of the 3 rounds
    window_pass_s = [sum(r) for r in times.team.rounds[1:]]          # mean seconds of a pass, per window
    assert team_passes - 1 >= 2 * 4                                  # ~10 ms passes: several a window
    assert (team_passes - 1) * sum(window_pass_s) / 2 >= 0.9 * 2 * MIN_WINDOW_S
    # a window's per-batch figure is the mean over its passes: about 2 ms, not 10 passes' worth
    assert all(0.0015 < b < 0.01 for r in times.team.rounds[1:] for b in r)
    # first sight's predictions are kept, every later pass compared with them: consistency covers every call
    assert len(times.team.predictions) == 1 and len(times.team.predictions[0]) == 10
    assert times.team.differing_passes == 0


def test_each_phase_of_a_task_is_recorded_within_its_wall_time():
    team = link("team", lambda ids, seen: 0.002, [])
    ref = link("reference", lambda ids, seen: 0.03, [])
    started = time.monotonic()
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS, after_load=lambda: time.sleep(0.05))
    wall = time.monotonic() - started
    phases = times.phase_s
    assert set(phases) == {"load", "after_load", "warmup", "first_sight", "rounds"}
    assert phases["after_load"] >= 0.05 and 0 <= sum(phases.values()) <= wall
    # two later rounds, each a window of at least MIN_WINDOW_S per side; round 0 holds each side's first sight
    assert phases["rounds"] >= 2 * 2 * MIN_WINDOW_S
    assert phases["first_sight"] >= sum(times.reference.rounds[0]) + sum(times.team.rounds[0])
    assert phases["warmup"] >= sum(times.reference.warmup_windows_s)


def test_warm_up_never_shows_a_timed_input_first():
    team_log = []
    team = link("team", lambda ids, seen: 0.001, team_log)
    ref = link("reference", lambda ids, seen: 0.001, [])
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    first_timed = next(i for i, ids in enumerate(team_log) if ids[0] < 10)
    warm = team_log[:first_timed]
    timed_ids = {e["id"] for e in EXAMPLES}
    assert warm and all(isinstance(i, int) and i not in timed_ids for ids in warm for i in ids)
    # after it: the timed inputs; the twins of round 0, warm-up inputs seen before; and round 0's spares,
    # fresh inputs of the same shapes, never timed (drawn like warm-up inputs, from another seed)
    spares = {tuple(e["id"] for e in b) for b in make_batches(warmup_examples(EXAMPLES, "11:spare"), 2)}
    later = team_log[first_timed:]
    assert sum(ids[0] < 10 for ids in later) == 5 * times.team.passes
    assert all(ids in set(warm) or ids in spares for ids in later if ids[0] >= 10)
    assert times.team.warmup_windows_s and times.team.first_call_s > 0


class SideLog(list):
    """One log for both workers: each predict call appended as (side, ids)."""

    def __init__(self, shared, side):
        super().__init__()
        self.shared, self.side = shared, side

    def append(self, ids):
        self.shared.append((self.side, ids))


def test_first_sight_takes_turns_a_block_of_about_100_ms_at_a_time():
    calls = []
    team = link("team", lambda ids, seen: 0.002, SideLog(calls, "team"))
    ref = link("reference", lambda ids, seen: 0.03, SideLog(calls, "reference"))   # 3 batches ~ 100 ms
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    assert times.first_sight_block == 3
    timed = [(side, ids[0] // 2) for side, ids in calls if ids[0] < 10]
    first_sight = timed[:10]
    # blocks [0:3] then [3:5] of round 0's order, the team opening the first block, the reference the second
    order = times.orders[0]
    assert first_sight == ([("team", b) for b in order[:3]] + [("reference", b) for b in order[:3]]
                           + [("reference", b) for b in order[3:]] + [("team", b) for b in order[3:]])
    assert [p["id"] for p in times.team.predictions[0]] == list(range(10))
    assert all(s > 0 for s in times.team.rounds[0] + times.reference.rounds[0])


def test_in_first_sight_each_batch_sits_between_its_twins_and_a_fast_side_s_follows_a_spare():
    calls = []
    team = link("team", lambda ids, seen: 0.002, SideLog(calls, "team"))
    ref = link("reference", lambda ids, seen: 0.12, SideLog(calls, "reference"))   # a batch is a window
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(rounds=2, max_rounds=2), LOADS)
    assert times.first_sight_block == 1
    ids_of = [tuple(e["id"] for e in b) for b in make_batches(EXAMPLES, 2)]
    twin_of = dict(zip([tuple(e["id"] for e in b) for b in make_batches(warmup_examples(EXAMPLES, 11), 2)], ids_of))
    spare_of = dict(zip([tuple(e["id"] for e in b) for b in make_batches(warmup_examples(EXAMPLES, "11:spare"), 2)],
                        ids_of))
    timed_positions = [i for i, (_, ids) in enumerate(calls) if ids[0] < 10]
    round0 = calls[timed_positions[0] - 2:timed_positions[9] + 2]     # from the first spare to the last twin
    for i, (side, ids) in enumerate(round0):
        if ids[0] < 10:       # a first sight: right after its own twin and right before it, on the same side
            assert round0[i - 1][0] == side and twin_of[round0[i - 1][1]] == ids
            assert round0[i + 1][0] == side and twin_of[round0[i + 1][1]] == ids
            if side == "team":    # the fast side: the pair right after a spare of the same batch's shape
                assert round0[i - 2][0] == "team" and spare_of[round0[i - 2][1]] == ids
            else:                 # the slow one (a batch is a window): no spare
                assert round0[i - 2][1] not in spare_of
    assert sum(ids in spare_of for _, ids in round0) == 5
    assert all(t > 0 for pair in times.team.twins_s + times.reference.twins_s for t in pair)
    assert len(times.team.twins_s) == 5 and all(len(pair) == 2 for pair in times.team.twins_s)


def test_a_team_caching_by_input_is_suspected_and_timed_on_first_sight():
    team = link("team", lambda ids, seen: 0.0 if seen else 0.01, [])
    ref = link("reference", lambda ids, seen: 0.01, [])
    examples = [{"id": i, "label_free": f"句子{i}"} for i in range(12)]   # six batches: the fewest audited at 95%
    times = measure_task(team, ref, "csl", examples, 2, plan(), LOADS)
    team_record, _ = task_records("csl", times, len(examples), SPEC)
    assert team_record["caching_suspected"] and team_record["caching_audit"]["above_tolerance"] == 6
    assert team_record["scored_rounds_s"] == times.team.rounds[:1]
    assert team_record["time_s"] == pytest.approx(sum(times.team.rounds[0]))
    # five batches give no 95% interval: the same cache is noted, not flagged
    times = measure_task(link("team", lambda ids, seen: 0.0 if seen else 0.01, []),
                         link("reference", lambda ids, seen: 0.01, []), "csl", EXAMPLES, 2, plan(), LOADS)
    team_record, _ = task_records("csl", times, len(EXAMPLES), SPEC)
    assert not team_record["caching_suspected"] and team_record["caching_audit"]["note"].startswith("not enough")


def test_a_straddling_interval_earns_more_rounds_up_to_the_budget():
    # both sides draw each batch's time from the same very wide spread (a pass of 5 batches is about 125 ms, so a
    # window holds one pass and each batch one draw): the interval straddles 1x
    spread = random.Random(5)
    team = link("team", lambda ids, seen: spread.choice([0.0005, 0.05]), [])
    ref = link("reference", lambda ids, seen: spread.choice([0.0005, 0.05]), [])
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(rounds=2, max_rounds=4, min_speedup=1.0), LOADS)
    assert len(times.orders) == 4 and len(times.team.rounds) == 4 and len(times.reference.rounds) == 4


def test_a_silent_worker_times_out_at_its_deadline():
    host, worker = socket.socketpair()
    silent = WorkerLink("team", host, time.monotonic() + 0.3, {})
    started = time.monotonic()
    with pytest.raises(WorkerTimeout) as caught:
        silent.round_trip(channel.request_body({"op": "predict", "batch": []}))
    assert caught.value.side == "team" and time.monotonic() - started < 2
    worker.close()


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("reply, message", [
    (b"\x00\x00\x00\x03abc", "not UTF-8 JSON"),
    ([1, 2], "replied list"),
    ({"ok": False, "error": "boom"}, "boom"),
    ({"ok": True, "predictions": [{"id": 0, "label": "0"}]}, "1 predictions for a batch of 2"),
    ({"ok": True, "predictions": [{"id": 5, "label": "0"}, {"id": 1, "label": "0"}]}, "does not match"),
    ({"ok": True, "predictions": [["id", 0], {"id": 1, "label": "0"}]}, "a list, not an object"),
    ({"ok": True, "predictions": {"id": 0}}, "expected a list of predictions"),
    ({"ok": True, "predictions": None}, "expected a list of predictions"),
    (channel._frame(DEEP), "nests deeper"),
    (channel._frame(b'{"ok": true, "predictions": ' + b"[" * 40 + b"]" * 40 + b"}"), "nests deeper than 32"),
    (b"\xff\xff\xff\xff", "limit"),                                # a huge frame announced
    (channel.encode({"ok": True, "nonce": "0" * 16, "predictions": []}), "does not echo"),   # a guessed nonce
    (channel.encode({"ok": True, "predictions": []}), "does not echo"),                     # none at all
])
def test_bad_replies_are_the_workers_failure_not_the_hosts(reply, message):
    """Whatever a worker replies (a dict is sent as JSON with the request's nonce, bytes as they are), the
    host raises WorkerFailed for that side: never another exception, never a crash."""
    host, worker = socket.socketpair()

    def answer():
        nonce, _ = channel.recv_request(worker)
        if isinstance(reply, bytes):
            worker.sendall(reply)
        else:
            worker.sendall(channel.encode({"nonce": nonce, **reply} if isinstance(reply, dict) else reply))

    threading.Thread(target=answer, daemon=True).start()
    team = WorkerLink("team", host, time.monotonic() + 5, {})
    batch = [{"id": 0}, {"id": 1}]
    with pytest.raises(WorkerFailed, match=message) as caught:
        timed_pass(team, "csl", [batch], predict_frames([batch]), [0])
    assert caught.value.side == "team"


def test_a_reply_sent_ahead_of_its_request_fails_that_side_before_any_clock_starts():
    host, worker = socket.socketpair()
    worker.sendall(channel.encode({"ok": True, "predictions": [{"id": 0, "label": "0"}]}))   # written early
    time.sleep(0.05)
    team = WorkerLink("team", host, time.monotonic() + 5, {})
    with pytest.raises(WorkerFailed, match="had not asked for") as caught:
        timed_pass(team, "csl", [[{"id": 0}]], predict_frames([[{"id": 0}]]), [0])
    assert caught.value.side == "team"
    with pytest.raises(BlockingIOError):                      # and the request was never sent
        worker.recv(64, socket.MSG_DONTWAIT)


def test_an_extra_frame_after_a_good_reply_fails_the_next_request():
    host, worker = socket.socketpair()

    def answer():
        nonce, _ = channel.recv_request(worker)
        worker.sendall(channel.encode({"ok": True, "nonce": nonce, "predictions": [{"id": 0, "label": "0"}]})
                       + channel.encode({"ok": True, "nonce": nonce, "predictions": []}))

    threading.Thread(target=answer, daemon=True).start()
    team = WorkerLink("team", host, time.monotonic() + 5, {})
    frames = predict_frames([[{"id": 0}]])
    timed_pass(team, "csl", [[{"id": 0}]], frames, [0])
    time.sleep(0.05)
    with pytest.raises(WorkerFailed, match="had not asked for"):
        timed_pass(team, "csl", [[{"id": 0}]], frames, [0])


def test_only_the_expected_process_may_connect(tmp_path):
    server, path = channel.listen(tmp_path)
    try:
        client = channel.connect(path)
        channel.send(client, {"ok": True, "protocol": channel.PROTOCOL_VERSION})
        with pytest.raises(WorkerFailed, match="other than the team worker"):
            WorkerLink.accept("team", server, lambda: True, time.monotonic() + 5, expected_pid=1)
        client2 = channel.connect(path)
        channel.send(client2, {"ok": True, "protocol": channel.PROTOCOL_VERSION})
        link = WorkerLink.accept("team", server, lambda: True, time.monotonic() + 5, expected_pid=os.getpid())
        assert link.hello["protocol"] == channel.PROTOCOL_VERSION
        link.stop()
        client.close()
        client2.close()
    finally:
        server.close()


def test_a_failure_during_warm_up_also_names_the_timed_example_whose_shape_it_had():
    from harness.timekeeper import named_for_people

    warm = [{"id": "warmup-00a1b2c3d4"}, {"id": 1_000_004_321}]
    timed = [{"id": "FIX_0_QUERY_0"}, {"id": 7}]
    exc = named_for_people(WorkerFailed("invalid prediction for example 1000004321: no label", "team"), warm, timed)
    assert str(exc) == "invalid prediction for example 1000004321 (a warm-up input shaped like 7): no label"
    assert exc.side == "team" and type(exc) is WorkerFailed
    late = named_for_people(WorkerTimeout("team worker passed its deadline", "team"), warm, timed)
    assert isinstance(late, WorkerTimeout) and str(late) == "team worker passed its deadline"


def _reply_body(predictions, nonce="ab"):
    return json.dumps({"ok": True, "nonce": nonce, "predictions": predictions}).encode()


def test_a_prediction_carrying_keys_outside_its_tasks_format_is_that_sides_failure():
    batch = [{"id": 0, "abst": "x", "keyword": ["y"]}]
    assert checked_predictions("csl", batch, _reply_body([{"id": 0, "label": "1"}]), "team", "ab") == [
        {"id": 0, "label": "1"}]
    with pytest.raises(WorkerFailed, match=r"keys \['cache'\] are not in csl's prediction format"):
        checked_predictions("csl", batch, _reply_body([{"id": 0, "label": "1", "cache": "x" * 10**5}]), "team", "ab")
    question = [{"id": "q1", "context": "c", "question": "q"}]
    with pytest.raises(WorkerFailed, match="not in cmrc2018's prediction format"):
        checked_predictions("cmrc2018", question, _reply_body([{"id": "q1", "answer": "a", "label": "b"}]),
                            "team", "ab")


def test_a_side_keeps_first_sight_only_and_counts_later_passes_that_answer_otherwise():
    from harness.timekeeper import SideTimes

    side = SideTimes()
    first = [{"id": 0, "label": "1"}, {"id": 1, "label": "0"}]
    side.keep([first])
    side.keep([[dict(p) for p in first] for _ in range(50)])          # a window of fifty equal passes
    assert (side.passes, side.differing_passes, side.predictions) == (51, 0, [first])
    side.keep([[{"id": 0, "label": "0"}, {"id": 1, "label": "0"}], first])   # one pass answers otherwise
    assert (side.passes, side.differing_passes, len(side.predictions)) == (53, 1, 1)
    assert side.predictions[0] is first                              # the scored pass is still first sight's
