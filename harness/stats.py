"""The statistics behind a defensible speedup: its 95% interval, the verdict on a limit, warm-up settling,
and the caching audit.

Timings come as rounds x batches (seconds per batch, canonical batch order): one round is one pass over all
of a task's inputs. A team's round and the reference's round of the same index were measured next to each
other (interleaved), so drift of the box between rounds falls on both; resampling them together (paired)
keeps that pairing, and resampling the same batch indices on both sides keeps the content pairing.

The interval is the wider of two (their union):
- a two-level percentile bootstrap (Kalibera & Jones, "Rigorous benchmarking in reasonable time"): rounds
  are resampled with replacement, then batches within each resampled round. Tasks are resampled
  independently and their mean pass times added, as the formula's T adds them.
- a Student-t interval on the log of the ratio, its variance from the spread of whole rounds (delta method,
  paired rounds' covariance subtracted), with the fewest rounds of any task less one as degrees of freedom.
With five rounds the bootstrap alone is too narrow: it cannot see further than the few rounds it resamples,
and drift of the box from round to round (a shared CPU, a clock change) is exactly what it then misses. The
t interval widens by the t quantile (2.78 for four degrees of freedom, against 1.96), so a run with few
rounds says honestly how little it knows.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np

TaskRounds = Sequence[Sequence[float]]
METHOD = ("two-level paired percentile bootstrap (rounds, then batches within rounds), "
          "widened to a Student-t interval on log ratio over rounds where that is wider")
_CHUNK = 250          # resamples drawn at once: bounds memory on large tasks
_TINY = 1e-12


@dataclass(frozen=True)
class Interval:
    point: float
    low: float
    high: float
    confidence: float
    method: str = METHOD

    @property
    def half_width(self) -> float:
        """Half the interval's width relative to the point estimate (0.03 = +-3%)."""
        return (self.high - self.low) / 2 / self.point if self.point else float("inf")


def _matrix(rounds: TaskRounds, side: str) -> np.ndarray:
    array = np.asarray(rounds, dtype=float)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{side} timings must be a non-empty rounds x batches table")
    return array


def mean_pass_s(rounds: TaskRounds) -> float:
    """Mean over rounds of one pass's total seconds: the time the formula uses for one task."""
    return float(_matrix(rounds, "the").sum(axis=1).mean())


def _resampled_pass_means(team: np.ndarray, ref: np.ndarray, n: int, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray]:
    """n bootstrap replicates of (team, reference) mean pass seconds for one task."""
    batches = team.shape[1]
    paired = team.shape[0] == ref.shape[0]
    team_rounds = rng.integers(0, team.shape[0], (n, team.shape[0]))
    ref_rounds = team_rounds if paired else rng.integers(0, ref.shape[0], (n, ref.shape[0]))
    width = max(team.shape[0], ref.shape[0])
    picks = rng.integers(0, batches, (n, width, batches))   # the same batch draws for both sides

    def replicate(table: np.ndarray, rounds: np.ndarray) -> np.ndarray:
        chosen = picks[:, :rounds.shape[1], :]
        return table[rounds[:, :, None], chosen].sum(axis=2).mean(axis=1)

    return replicate(team, team_rounds), replicate(ref, ref_rounds)


def speedup_interval(team: Sequence[TaskRounds], reference: Sequence[TaskRounds], confidence: float = 0.95,
                     resamples: int = 2000, seed: int = 0) -> Interval:
    """T_reference / T_team with a percentile-bootstrap interval; one entry per task on both sides."""
    if len(team) != len(reference) or not team:
        raise ValueError("team and reference need timings for the same, non-empty list of tasks")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    pairs = []
    for i, (t, r) in enumerate(zip(team, reference)):
        t, r = _matrix(t, "team"), _matrix(r, "reference")
        if t.shape[1] != r.shape[1]:
            raise ValueError(f"task {i}: team has {t.shape[1]} batches per round, the reference {r.shape[1]}")
        pairs.append((t, r))
    team_mean_T, ref_mean_T = _mean_totals(pairs)
    point = ref_mean_T / max(team_mean_T, _TINY)
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, _CHUNK):
        n = min(_CHUNK, resamples - start)
        team_T, ref_T = np.zeros(n), np.zeros(n)
        for t, r in pairs:
            team_mean, ref_mean = _resampled_pass_means(t, r, n, rng)
            team_T += team_mean
            ref_T += ref_mean
        ratios.append(ref_T / np.maximum(team_T, _TINY))
    all_ratios = np.concatenate(ratios)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(all_ratios, [tail, 100 - tail])
    t_low, t_high = round_level_interval(pairs, confidence)
    return Interval(float(point), float(min(low, t_low, point)), float(max(high, t_high, point)), confidence)


