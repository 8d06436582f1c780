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


def binomial_tail(n: int, k: int) -> float:
    """P(at least k heads in n fair coin tosses)."""
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def order_statistic_rank(n: int, confidence: float) -> int:
    """The k (1-based) whose k-th smallest and k-th largest of n values bound their median with at least
    `confidence` whatever their distribution (the sign test's interval: each value falls below the median
    with probability 1/2); 0 when n values are too few for that confidence."""
    tail = (1 - confidence) / 2
    rank = 0
    while rank + 1 <= n // 2 + 1 and binomial_tail(n, n - rank) <= tail:
        rank += 1
    return rank


def min_audit_batches(confidence: float) -> int:
    """The fewest batches whose smallest and largest gains bound the median with `confidence` (6 at 95%)."""
    n = 1
    while order_statistic_rank(n, confidence) < 1:
        n += 1
    return n


@dataclass(frozen=True)
class CachingAudit:
    """Each batch's first sight against its twins (a repeat of the same shape timed right before it and
    right after it, under the same load), for the team, with the reference's own ratio beside it.

    Per batch, the team's gain is first sight / the geometric mean of its two twins. `team_ratio` is their
    median over batches, [low, high] its distribution-free interval (the sign test's: order statistics of the
    batch gains), `above` how many batches gained more than the tolerance. `reference_ratio` is the
    reference's median gain, shown beside: the reference is ours and caches nothing, so a gain there is load
    or the box, and the row can be read with it. `note` says why no decision was possible."""

    suspected: bool
    team_ratio: float
    reference_ratio: float
    low: float | None
    high: float | None
    batches: int
    above: int
    note: str = ""

    def record(self) -> dict[str, object]:
        return {"team_ratio": self.team_ratio, "reference_ratio": self.reference_ratio, "low": self.low,
                "high": self.high, "batches": self.batches, "above_tolerance": self.above, "note": self.note}


def _log_gains(first: Sequence[float], twins: Sequence[Sequence[float]], side: str) -> np.ndarray:
    """Per batch log(first sight) less the mean log of its twins (their geometric mean)."""
    first_array, twin_array = np.asarray(first, dtype=float), np.asarray(twins, dtype=float)
    if twin_array.ndim == 1:
        twin_array = twin_array[:, None]
    if first_array.ndim != 1 or first_array.size < 1 or twin_array.ndim != 2 \
            or twin_array.shape[0] != first_array.shape[0] or twin_array.shape[1] < 1:
        raise ValueError(f"{side}: the caching audit needs one first sight and its twin times per batch")
    return np.log(np.maximum(first_array, _TINY)) - np.log(np.maximum(twin_array, _TINY)).mean(axis=1)


def caching_audit(team_first: Sequence[float], team_twins: Sequence[Sequence[float]], ref_first: Sequence[float],
                  ref_twins: Sequence[Sequence[float]], tolerance: float,
                  confidence: float = 0.95) -> CachingAudit:
    """Suspected only when the interval's low end says the team's first sight costs more than 1 + `tolerance`
    times a repeat's, i.e. when enough batches each gained that much that chance cannot explain it (with
    6 batches at 95%: all six; with 12: ten). A burst of load on a few pairs cannot decide it, and no
    assumption is made on how load is distributed (bursts, spikes): only that an honest team's first sight
    is as likely as not to cost more than its twins. `team_twins[i]` holds batch i's twin times (one or
    more). With too few batches for an interval at `confidence`: no flag, and the note says so."""
    team_gain, ref_gain = _log_gains(team_first, team_twins, "team"), _log_gains(ref_first, ref_twins, "reference")
    if team_gain.shape != ref_gain.shape:
        raise ValueError("team and reference need the same batches for the caching audit")
    team_ratio, ref_ratio = float(np.exp(np.median(team_gain))), float(np.exp(np.median(ref_gain)))
    batches = team_gain.shape[0]
    above = int(np.sum(team_gain > math.log1p(tolerance)))
    rank = order_statistic_rank(batches, confidence)
    if rank < 1:
        return CachingAudit(False, team_ratio, ref_ratio, None, None, batches, above,
                            f"not enough batches to audit ({batches} < {min_audit_batches(confidence)} for a "
                            f"{confidence:.0%} interval)")
    ordered = np.sort(team_gain)
    low, high = float(np.exp(ordered[rank - 1])), float(np.exp(ordered[batches - rank]))
    return CachingAudit(low > 1 + tolerance, team_ratio, ref_ratio, low, high, batches, above)
