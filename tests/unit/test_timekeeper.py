"""The timekeeper against in-process fake workers (a thread on a socketpair) with controllable sleep models."""

import json
import re
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
from harness import warmup_inputs
from harness.timekeeper import MIN_WINDOW_S, TimingPlan, checked_predictions, measure_task, timed_pass
from harness.timed_inputs import predict_frames
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


@pytest.fixture
def makers(monkeypatch):
    """Every InputMaker the timekeeper makes, each recording what its fresh() calls made (call 0: warm-up;
    1 and 2: round 0's flanks; 3: its spares; then one call per later pass), so a test can say where an input
    it sees came from (origin)."""
    made = []

    class Recording(warmup_inputs.InputMaker):
        def __init__(self, examples, seed):
            super().__init__(examples, seed)
            self.fresh_ids = []
            made.append(self)

        def fresh(self, examples):
            out = super().fresh(examples)
            self.fresh_ids.append([e["id"] for e in out])
            return out

        def origin(self, ids):
            """("real", batch) or ("fresh", fresh() call, batch) of one call's ids (batches of 2)."""
            try:
                return "real", self.real_id(ids[0]) // 2
            except KeyError:
                call = next(c for c, made_ids in enumerate(self.fresh_ids) if ids[0] in made_ids)
                return "fresh", call, self.fresh_ids[call].index(ids[0]) // 2

    monkeypatch.setattr(warmup_inputs, "InputMaker", Recording)
    return made


WARM, FLANKS, SPARES, LATER = 0, (1, 2), 3, 4      # the fresh() calls in the order the timekeeper makes them


def plan(**overrides):
    values = dict(run_seed=11, rounds=3, max_rounds=3, warmup_min_s=0.0, warmup_max_s=0.3, settle_tolerance=0.5,
                  confidence=0.95, min_speedup=8.0, seed=0, caching_tolerance=0.5, threads=0)
    values.update(overrides)
    return TimingPlan(**values)


