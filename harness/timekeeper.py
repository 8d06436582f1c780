"""The timekeeper: harness code in the host process that times workers it does not trust.

It owns the inputs, the batch schedule, the clock and the predictions. The timed unit is one batch's round
trip: from sending the pre-encoded batch to holding the whole reply in host memory (predict() end to end,
tokenization included, for the team and the reference alike). Decoding and checking happen after the clock
stops. Nothing a worker writes anywhere is read back; a worker's only influence is the bytes it replies.

Per task: both workers load (load round trip and the first call recorded apart), warm up on inputs of
the same shapes drawn independently of them (harness.warmup_inputs) until each side's window time settles, then time rounds. A
round is one pass over every batch, in an order shuffled from the run seed, for the team and for the
reference (which goes first alternates, ABAB), so drift of the box falls on both. Round 0 is every input's
first sight, one pass, the two sides taking turns a block of batches at a time: its predictions are the
ones scored, and each is timed between two calls on its twin (the warm-up input of its shape, a repeat),
which the caching audit compares it with batch by batch (stats.caching_audit).
Every later round is a window of passes lasting at least MIN_WINDOW_S on each side (each batch's time is its
mean over the window's passes). While one side's window is timed, the other is frozen
(harness.freezing).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from harness import stats
from harness.freezing import FreezeLedger, FreezeUnavailable, timed_alone
from harness.probe import channel
from harness.tasks import get_task
from harness.warmup_inputs import warmup_examples

Batch = list[dict[str, Any]]
MIN_WINDOW_S = 0.1


class WorkerFailed(Exception):
    """The worker replied with an error, broke the protocol, or died; the message says which, `side` whose."""

    def __init__(self, message: str, side: str = ""):
        super().__init__(message)
        self.side = side


class WorkerTimeout(WorkerFailed):
    """The worker's wall-clock deadline passed; the caller kills it."""


