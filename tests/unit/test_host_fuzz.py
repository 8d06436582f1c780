"""Fuzz: a worker that answers one request of a task with hostile bytes (malformed, deep, huge, extra, early,
or well-formed with fields of the wrong types). Whatever it sends, the host ends in WorkerFailed for that
side (a row) or carries on: never another exception, never a crash."""

import json
import random
import socket
import threading
import time

import pytest

from harness import replies
from harness.probe import channel
from harness.timekeeper import TimingPlan, measure_task
from harness.worker_link import WorkerFailed, WorkerLink

EXAMPLES = [{"id": i, "abst": f"句子{i}", "keyword": ["词"]} for i in range(6)]
LOADS = {"team": {"task": "csl"}, "reference": {"task": "csl"}}
PLAN = TimingPlan(run_seed=3, rounds=2, max_rounds=2, warmup_min_s=0.0, warmup_max_s=0.05, settle_tolerance=0.5,
                  confidence=0.95, min_speedup=1.0, seed=0, caching_tolerance=0.5, threads=0)
OPS = ("load", "precision", "predict", "params")
KINDS = ("garbage", "random_json", "huge", "truncated", "extra", "early", "wrong_types", "deep")
MUST_FAIL = {"garbage", "huge", "truncated", "extra", "early", "deep"}


def random_value(rng, depth=0):
    choice = rng.randrange(9 if depth < 6 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-2**70, 2**70)
    if choice == 3:
        return rng.choice([0.5, -1e308, 1e308, float("nan")]) if rng.random() < 0.5 else rng.random()
    if choice == 4:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(0, 30)))
    if choice == 5:
        return rng.choice(["", "ok", "0", "1", "true"])
    if choice in (6, 7):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(["ok", "nonce", "predictions", "report", "environment", "precision", "counted", "id",
                        "label", "error"]): random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def honest_reply(request, nonce):
    op = request["op"]
    if op == "predict":
        return {"ok": True, "nonce": nonce, "predictions": [{"id": e["id"], "label": "0"} for e in request["batch"]]}
    if op == "params":
        return {"ok": True, "nonce": nonce, "report": {"counted": 40, "flags": [], "counted_cpu_bytes": 160,
                                                       "onnx_sessions": [{"providers": ["CPUExecutionProvider"]}]}}
    return {"ok": True, "nonce": nonce, "environment": {"device": "cpu"}, "precision": {}}


def hostile_frames(rng, kind, request, nonce):
    """(frames sent before the request is read, frames sent as the reply)."""
    honest = channel.encode(honest_reply(request, nonce))
    if kind == "garbage":
        return [], [channel._frame(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))]
    if kind == "random_json":
        value = random_value(rng)
        if isinstance(value, dict) and rng.random() < 0.5:
            value["nonce"] = nonce
        return [], [channel._frame(json.dumps(value, allow_nan=True).encode())]
    if kind == "huge":
        return [], [rng.randrange(channel.MAX_MESSAGE_BYTES + 1, 2**32).to_bytes(4, "big")]
    if kind == "truncated":
        return [], [honest[:rng.randrange(1, len(honest))]]
    if kind == "extra":
        return [], [honest, channel.encode(honest_reply(request, nonce))]
    if kind == "early":
        return [honest], [honest]
    if kind == "deep":
        depth = rng.choice([33, 100, 5_000, 200_000])
        return [], [channel._frame(b'{"ok": true, "nonce": "' + nonce.encode() + b'", "predictions": '
                                   + b"[" * depth + b"]" * depth + b"}")]
    reply = honest_reply(request, nonce)                  # wrong_types: every field of this op garbled
    for key in [k for k in reply if k not in ("ok", "nonce")]:
        reply[key] = random_value(rng)
        if isinstance(reply[key], dict) and rng.random() < 0.5:
            reply[key]["counted"] = random_value(rng)
    return [], [channel._frame(json.dumps(reply, allow_nan=True).encode())]


class FuzzWorker(threading.Thread):
    """Honest, except for the `nth` request of kind `op`, answered with hostile frames of `kind`."""

    def __init__(self, sock, rng, op, nth, kind):
        super().__init__(daemon=True)
        self.sock, self.rng, self.op, self.nth, self.kind, self.seen = sock, rng, op, nth, kind, 0

    def run(self):
        try:
            while True:
                nonce, request = channel.recv_request(self.sock)
                if request["op"] == "stop":
                    return
                if request["op"] == self.op:
                    self.seen += 1
                    if self.seen == self.nth:
                        early, reply = hostile_frames(self.rng, self.kind, request, nonce)
                        for frame in early:      # a reply before the next request: sent now, read as early
                            self.sock.sendall(frame)
                        for frame in reply:
                            self.sock.sendall(frame)
                        if self.kind == "truncated":
                            self.sock.close()
                            return
                        continue
                time.sleep(0.0005 if request["op"] == "predict" else 0)
                self.sock.sendall(channel.encode(honest_reply(request, nonce)))
        except (channel.ChannelError, OSError):
            return