def test_rounds_interleave_shuffle_and_keep_canonical_order(makers):
    team_log, ref_log = [], []
    team = link("team", lambda ids, seen: 0.002, team_log)
    ref = link("reference", lambda ids, seen: 0.008, ref_log)
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    assert len(times.orders) == 3 and all(sorted(o) == list(range(5)) for o in times.orders)
    assert len({tuple(o) for o in times.orders}) > 1                   # shuffled afresh each round
    assert all(len(r) == 5 for r in times.team.rounds + times.reference.rounds)
    # round 0's predictions carry the real ids back, in canonical order whatever the order they were sent in
    assert [p["id"] for p in times.team.predictions[0]] == list(range(10))
    assert 2.0 < times.interval.point < 6.0 and times.interval.low <= times.interval.point <= times.interval.high
    # the real inputs are sent once, in round 0's order, under ids that are not theirs
    maker, = makers
    origins = [maker.origin(ids) for ids in team_log]
    assert [o[1] for o in origins if o[0] == "real"] == times.orders[0]
    assert not any(i in range(10) for ids in team_log for i in ids)
    # every later round is built as round 0, newly made inputs in the real ones' place: four passes made a
    # round (the stand-in, two flanks, the spares), each batch called once from each, in the round's order
    later = [o for o in origins if o[0] == "fresh" and o[1] >= LATER]
    assert len(later) == 5 * 4 * (len(times.orders) - 1)
    passes = [[o[2] for o in later if o[1] == call] for call in sorted({o[1] for o in later})]
    assert len(passes) == 4 * (len(times.orders) - 1)
    assert all(p == times.orders[1 + k // 4] for k, p in enumerate(passes))


def test_nothing_timed_is_ever_sent_twice(makers):
    team_log = []
    team = link("team", lambda ids, seen: 0.002, team_log)
    ref = link("reference", lambda ids, seen: 0.03, [])
    measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    maker, = makers
    after_warm_up = [ids for ids in team_log if maker.origin(ids)[:2] != ("fresh", WARM)]
    assert len(after_warm_up) > 5 * 4 and len(set(after_warm_up)) == len(after_warm_up)


def test_every_later_round_is_built_as_round_0_and_times_each_batch_by_its_three_calls(makers):
    """Like with like: the team is timed in later rounds as on its first sight (a spare, then three calls a
    batch in a drawn order, the sides taking turns a block at a time), never in windows of hot repeated passes
    (which read an honest 0.5 ms model 1.46x faster than its first sight and flagged it)."""
    team_log = []
    team = link("team", lambda ids, seen: 0.002, team_log)          # warmed: a spare before each batch
    ref = link("reference", lambda ids, seen: 0.03, [])
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    maker, = makers
    origins = [maker.origin(ids) for ids in team_log]
    rounds = [[o for o in origins if o[0] == "real" or o[1] in (*FLANKS, SPARES)]] + \
        [[o for o in origins if o[0] == "fresh" and o[1] in range(LATER + 4 * k, LATER + 4 * k + 4)] for k in range(2)]
    for calls in rounds:       # per batch: a spare, then the batch's three timed calls
        assert len(calls) == 20 and [c[-1] for c in calls[::4]] == [c[-1] for c in calls[3::4]]
    assert times.team.passes == times.reference.passes == 3 and len(times.team.rounds) == 3
    assert all(0.0015 < b < 0.05 for r in times.team.rounds for b in r)   # a call's worth a batch (of 2 ms)
    assert len(times.team.predictions) == 1 and len(times.team.predictions[0]) == 10


def test_each_phase_of_a_task_is_recorded_within_its_wall_time():
    team = link("team", lambda ids, seen: 0.002, [])
    ref = link("reference", lambda ids, seen: 0.03, [])
    started = time.monotonic()
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS, after_load=lambda: time.sleep(0.05))
    wall = time.monotonic() - started
    phases = times.phase_s
    assert set(phases) == {"load", "after_load", "warmup", "first_sight", "rounds"}
    assert phases["after_load"] >= 0.05 and 0 <= sum(phases.values()) <= wall
    # two later rounds, each holding every batch's calls of both sides; round 0 holds each side's first sight
    assert phases["rounds"] >= sum(sum(r) for side in (times.team, times.reference) for r in side.rounds[1:])
    assert phases["first_sight"] >= sum(times.reference.rounds[0]) + sum(times.team.rounds[0])
    assert phases["warmup"] >= sum(times.reference.warmup_windows_s)


def test_warm_up_never_shows_a_timed_input_first(makers):
    team_log = []
    team = link("team", lambda ids, seen: 0.001, team_log)
    ref = link("reference", lambda ids, seen: 0.001, [])
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    maker, = makers
    origins = [maker.origin(ids) for ids in team_log]
    first_real = origins.index(next(o for o in origins if o[0] == "real"))
    warm = origins[:first_real]
    # before the first real call: warm-up inputs, then round 0's spare and flanks of the first batch at most
    assert warm and all(o[:2] == ("fresh", WARM) for o in warm[:-3])
    assert all(o[1] in (WARM, *FLANKS, SPARES) for o in warm[-3:])
    assert times.team.warmup_windows_s and times.team.first_call_s > 0


class SideLog(list):
    """One log for both workers: each predict call appended as (side, ids)."""

    def __init__(self, shared, side):
        super().__init__()
        self.shared, self.side = shared, side

    def append(self, ids):
        self.shared.append((self.side, ids))


def test_first_sight_takes_turns_a_block_of_about_100_ms_at_a_time(makers):
    calls = []
    team = link("team", lambda ids, seen: 0.002, SideLog(calls, "team"))
    ref = link("reference", lambda ids, seen: 0.03, SideLog(calls, "reference"))   # 3 batches ~ 100 ms
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(), LOADS)
    assert times.first_sight_block == 3
    maker = makers[0]
    first_sight = [(side, maker.origin(ids)[1]) for side, ids in calls if maker.origin(ids)[0] == "real"]
    # blocks [0:3] then [3:5] of round 0's order, the team opening the first block, the reference the second
    order = times.orders[0]
    assert first_sight == ([("team", b) for b in order[:3]] + [("reference", b) for b in order[:3]]
                           + [("reference", b) for b in order[3:]] + [("team", b) for b in order[3:]])
    assert [p["id"] for p in times.team.predictions[0]] == list(range(10))
    assert all(s > 0 for s in times.team.rounds[0] + times.reference.rounds[0])