class WorkerLink:
    """The host end of one worker's channel, with the worker's wall-clock deadline."""

    def __init__(self, name: str, sock: socket.socket, deadline: float, hello: dict[str, Any]):
        self.name, self.sock, self.deadline, self.hello = name, sock, deadline, hello
        self.environment: dict[str, Any] = {}      # what the worker said about itself at its last load
        self.host_pid: int | None = None           # set by whoever started it, for NVML's per-process memory
        self.process: Any = None                   # the backend's handle on its processes: freeze and thaw
        # The socket stays blocking (a socket timeout would add a poll() to every send and receive inside
        # the timed unit); a watchdog shuts the connection down at the deadline instead.
        self.sock.settimeout(None)
        self.expired = False
        self._watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self.expired = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _broken(self, exc: Exception) -> WorkerFailed:
        if self.expired or time.monotonic() >= self.deadline:
            return WorkerTimeout(f"{self.name} worker passed its deadline", self.name)
        return WorkerFailed(f"{self.name} worker channel broke: {exc}", self.name)

    @classmethod
    def accept(cls, name: str, server: socket.socket, alive: Callable[[], bool], deadline: float,
               expected_pid: int | None = None) -> "WorkerLink":
        """Wait for the worker to connect and say hello; give up when it dies or the deadline passes.

        Where the worker's pid is known (a local subprocess), the peer's credentials must show that pid: no
        other process of the same user may stand in for the worker.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout(f"{name} worker did not connect before its deadline", name)
            server.settimeout(min(0.5, remaining))
            try:
                sock, _ = server.accept()
                break
            except socket.timeout:
                if not alive():
                    raise WorkerFailed(f"{name} worker exited before connecting", name) from None
        if expected_pid is not None and peer_pid(sock) not in (None, expected_pid):
            sock.close()
            raise WorkerFailed(f"a process other than the {name} worker connected to its socket", name)
        link = cls(name, sock, deadline, {})
        hello = link.receive()
        if not isinstance(hello, dict) or hello.get("protocol") != channel.PROTOCOL_VERSION:
            raise WorkerFailed(f"{name} worker speaks protocol {hello!r}, not {channel.PROTOCOL_VERSION}: "
                               "rebuild the image with this harness", name)
        link.hello = hello
        return link

    def round_trip(self, request: bytes) -> tuple[float, bytes, str]:
        """Seconds from sending a request (its pickle, channel.request_body) to holding the whole reply, the
        reply's undecoded body, and the nonce (hex) the reply must echo (checked by _reply, after the clock)."""
        if self.expired or time.monotonic() >= self.deadline:
            raise WorkerTimeout(f"{self.name} worker passed its deadline", self.name)
        nonce = channel.new_nonce()
        frame = channel.request_frame(request, nonce)
        self.refuse_unrequested_bytes()
        try:
            start = time.perf_counter()
            self.sock.sendall(frame)
            body = channel.recv_frame(self.sock)
            seconds = time.perf_counter() - start
        except (OSError, channel.ChannelError) as exc:
            raise self._broken(exc) from None
        return seconds, body, nonce.hex()

    def refuse_unrequested_bytes(self) -> None:
        """Bytes already waiting before the host asks are a reply written ahead of its request, or an extra
        frame: that side's failure (checked before the clock starts, so it costs the timed unit nothing)."""
        try:
            waiting = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise self._broken(exc) from None
        if not waiting:
            raise self._broken(channel.ChannelError("the other side closed the channel"))
        raise WorkerFailed(f"{self.name} worker sent bytes the host had not asked for (a reply ahead of its "
                           "request, or an extra frame)", self.name)

    def receive(self) -> Any:
        """The next message, unprompted (the worker's hello)."""
        try:
            return channel.recv(self.sock)
        except (OSError, channel.ChannelError) as exc:
            raise self._broken(exc) from None

    def call(self, op: str, **fields: Any) -> tuple[float, dict[str, Any]]:
        """An untimed-by-design request (load, params, precision); (round-trip seconds, reply)."""
        seconds, body, nonce = self.round_trip(channel.request_body({"op": op, **fields}))
        return seconds, _reply(body, self.name, nonce)

    def send(self, op: str, **fields: Any) -> str:
        """The first half of an untimed call whose reply is read later (call_together); returns the nonce."""
        if self.expired or time.monotonic() >= self.deadline:
            raise WorkerTimeout(f"{self.name} worker passed its deadline", self.name)
        self.refuse_unrequested_bytes()
        try:
            return channel.send_request(self.sock, {"op": op, **fields}).hex()
        except OSError as exc:
            raise self._broken(exc) from None

    def reply(self, nonce: str) -> dict[str, Any]:
        """The second half: the reply to what send() asked, echoing its nonce."""
        try:
            body = channel.recv_frame(self.sock)
        except (OSError, channel.ChannelError) as exc:
            raise self._broken(exc) from None
        return _reply(body, self.name, nonce)

    def freeze(self) -> None:
        """Stop every process of this worker (while the other side is timed); FreezeUnavailable if it cannot."""
        if self.process is None or not hasattr(self.process, "freeze"):
            raise FreezeUnavailable("no handle on the worker's processes")
        self.process.freeze()

    def thaw(self) -> None:
        if self.process is not None and hasattr(self.process, "thaw"):
            self.process.thaw()

    def stop(self) -> None:
        self._watchdog.cancel()
        try:
            self.sock.settimeout(2)
            channel.send_request(self.sock, {"op": "stop"})
        except OSError:
            pass
        finally:
            self.sock.close()


def call_together(links: Sequence[WorkerLink], op: str, per_link: Sequence[dict[str, Any]] = (),
                  **fields: Any) -> list[dict[str, Any]]:
    """The same untimed request to several workers at once (prepare, params: seconds of imports or scans
    each, nothing timed), their replies in the order of `links`; one that fails raises as call() would.
    `per_link` adds fields for one link each, in the order of `links`."""
    extra = list(per_link) + [{}] * (len(links) - len(per_link))
    nonces = [link.send(op, **fields, **more) for link, more in zip(links, extra)]
    return [link.reply(nonce) for link, nonce in zip(links, nonces)]