def link(name, worker_factory):
    host, worker = socket.socketpair()
    worker_factory(worker).start()
    return WorkerLink(name, host, time.monotonic() + 20, {"protocol": channel.PROTOCOL_VERSION})


@pytest.mark.parametrize("seed", range(64))        # every kind x op twice
def test_whatever_a_worker_sends_the_host_fails_that_side_or_carries_on(seed):
    rng = random.Random(seed)
    kind, op = KINDS[seed % len(KINDS)], OPS[(seed // len(KINDS)) % len(OPS)]
    nth = rng.randrange(1, 4 if op == "predict" else 2)
    team = link("team", lambda sock: FuzzWorker(sock, rng, op, nth, kind))
    reference = link("reference", lambda sock: FuzzWorker(sock, rng, "none", 0, kind))
    failed = None
    try:
        measure_task(team, reference, "csl", EXAMPLES, 2, PLAN, LOADS,
                     before_timing=lambda: replies.precision(team.call("precision")[1], "team"))
        replies.param_report(team.call("params")[1], "team")
        team.call("params")      # an extra or early frame left behind fails the next request, never passes
    except WorkerFailed as exc:
        failed = exc
    finally:
        team.stop()
        reference.stop()
    if kind in MUST_FAIL:     # bytes no honest worker sends: always that side's failure
        assert failed is not None and failed.side == "team", (kind, op)
    elif failed is not None:  # well-formed JSON of the wrong shape: a failure if the host reads that field
        assert failed.side == "team", (kind, op, str(failed))


def hostile_sessions(rng, depth=0):
    """A value for onnx_sessions: near-valid shapes with one thing wrong, or random JSON."""
    names = ["CPUExecutionProvider", "CUDAExecutionProvider", "", "\ud800", "\udfffCUDA", "é" * 100, "x" * 101,
             1, None, True, 1.5, [], {}, ["CPUExecutionProvider"]]
    kind = rng.randrange(5)
    if kind == 0:
        return random_value(rng)
    if kind == 1:      # many sessions, some of them more than the host keeps
        return [{"providers": [rng.choice(names[:6])]} for _ in range(rng.choice([0, 1, 32, 33, 10_000]))]
    if kind == 2:      # long provider lists
        return [{"providers": [rng.choice(names[:6]) for _ in range(rng.choice([0, 16, 17, 100_000]))]}]
    if kind == 3:      # one odd name among good ones
        return [{"providers": ["CPUExecutionProvider", rng.choice(names)]} for _ in range(rng.randrange(1, 4))]
    return [rng.choice([{"providers": None}, {"provider": ["CPU"]}, "CPU", [], {"providers": random_value(rng)}])]


@pytest.mark.parametrize("seed", range(200))
def test_hostile_onnx_sessions_fail_that_side_or_come_out_bounded_and_writable(seed):
    from harness.onnx_providers import onnx_provider_flags
    from harness.probe.onnx_sessions import MAX_PROVIDER_CHARS, MAX_PROVIDERS, MAX_SESSIONS

    rng = random.Random(seed)
    frame = json.dumps({"ok": True, "report": {"counted": 1, "onnx_sessions": hostile_sessions(rng)}},
                       allow_nan=True).encode()
    try:
        reply = channel.decode(frame)               # what the host reads off the socket: a refused frame is
    except channel.ChannelError:                    # that side's failure (worker_link.checked_reply: WorkerFailed)
        return
    try:
        sessions = replies.param_report(reply, "team")["onnx_sessions"]
    except WorkerFailed as exc:
        assert exc.side == "team"
        return
    assert isinstance(sessions, list) and len(sessions) <= MAX_SESSIONS
    for session in sessions:
        assert list(session) == ["providers"] and len(session["providers"]) <= MAX_PROVIDERS
        assert all(isinstance(p, str) and len(p) <= MAX_PROVIDER_CHARS for p in session["providers"])
    json.dumps(sessions, ensure_ascii=False).encode("utf-8")       # result.json is written this way
    for flag in onnx_provider_flags({"onnx_sessions": sessions}, "cuda"):
        flag.encode("utf-8")