def test_in_first_sight_each_real_batch_is_timed_beside_two_fresh_flanks_in_a_drawn_order(makers):
    calls = []
    team = link("team", lambda ids, seen: 0.002, SideLog(calls, "team"))
    ref = link("reference", lambda ids, seen: 0.12, SideLog(calls, "reference"))   # a batch is a window
    times = measure_task(team, ref, "csl", EXAMPLES, 2, plan(rounds=2, max_rounds=2), LOADS)
    assert times.first_sight_block == 1
    maker, = makers
    origins = [(side, maker.origin(ids)) for side, ids in calls]
    round0 = [(side, o) for side, o in origins if o[0] == "real" or o[1] in (*FLANKS, SPARES)]
    positions = []
    for side in ("team", "reference"):
        mine = [o for s, o in round0 if s == side]
        per_batch = 4 if side == "team" else 3      # the fast side's three timed calls follow a spare
        assert len(mine) == 5 * per_batch
        for start in range(0, len(mine), per_batch):
            group = mine[start:start + per_batch]
            assert len({o[-1] for o in group}) == 1                  # one batch's shape
            if side == "team":
                assert group[0][:2] == ("fresh", SPARES)
            timed = group[-3:]
            kinds = [o[0] if o[0] == "real" else f"flank{o[1]}" for o in timed]
            assert sorted(kinds) == ["flank1", "flank2", "real"]
            positions.append(kinds.index("real"))
    # the real input's place among the three is drawn per batch and side: not always the same
    assert len(set(positions)) > 1
    assert all(t > 0 for pair in times.team.flanks_s + times.reference.flanks_s for t in pair)
    assert len(times.team.flanks_s) == 5 and all(len(pair) == 2 for pair in times.team.flanks_s)


def test_a_team_caching_every_input_gains_nothing_and_is_not_flagged(makers):
    # by content: served from its cache, without work, whatever it has seen before (warm-up inputs repeat)
    team = link("team", lambda ids, seen: 0.0 if seen else 0.01, [])
    ref = link("reference", lambda ids, seen: 0.01, [])
    examples = [{"id": i, "label_free": f"句子{i}"} for i in range(12)]   # six batches: an interval at 95%
    times = measure_task(team, ref, "csl", examples, 2, plan(), LOADS)
    team_record, _ = task_records("csl", times, len(examples), TimingPlan.from_spec(SPEC, 11))
    assert not team_record["caching_suspected"]
    # every timed call was work: each batch's mean at least its 10 ms, in every round, so T too (whether the
    # later rounds counted or a burst of load on the box kept them out)
    assert all(b >= 0.0095 for r in times.team.rounds for b in r)
    assert team_record["time_s"] >= 6 * 0.0095


def skips_made_up_inputs(makers, honest_batch=None, from_call=0):
    """A fake team's delay: 10 ms on real inputs, nothing on made-up ones from fresh() call `from_call` on,
    except on batch `honest_batch` (its shape)."""
    def delay(ids, seen):
        origin = makers[0].origin(ids)
        if origin[0] == "real" or origin[1] < from_call or origin[-1] == honest_batch:
            return 0.01
        return 0.0
    return delay


def test_a_team_skipping_work_on_made_up_inputs_but_one_batch_is_caught_and_timed_on_first_sight(makers):
    examples = [{"id": i, "label_free": f"句子{i}"} for i in range(12)]   # six batches
    team = link("team", skips_made_up_inputs(makers, honest_batch=3), [])
    times = measure_task(team, link("reference", lambda ids, seen: 0.01, []), "csl", examples, 2, plan(), LOADS)
    team_record, _ = task_records("csl", times, len(examples), TimingPlan.from_spec(SPEC, 11))
    audit = team_record["caching_audit"]
    assert team_record["caching_suspected"] and not audit["later_rounds_counted"]
    assert all(min(audit[key]["low"], audit[key]["team_low"]) > 1.1 for key in ("flanks", "later_rounds"))
    assert team_record["scored_rounds_s"] == times.team.rounds[:1]
    assert team_record["time_s"] == pytest.approx(sum(times.team.rounds[0])) and team_record["time_s"] >= 6 * 0.0095