def _mean_totals(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(T_team, T_ref): each side's mean pass seconds, added over the tasks."""
    return (float(sum(t.sum(axis=1).mean() for t, _ in pairs)), float(sum(r.sum(axis=1).mean() for _, r in pairs)))


def round_level_interval(pairs: Sequence[tuple[np.ndarray, np.ndarray]], confidence: float) -> tuple[float, float]:
    """ratio * exp(+-t * se(log ratio)), se from the variance of whole-round pass times (delta method).

    Var(log T_ref / T_team) ~ Var(T_ref)/T_ref^2 + Var(T_team)/T_team^2 - 2 Cov/(T_ref T_team), where each
    task's mean pass time has variance s^2/n over its n rounds and paired rounds (same count on both sides)
    add their covariance. A side with a single round adds nothing (nothing to estimate a spread from); with
    no side of two rounds or more the interval is the point.
    """
    team_T, ref_T = _mean_totals(pairs)
    point = ref_T / max(team_T, _TINY)
    variance, counts = 0.0, []
    for t, r in pairs:
        x, y = t.sum(axis=1), r.sum(axis=1)
        if len(x) > 1:
            variance += x.var(ddof=1) / len(x) / team_T ** 2
            counts.append(len(x))
        if len(y) > 1:
            variance += y.var(ddof=1) / len(y) / ref_T ** 2
            counts.append(len(y))
        if len(x) == len(y) > 1:
            variance -= 2 * np.cov(x, y, ddof=1)[0, 1] / len(x) / (team_T * ref_T)
    if not counts or variance <= 0:
        return point, point
    spread = t_quantile((1 + confidence) / 2, min(counts) - 1) * math.sqrt(variance)
    return point * math.exp(-spread), point * math.exp(spread)


def t_quantile(probability: float, df: int) -> float:
    """The Student-t quantile (0.5 < probability < 1): bisection on the CDF, integrated numerically from
    the density (no scipy on a participant's laptop)."""
    if not 0.5 < probability < 1 or df < 1:
        raise ValueError("t_quantile needs 0.5 < probability < 1 and df >= 1")
    log_scale = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 4001)
        density = np.exp(log_scale - (df + 1) / 2 * np.log1p(grid ** 2 / df))
        return 0.5 + float(np.sum((density[1:] + density[:-1]) / 2) * (x / 4000))

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        low, high = high, high * 2
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def verdict(interval: Interval, minimum: float) -> str:
    """'pass' when even the low bound reaches the minimum, 'fail' when even the high bound is below it,
    'borderline' otherwise (measure more, or report the row as undecided)."""
    if interval.low >= minimum:
        return "pass"
    if interval.high < minimum:
        return "fail"
    return "borderline"


SETTLE_WINDOWS = 3


def settled(window_seconds: Sequence[float], tolerance: float) -> bool:
    """Warm-up is over when the last three windows show no trend against the three before: their medians
    within `tolerance` (relative), or their ranges overlapping (the change is no larger than the noise).
    Judged on groups of three, so that one window hit by a stray interruption neither ends the warm-up early
    nor keeps it going; a real warm-up (each window faster than the last) keeps the groups apart."""
    if len(window_seconds) < 2 * SETTLE_WINDOWS:
        return False
    before = window_seconds[-2 * SETTLE_WINDOWS:-SETTLE_WINDOWS]
    last = window_seconds[-SETTLE_WINDOWS:]
    close = abs(statistics.median(last) - statistics.median(before)) <= tolerance * max(statistics.median(before),
                                                                                       _TINY)
    overlapping = min(last) <= max(before) and min(before) <= max(last)
    return close or overlapping