def peer_pid(sock: socket.socket) -> int | None:
    """The connected peer's pid from SO_PEERCRED (Linux); None where the platform cannot say."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def _reply(body: bytes, name: str, nonce: str | None = None) -> dict[str, Any]:
    """A reply decoded and checked: an object, echoing the request's nonce, saying ok."""
    try:
        reply = channel.decode(body)
    except channel.ChannelError as exc:
        raise WorkerFailed(f"{name} worker: {exc}", name) from None
    if not isinstance(reply, dict):
        raise WorkerFailed(f"{name} worker replied {type(reply).__name__}, not an object", name)
    if nonce is not None and reply.get("nonce") != nonce:
        raise WorkerFailed(f"{name} worker's reply does not echo its request's nonce (a reply written before "
                           "the request was read, or an extra frame)", name)
    if not reply.get("ok"):
        raise WorkerFailed(str(reply.get("error") or f"{name} worker failed"), name)
    return reply


@dataclass(frozen=True)
class TimingPlan:
    """The [timing] settings the timekeeper needs, plus the run's seed and the limit it decides on."""

    run_seed: int
    rounds: int
    max_rounds: int
    warmup_min_s: float
    warmup_max_s: float
    settle_tolerance: float
    confidence: float
    min_speedup: float


@dataclass
class SideTimes:
    """One worker on one task: per-round per-batch seconds (canonical batch order) and what it answered."""

    load_s: float = 0.0
    first_call_s: float = 0.0
    warmup_windows_s: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    predictions: list[list[dict[str, Any]]] = field(default_factory=list)   # per timed pass; [0]: first sight
    twins_s: list[list[float]] = field(default_factory=list)   # per batch: its twin right before and right after
                                                                # its first sight


@dataclass
class FirstSight:
    """One side's round 0: per batch (canonical order) seconds, the predictions, and its twin's seconds (right
    before and right after the first sight)."""

    seconds: list[float]
    predictions: list[dict[str, Any]]
    twins_s: list[list[float]]


@dataclass
class TaskTimes:
    team: SideTimes
    reference: SideTimes
    orders: list[list[int]]
    warmup_settled: bool
    warmup_s: float
    box: list[dict[str, Any]]
    interval: stats.Interval | None = None
    freezing: FreezeLedger = field(default_factory=FreezeLedger)
    first_sight_block: int = 0       # batches per turn in round 0 (first_sight_round)
    phase_s: dict[str, float] = field(default_factory=dict)   # wall seconds: load, warmup, first_sight, rounds


