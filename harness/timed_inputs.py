"""Every input one task's workers see, and why none of them can be served from a cache when it is timed.

All of them come from one harness.warmup_inputs.InputMaker per task, so their ids look alike: the warm-up
inputs (fresh, repeated through warm-up, never timed), the real inputs with masked ids (timed once, in
round 0: the scored first sight), and fresh inputs of the real batches' shapes (synthetic content, new every
time): in round 0 two flanks per batch timed beside its first sight and an untimed spare before them, and
every later round the same with a newly made stand-in pass in the real inputs' place. Nothing timed is ever repeated, so a cache of anything
timed earlier never answers a timed call (a reference window timed again after a dirty drain check repeats
its inputs: the reference is ours). Every request is pickled before any clock starts: encoding is the
host's work, not the worker's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness import warmup_inputs
from harness.probe import channel

Batch = list[dict[str, Any]]


def make_batches(examples: Sequence[dict[str, Any]], batch_size: int) -> list[Batch]:
    return [list(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]


def predict_frames(batches: Sequence[Batch]) -> list[bytes]:
    """Every request pickled before any clock starts (round_trip only puts a nonce in front): encoding is the
    host's work, not the worker's."""
    return [channel.request_body({"op": "predict", "batch": batch}) for batch in batches]


@dataclass(frozen=True)
class PassInputs:
    """One pass's inputs: the examples (in the real examples' order), their batches and pickled requests."""

    examples: list[dict[str, Any]]
    batches: list[Batch]
    frames: list[bytes]

    @classmethod
    def of(cls, examples: list[dict[str, Any]], batch_size: int) -> "PassInputs":
        batches = make_batches(examples, batch_size)
        return cls(examples, batches, predict_frames(batches))


CALLS = 3   # a batch's timed calls in round 0: the real input (0) and its two fresh flanks (1, 2)


@dataclass(frozen=True)
class FirstSightInputs:
    """Round 0's inputs beside the real ones: per batch two fresh flanks and a spare, and per side and batch
    the order of its three timed calls (a shuffle of 0: real, 1 and 2: flanks), drawn from the run seed, so
    neither position nor "seen before" tells the real input apart."""

    flanks: tuple[PassInputs, PassInputs]
    spares: PassInputs
    call_orders: dict[str, list[list[int]]]


@dataclass
class TaskInputs:
    """Everything one task shows its workers, made by one InputMaker (`maker`) from the real `examples`."""

    maker: Any
    examples: Sequence[dict[str, Any]]
    batch_size: int
    warm: PassInputs = field(init=False)
    real: PassInputs = field(init=False)
    stand_in: PassInputs | None = None     # the current later round's fresh pass in the real inputs' place
    first_sight: FirstSightInputs | None = None

    def __post_init__(self) -> None:
        self.warm = PassInputs.of(self.maker.fresh(self.examples), self.batch_size)
        self.real = PassInputs.of(self.maker.masked(self.examples), self.batch_size)

    @classmethod
    def for_task(cls, examples: Sequence[dict[str, Any]], batch_size: int, seed: Any) -> "TaskInputs":
        return cls(warmup_inputs.InputMaker(examples, seed), examples, batch_size)

    def made_pass(self) -> PassInputs:
        """A newly made pass of fresh inputs of the real inputs' shapes (made and pickled outside the clock)."""
        return PassInputs.of(self.maker.fresh(self.examples), self.batch_size)

    def make_stand_in(self) -> PassInputs:
        """A later round's pass in the real inputs' place (harness.timekeeper.time_later_round), shared by
        the two sides (each still sees each input once), so their content is paired as their rounds are."""
        self.stand_in = self.made_pass()
        return self.stand_in

    def make_first_sight(self, names: Sequence[str], rng: random.Random) -> FirstSightInputs:
        """Round 0's flanks, spares and call orders (made before round 0 starts, outside the clock)."""
        made = self.made_pass
        orders = {name: [rng.sample(range(CALLS), CALLS) for _ in self.real.batches] for name in names}
        self.first_sight = FirstSightInputs((made(), made()), made(), orders)
        return self.first_sight

    def real_predictions(self, predictions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Predictions checked against the masked batch, each given back its real example's id (to be scored)."""
        return [{**prediction, "id": self.maker.real_id(prediction["id"])} for prediction in predictions]

    def shown(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """(what kind, the inputs) of every input shown so far that a failure may name (the later rounds':
        the current round's only), each list in the real examples' order."""
        shown = [("the timed example", self.real.examples), ("a warm-up input shaped like", self.warm.examples)]
        if self.first_sight is not None:
            shown += [("a fresh input shaped like", inputs.examples)
                      for inputs in (*self.first_sight.flanks, self.first_sight.spares)]
        if self.stand_in is not None:
            shown.append(("a fresh input shaped like", self.stand_in.examples))
        return shown


def named_for_people(exc: Any, shown: Sequence[tuple[str, Sequence[dict[str, Any]]]],
                     examples: Sequence[dict[str, Any]]) -> Any:
    """A failure names an input's opaque id: the message (read by people, after the run; never sent to a
    worker) also names the real example behind it, or the real example whose shape a made-up input had."""
    message = str(exc)
    for kind, inputs in shown:
        for made, real in zip(inputs, examples):
            quoted = repr(made.get("id"))
            if quoted in message:
                message = message.replace(quoted, f"{quoted} ({kind} {real.get('id')!r})")
    return type(exc)(message, exc.side)