MIN_AUDIT_BATCHES = 5


@dataclass(frozen=True)
class CachingAudit:
    """Each batch's first sight against its twin (a repeat of the same shape timed right before it), the
    team's gain set against the reference's own, batch by batch.

    Per batch, the team's log(first sight / twin) less the reference's; `excess` is exp of their median over
    batches, [low, high] its percentile-bootstrap interval over batches (the same batches drawn for both
    sides). `team_ratio` and `reference_ratio` are each side's median first sight / twin. `note` says why no
    decision was possible."""

    suspected: bool
    team_ratio: float
    reference_ratio: float
    excess: float
    low: float | None
    high: float | None
    batches: int
    note: str = ""

    def record(self) -> dict[str, object]:
        return {"excess": self.excess, "low": self.low, "high": self.high, "batches": self.batches, "note": self.note}


def _log_gains(first: Sequence[float], twins: Sequence[float], side: str) -> np.ndarray:
    """Per batch log(first sight / twin)."""
    first_array, twin_array = np.asarray(first, dtype=float), np.asarray(twins, dtype=float)
    if first_array.ndim != 1 or first_array.size < 1 or first_array.shape != twin_array.shape:
        raise ValueError(f"{side}: the caching audit needs one first sight and one twin time per batch")
    return np.log(np.maximum(first_array, _TINY)) - np.log(np.maximum(twin_array, _TINY))


def time_blocks(order: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    """n resamples of the batches by circular blocks of the first-sight time order (moving-block bootstrap,
    blocks of about sqrt(batches)): load on the box comes in bursts, so batches seen one after the other
    share it, and resampling them one by one would make the interval too narrow."""
    sequence = np.asarray(order, dtype=int)
    size = len(sequence)
    length = max(1, math.ceil(math.sqrt(size)))
    starts = rng.integers(0, size, (n, math.ceil(size / length)))
    positions = (starts[:, :, None] + np.arange(length)[None, None, :]).reshape(n, -1)[:, :size] % size
    return sequence[positions]


def caching_audit(team_first: Sequence[float], team_twins: Sequence[float], ref_first: Sequence[float],
                  ref_twins: Sequence[float], tolerance: float, confidence: float = 0.95, resamples: int = 2000,
                  seed: int = 0, order: Sequence[int] | None = None) -> CachingAudit:
    """Suspected only when the interval's low end says the team gains more than `tolerance` (0.1 = 10%) on
    a repeat beyond what the reference gains: a burst of load between the two calls of one pair cannot
    decide it (the median), a gain on most batches does. Each pair is timed a moment apart, so load that
    comes and goes on the box falls on both of its calls. `order` is the order first sight took (batch
    indices): batches are then resampled in blocks of that order (time_blocks), one by one otherwise. With
    fewer than MIN_AUDIT_BATCHES batches there is nothing to resample: no flag, and the note says so."""
    team_gain, ref_gain = _log_gains(team_first, team_twins, "team"), _log_gains(ref_first, ref_twins, "reference")
    if team_gain.shape != ref_gain.shape:
        raise ValueError("team and reference need the same batches for the caching audit")
    differences = team_gain - ref_gain
    team_ratio, ref_ratio = float(np.exp(np.median(team_gain))), float(np.exp(np.median(ref_gain)))
    excess = float(np.exp(np.median(differences)))
    batches = differences.shape[0]
    if batches < MIN_AUDIT_BATCHES:
        return CachingAudit(False, team_ratio, ref_ratio, excess, None, None, batches,
                            f"not enough batches to audit ({batches} < {MIN_AUDIT_BATCHES})")
    rng = np.random.default_rng(seed)
    if order is not None and sorted(order) == list(range(batches)):
        picks = time_blocks(order, resamples, rng)
    else:
        picks = rng.integers(0, batches, (resamples, batches))
    replicates = np.median(differences[picks], axis=-1)
    tail = (1 - confidence) / 2 * 100
    low, high = (float(np.exp(x)) for x in np.percentile(replicates, [tail, 100 - tail]))
    return CachingAudit(low > 1 + tolerance, team_ratio, ref_ratio, excess, low, high, batches)