def test_a_team_honest_in_round_0_but_not_after_is_caught_by_the_later_rounds(makers):
    examples = [{"id": i, "label_free": f"句子{i}"} for i in range(12)]
    team = link("team", skips_made_up_inputs(makers, from_call=LATER), [])
    times = measure_task(team, link("reference", lambda ids, seen: 0.01, []), "csl", examples, 2, plan(), LOADS)
    team_record, _ = task_records("csl", times, len(examples), TimingPlan.from_spec(SPEC, 11))
    audit = team_record["caching_audit"]
    # round 0 shows nothing (the flanks cost the real input's work; only noise of the box there), the later
    # rounds everything: first sight against passes of nothing
    assert audit["flanks"]["gain"] < 1.5 and audit["later_rounds"]["low"] > 1.1
    assert team_record["caching_suspected"] and team_record["scored_rounds_s"] == times.team.rounds[:1]


def test_with_too_few_batches_for_an_interval_a_gain_is_noted_and_t_is_first_sight(makers):
    team = link("team", skips_made_up_inputs(makers), [])
    times = measure_task(team, link("reference", lambda ids, seen: 0.01, []), "csl", EXAMPLES, 2, plan(), LOADS)
    team_record, _ = task_records("csl", times, len(EXAMPLES), TimingPlan.from_spec(SPEC, 11))
    audit = team_record["caching_audit"]
    assert not team_record["caching_suspected"] and audit["flanks"]["low"] is None
    assert audit["note"].startswith("not enough batches to audit (5 < 6 for a 95% interval); T from first sight")
    assert team_record["scored_rounds_s"] == times.team.rounds[:1]


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


def test_a_failure_names_the_real_example_behind_an_opaque_id():
    from harness.timekeeper import named_for_people

    shown = [("the timed example", [{"id": "in-0001"}, {"id": "in-0002"}]),
             ("a warm-up input shaped like", [{"id": "in-0003"}, {"id": "in-0004"}])]
    timed = [{"id": "FIX_0_QUERY_0"}, {"id": 7}]
    exc = named_for_people(WorkerFailed("invalid prediction for example 'in-0004': no label", "team"), shown, timed)
    assert str(exc) == "invalid prediction for example 'in-0004' (a warm-up input shaped like 7): no label"
    assert exc.side == "team" and type(exc) is WorkerFailed
    exc = named_for_people(WorkerFailed("invalid prediction for example 'in-0001': no label", "team"), shown, timed)
    assert str(exc) == "invalid prediction for example 'in-0001' (the timed example 'FIX_0_QUERY_0'): no label"
    late = named_for_people(WorkerTimeout("team worker passed its deadline", "team"), shown, timed)
    assert isinstance(late, WorkerTimeout) and str(late) == "team worker passed its deadline"


def test_a_later_pass_s_predictions_are_checked_and_a_bad_one_names_the_real_example_it_was_shaped_like(makers):
    class BadLater(FakeWorker):
        def run(self):
            try:
                while True:
                    nonce, request = channel.recv_request(self.sock)
                    if request["op"] == "stop":
                        return
                    if request["op"] != "predict":
                        channel.send(self.sock, {"ok": True, "nonce": nonce, "environment": {}, "precision": {}})
                        continue
                    ids = [e["id"] for e in request["batch"]]
                    origin = makers[0].origin(ids)
                    late = origin[0] == "fresh" and origin[1] >= LATER
                    channel.send(self.sock, {"ok": True, "nonce": nonce, "predictions": [
                        {"id": i, "label": "maybe" if late else "0"} for i in ids]})
            except channel.ChannelError:
                return

    host, worker = socket.socketpair()
    BadLater(worker, None, []).start()
    team = WorkerLink("team", host, time.monotonic() + 30, {"protocol": channel.PROTOCOL_VERSION})
    with pytest.raises(WorkerFailed, match="a fresh input shaped like") as caught:
        measure_task(team, link("reference", lambda ids, seen: 0.001, []), "csl", EXAMPLES, 2, plan(), LOADS)
    # the first later call (the spare of the first batch in round 1's order) is checked right away: the
    # message names its example and the real example whose shape it had
    named = int(re.search(r"example (\d+) \(a fresh input shaped like (\d+)\)", str(caught.value)).group(1))
    call = next(c for c, ids in enumerate(makers[0].fresh_ids) if named in ids)
    shaped_like = int(re.search(r"shaped like (\d+)", str(caught.value)).group(1))
    assert call >= LATER and makers[0].fresh_ids[call].index(named) == shaped_like
    assert caught.value.side == "team"


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


