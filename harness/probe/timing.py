"""The one place inference is timed.

The timed unit is one predict() call on one batch. On CUDA, kernels run asynchronously: without a
synchronize before the clock starts, earlier queued work would be billed to this batch, and without one after
the call returns, the batch's own kernels could still be running when the clock stops. So we synchronize on
both sides of every call (perf_counter alone on CPU, where calls are synchronous).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

Batch = list[dict[str, Any]]


@dataclass(frozen=True)
class PassResult:
    """One full pass over the inputs: per-batch seconds and what predict() returned for each batch."""

    batch_seconds: tuple[float, ...]
    outputs: tuple[Any, ...]

    @property
    def total_s(self) -> float:
        return sum(self.batch_seconds)


def make_sync(device: str) -> Callable[[], None]:
    """A function that waits for the device to finish queued work (a no-op off CUDA)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def make_batches(examples: Sequence[dict[str, Any]], batch_size: int) -> list[Batch]:
    return [list(examples[i:i + batch_size]) for i in range(0, len(examples), batch_size)]


def warm_up(predict: Callable[[Batch], Any], batches: Sequence[Batch], n_batches: int,
            sync: Callable[[], None]) -> None:
    """Untimed calls first (CUDA context, lazy kernel loading, autotuning), cycling over the batches."""
    for i in range(n_batches if batches else 0):
        predict(batches[i % len(batches)])
    sync()


def time_predict_pass(predict: Callable[[Batch], Any], batches: Sequence[Batch],
                      sync: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> PassResult:
    """Time every batch of one full pass, device-synchronized on both sides of each call."""
    seconds, outputs = [], []
    for batch in batches:
        sync()
        start = clock()
        output = predict(batch)
        sync()
        seconds.append(clock() - start)
        outputs.append(output)
    return PassResult(tuple(seconds), tuple(outputs))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0-100) of a non-empty sequence."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_rounds(passes: Sequence[PassResult], n_examples: int, noisy_spread: float) -> dict[str, Any]:
    """Median round, spread across rounds, per-batch p50/p90 and time per example, as plain data."""
    rounds = [p.total_s for p in passes]
    median = statistics.median(rounds)
    spread = (max(rounds) - min(rounds)) / median if median > 0 else 0.0
    batches = [s for p in passes for s in p.batch_seconds]
    return {
        "rounds_s": rounds,
        "median_round_s": median,
        "spread": spread,
        "noisy": spread > noisy_spread,
        "batch_p50_s": percentile(batches, 50) if batches else 0.0,
        "batch_p90_s": percentile(batches, 90) if batches else 0.0,
        "n_batches": len(passes[0].batch_seconds) if passes else 0,
        "time_per_example_s": median / n_examples if n_examples else 0.0,
    }