def make_batches(examples: Sequence[dict[str, Any]], batch_size: int) -> list[Batch]:
    return [list(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]


def checked_predictions(task: str, batch: Batch, body: bytes, name: str, nonce: str) -> list[dict[str, Any]]:
    """The batch's predictions from a reply, checked against the task's format (after the clock stopped)."""
    output = _reply(body, name, nonce).get("predictions")
    if not isinstance(output, list):
        raise WorkerFailed(f"predict() returned {type(output).__name__}, expected a list of predictions", name)
    if len(output) != len(batch):
        raise WorkerFailed(f"predict() returned {len(output)} predictions for a batch of {len(batch)}", name)
    checker = get_task(task).check_prediction
    for example, prediction in zip(batch, output):
        if not isinstance(prediction, dict):
            raise WorkerFailed(f"invalid prediction for example {example['id']!r}: a {type(prediction).__name__}, "
                               "not an object", name)
        reason = checker(prediction)
        if reason is None and prediction.get("id") != example["id"]:
            reason = f"id {prediction.get('id')!r} does not match the example's id {example['id']!r}"
        if reason:
            raise WorkerFailed(f"invalid prediction for example {example['id']!r}: {reason}", name)
    return output


def timed_pass(link: WorkerLink, task: str, batches: Sequence[Batch], frames: Sequence[bytes],
               order: Sequence[int]) -> tuple[list[float], list[dict[str, Any]]]:
    """One pass in `order`: seconds and predictions, both returned in canonical batch order."""
    seconds: list[float] = [0.0] * len(frames)
    replies: list[tuple[bytes, str]] = [(b"", "")] * len(frames)
    for index in order:
        seconds[index], body, nonce = link.round_trip(frames[index])
        replies[index] = (body, nonce)
    predictions = [p for batch, (body, nonce) in zip(batches, replies)
                   for p in checked_predictions(task, batch, body, link.name, nonce)]
    return seconds, predictions


def timed_window(link: WorkerLink, task: str, batches: Sequence[Batch], frames: Sequence[bytes],
                 order: Sequence[int]) -> tuple[list[float], list[list[dict[str, Any]]]]:
    """Passes in `order`, repeated until they last MIN_WINDOW_S together: each batch's mean seconds over the
    passes, and every pass's predictions (all must agree). A 1 ms model is timed over a hundred calls a
    window, not one; a pass that already lasts 100 ms is a window by itself."""
    totals = [0.0] * len(frames)
    passes: list[list[dict[str, Any]]] = []
    while not passes or sum(totals) < MIN_WINDOW_S:
        seconds, predictions = timed_pass(link, task, batches, frames, order)
        totals = [t + s for t, s in zip(totals, seconds)]
        passes.append(predictions)
    return [t / len(passes) for t in totals], passes


def predict_frames(batches: Sequence[Batch]) -> list[bytes]:
    """Every request pickled before any clock starts (round_trip only puts a nonce in front): encoding is the
    host's work, not the worker's."""
    return [channel.request_body({"op": "predict", "batch": batch}) for batch in batches]


def others(links: Sequence[WorkerLink], link: WorkerLink) -> list[WorkerLink]:
    return [other for other in links if other is not link]


@contextmanager
def timed_window_of(link: WorkerLink, links: Sequence[WorkerLink], ledger: FreezeLedger) -> Iterator[None]:
    """`link` alone for one timed window: every other side frozen (harness.freezing), and `link` woken by an
    untimed round trip first. A process thawed a moment ago pays milliseconds on its first call (measured:
    a 0.1 ms model's first-sight pass 2 to 25 times its repeats without the wake-up, 1.5 to 2 with it), and
    a single-pass window, first sight above all, must not carry that into the caching audit."""
    with timed_alone(others(links, link), ledger):
        link.call("precision")
        yield


def first_sight_round(links: dict[str, WorkerLink], names: Sequence[str], task: str, batches: Sequence[Batch],
                      frames: Sequence[bytes], order: Sequence[int], block: int, ledger: FreezeLedger,
                      warm_frames: Sequence[bytes], spare_frames: Sequence[bytes] = (),
                      warmed: Sequence[str] = ()) -> dict[str, FirstSight]:
    """Round 0: every batch seen once by each side, in `order`, the two sides taking turns a block of `block`
    batches at a time (which side opens a block alternates), each block timed alone with the other side frozen.

    Each first sight is timed between two calls on its twin: the warm-up input shaped like that batch, already
    seen many times in warm-up (so it reveals nothing), a repeat timed a moment before and a moment after the
    new input, under the same load. The caching audit compares them (stats.caching_audit): load that comes
    and goes on the box falls on the calls of one batch alike (and load that rises or falls across them
    evens out between the twin before and the twin after), where a first sight set against repeats timed
    seconds later would sample other load (measured beside bursty load: honest teams flagged in 3 of 5 runs).

    For the sides in `warmed` (a batch well under MIN_WINDOW_S), each pair follows an untimed call on a spare:
    a fresh input of the same shape, never timed. So both calls of a pair come right after a call of their
    own shape with other content: without it the twin came first after the other side's turn (caches cold)
    or right after the same twin (hot: the ONNX team's CMRC2018 twins read 19% fast). A side whose batch
    takes MIN_WINDOW_S or more (BERT-base on a CPU) is a window by itself and gets no spare."""
    seen = {name: FirstSight([0.0] * len(frames), [], [[0.0, 0.0] for _ in frames]) for name in names}
    replies: dict[str, list[tuple[bytes, str]]] = {name: [(b"", "")] * len(frames) for name in names}
    for start in range(0, len(order), block):
        turn = names if (start // block) % 2 == 0 else names[::-1]
        for name in turn:
            link = links[name]
            with timed_window_of(link, list(links.values()), ledger):
                for index in order[start:start + block]:
                    if name in warmed and spare_frames:
                        _, body, nonce = link.round_trip(spare_frames[index])
                        _reply(body, link.name, nonce)
                    twins = seen[name].twins_s[index]
                    twins[0], body, nonce = link.round_trip(warm_frames[index])
                    _reply(body, link.name, nonce)
                    seen[name].seconds[index], body, nonce = link.round_trip(frames[index])
                    replies[name][index] = (body, nonce)
                    twins[1], body, nonce = link.round_trip(warm_frames[index])
                    _reply(body, link.name, nonce)
    for name in names:
        seen[name].predictions.extend(p for batch, (body, nonce) in zip(batches, replies[name])
                                      for p in checked_predictions(task, batch, body, links[name].name, nonce))
    return seen


def per_batch_s(side: SideTimes, n_batches: int) -> float:
    """A side's seconds a batch from its last warm-up window (0 before any)."""
    return (side.warmup_windows_s[-1] if side.warmup_windows_s else 0.0) / max(n_batches, 1)


def first_sight_block(sides: Sequence[SideTimes], n_batches: int) -> int:
    """Batches per turn in the first-sight round: as many as the slower side runs in about MIN_WINDOW_S (from
    its last warm-up window), at least one: short enough that load coming and going on the box falls on both
    sides alike, long enough that freezing costs little beside it."""
    per_batch = max(per_batch_s(side, n_batches) for side in sides)
    return max(1, min(n_batches, int(MIN_WINDOW_S / per_batch) if per_batch > 0 else n_batches))


def warm_up(links: Sequence[WorkerLink], task: str, batches: Sequence[Batch], frames: Sequence[bytes],
            plan: TimingPlan, sides: Sequence[SideTimes],
            ledger: FreezeLedger | None = None) -> tuple[bool, float]:
    """Alternate warm-up windows until both sides' window time settles (after warmup_min_s, at most warmup_max_s).

    A window (timed_window) repeats whole passes over every warm-up batch, so every shape is seen, until it
    lasts at least MIN_WINDOW_S; its value is the mean seconds per pass. The other side is frozen meanwhile.
    """
    ledger = ledger if ledger is not None else FreezeLedger()
    started = time.monotonic()
    window = 0
    while True:
        pairs = list(zip(links, sides))
        for link, side in (pairs if window % 2 == 0 else pairs[::-1]):
            with timed_window_of(link, links, ledger):
                seconds, _ = timed_window(link, task, batches, frames, range(len(frames)))
            side.warmup_windows_s.append(sum(seconds))        # the window's mean pass
        window += 1
        elapsed = time.monotonic() - started
        done = all(stats.settled(side.warmup_windows_s, plan.settle_tolerance) for side in sides)
        if done and elapsed >= plan.warmup_min_s:
            return True, elapsed
        if elapsed >= plan.warmup_max_s:
            return False, elapsed


def measure_task(team: WorkerLink, reference: WorkerLink, task: str, examples: Sequence[dict[str, Any]],
                 batch_size: int, plan: TimingPlan, loads: dict[str, dict[str, Any]],
                 box_snapshot: Callable[[], dict[str, Any]] = dict,
                 before_timing: Callable[[], None] = lambda: None,
                 after_load: Callable[[], None] = lambda: None) -> TaskTimes:
    """Load both workers, warm them up, time interleaved rounds until the task's interval is decided.
    `after_load` runs once both models are loaded, before any call (the count and memory after load);
    `before_timing` right before the first timed round."""
    from harness import replies      # checks replies with this module's WorkerFailed: imported when used

    sides = {"team": SideTimes(), "reference": SideTimes()}
    links = {"team": team, "reference": reference}
    phase_s, phase_started = {}, time.monotonic()      # where the task's wall time went (the GPU day plans on it)
    for name in ("reference", "team"):
        sides[name].load_s, reply = links[name].call("load", **loads[name])
        links[name].environment = replies.environment(reply, name)
    phase_s["load"], phase_started = time.monotonic() - phase_started, time.monotonic()
    after_load()
    phase_s["after_load"], phase_started = time.monotonic() - phase_started, time.monotonic()
    batches = make_batches(examples, batch_size)
    warm_examples = warmup_examples(examples, plan.run_seed)
    warm = make_batches(warm_examples, batch_size)
    warm_frames = predict_frames(warm)
    ledger = FreezeLedger()
    try:
        for name in ("reference", "team"):
            with timed_window_of(links[name], [team, reference], ledger):
                seconds, _ = timed_pass(links[name], task, warm[:1], warm_frames[:1], [0])
            sides[name].first_call_s = seconds[0]
        settled, warmup_s = warm_up([team, reference], task, warm, warm_frames, plan,
                                    [sides["team"], sides["reference"]], ledger)
    except WorkerFailed as exc:
        raise named_for_people(exc, warm_examples, examples) from None
    before_timing()     # e.g. the reference's precision, verified right before the clock starts
    phase_s["warmup"], phase_started = time.monotonic() - phase_started, time.monotonic()
    frames = predict_frames(batches)
    rng = random.Random(f"{plan.run_seed}:{task}")
    times = TaskTimes(sides["team"], sides["reference"], [], settled, warmup_s, [], freezing=ledger, phase_s=phase_s)
    while True:
        order = list(range(len(frames)))
        rng.shuffle(order)
        times.orders.append(order)
        round_index = len(times.orders) - 1
        times.box.append({"round": round_index, **box_snapshot()})
        names = ("team", "reference") if round_index % 2 == 0 else ("reference", "team")
        if round_index == 0:      # first sight: each input seen once, the scored predictions
            times.first_sight_block = first_sight_block(list(sides.values()), len(frames))
            warmed = [name for name in names if per_batch_s(sides[name], len(frames)) < MIN_WINDOW_S]
            spares = predict_frames(make_batches(warmup_examples(examples, f"{plan.run_seed}:spare"), batch_size))
            seen = first_sight_round(links, names, task, batches, frames, order, times.first_sight_block, ledger,
                                     warm_frames, spares, warmed)
            for name, first in seen.items():
                sides[name].rounds.append(first.seconds)
                sides[name].predictions.append(first.predictions)
                sides[name].twins_s = first.twins_s
            phase_s["first_sight"], phase_started = time.monotonic() - phase_started, time.monotonic()
        for name in names if round_index > 0 else ():
            with timed_window_of(links[name], [team, reference], ledger):
                seconds, passes = timed_window(links[name], task, batches, frames, order)
            sides[name].rounds.append(seconds)
            sides[name].predictions.extend(passes)
        if len(times.orders) < plan.rounds:
            continue
        times.interval = stats.speedup_interval([sides["team"].rounds], [sides["reference"].rounds],
                                                confidence=plan.confidence, seed=plan.run_seed)
        if (stats.verdict(times.interval, plan.min_speedup) != "borderline"
                or len(times.orders) >= plan.max_rounds):
            phase_s["rounds"] = time.monotonic() - phase_started      # the later rounds and their intervals
            return times


def named_for_people(exc: WorkerFailed, warm: Sequence[dict[str, Any]], timed: Sequence[dict[str, Any]]
                     ) -> WorkerFailed:
    """A failure during warm-up names a warm-up input's random id: the message (read by people, after the
    run; never sent to a worker) also names the timed example whose shape that input had."""
    message = str(exc)
    for warm_example, timed_example in zip(warm, timed):
        quoted = repr(warm_example.get("id"))
        if quoted in message:
            message = message.replace(quoted, f"{quoted} (a warm-up input shaped like {timed_example.get('id')!r})")
    return type(exc)(message, exc.side)


def same_predictions(rounds: Sequence[Sequence[dict[str, Any]]]) -> bool:
    """Whether every round answered exactly what round 0 (first sight, the scored one) answered."""
    first = json.dumps(rounds[0], sort_keys=True, ensure_ascii=False)
    return all(json.dumps(r, sort_keys=True, ensure_ascii=False) == first for r in rounds[1:])
