"""The statistics behind a defensible speedup: its 95% interval, the verdict on a limit, warm-up settling,
and the caching audit (and what the row says of it: caching_flags, caching_notes).

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
from typing import Any, Callable, Mapping, Sequence

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
    """The fewest batches whose smallest and largest values bound their median with `confidence` whatever
    their distribution (6 at 95%): the fewest the caching audit draws an interval from, so that a bootstrap
    over batches never rests on fewer than a distribution-free interval needs."""
    n = 1
    while order_statistic_rank(n, confidence) < 1:
        n += 1
    return n


@dataclass(frozen=True)
class Gain:
    """One of the caching audit's two comparisons: the team's ratio and the reference's, `gain` the team's over
    the reference's; [low, high] the gain's interval and [team_low, team_high] the team's own ratio's
    (bootstrap over batches, the same draws for both; None with too few batches).

    A team is held to the smaller of its own ratio and its gain over the reference's: the reference's figure
    can excuse a team (the box or the inputs did it to both), never accuse it. The reference is compute on a
    CPU that load slows, where a team may not be: a sleeping fixture team read 1.40x [1.14, 1.82] against a
    BERT-base reference whose later rounds ran slower than its first sight beside bursty load."""

    team_ratio: float
    reference_ratio: float
    gain: float
    low: float | None
    high: float | None
    team_low: float | None = None
    team_high: float | None = None

    @property
    def point(self) -> float:
        """What the later rounds are decided on: the smaller of the team's own ratio and its gain."""
        return min(self.team_ratio, self.gain)

    def proven_above(self, bound: float) -> bool:
        """Both intervals (own ratio and gain) wholly above `bound`."""
        return self.low is not None and self.team_low is not None and min(self.low, self.team_low) > bound

    def record(self) -> dict[str, float | None]:
        return {"team_ratio": self.team_ratio, "reference_ratio": self.reference_ratio, "gain": self.gain,
                "low": self.low, "high": self.high, "team_low": self.team_low, "team_high": self.team_high}


@dataclass(frozen=True)
class CachingAudit:
    """Whether the later rounds (passes over fresh inputs) count toward T, and whether the team is flagged.

    `flanks`: per batch, the real input's first sight against two fresh inputs of its shape timed beside it
    (same load, random order): real / fresh, the team's geometric mean over batches against the reference's.
    A team that answers synthetic inputs faster than real ones gains there. `later_rounds`: the team's first
    sight against its later passes (fresh inputs), first / later in total seconds, against the reference's
    same ratio. A team faster after first sight than the reference is gains there (None: no later rounds).
    The later rounds count only when neither gain's point (Gain.point) passes 1 + tolerance; `suspected`
    (the flag) when an audit's intervals lie wholly above it (Gain.proven_above); `note` says why the later rounds do not count when nothing is flagged,
    or why no interval could be had."""

    flanks: Gain
    later_rounds: Gain | None
    batches: int
    tolerance: float
    confidence: float
    suspected: bool
    later_rounds_count: bool
    note: str = ""

    @property
    def team_ratio(self) -> float:
        return self.flanks.team_ratio

    @property
    def reference_ratio(self) -> float:
        return self.flanks.reference_ratio

    def record(self) -> dict[str, object]:
        return {"flanks": self.flanks.record(),
                "later_rounds": self.later_rounds.record() if self.later_rounds else None,
                "batches": self.batches, "tolerance": self.tolerance, "confidence": self.confidence,
                "later_rounds_counted": self.later_rounds_count, "note": self.note}


def _log_gains(first: Sequence[float], flanks: Sequence[Sequence[float]], side: str) -> np.ndarray:
    """Per batch log(first sight) less the mean log of its flanks (their geometric mean)."""
    first_array, flank_array = np.asarray(first, dtype=float), np.asarray(flanks, dtype=float)
    if flank_array.ndim == 1:
        flank_array = flank_array[:, None]
    if first_array.ndim != 1 or first_array.size < 1 or flank_array.ndim != 2 \
            or flank_array.shape[0] != first_array.shape[0] or flank_array.shape[1] < 1:
        raise ValueError(f"{side}: the caching audit needs one first sight and its flank times per batch")
    return np.log(np.maximum(first_array, _TINY)) - np.log(np.maximum(flank_array, _TINY)).mean(axis=1)


def _per_batch(rounds: Sequence[Sequence[float]], batches: int, side: str) -> np.ndarray:
    """Each batch's mean seconds over `rounds` (rounds x batches)."""
    array = np.asarray(rounds, dtype=float)
    if array.ndim != 2 or array.shape[1] != batches:
        raise ValueError(f"{side}: later rounds need one time per batch, {batches} batches")
    return array.mean(axis=0)


LogRatio = Callable[[np.ndarray], np.ndarray]   # a (draws x batches) table of batch indices -> log ratio a draw


def _gain(team_log: LogRatio, ref_log: LogRatio, batches: int, interval: bool, confidence: float,
          resamples: int, seed: int) -> Gain:
    """The two sides' ratios over all batches and, with `interval`, the percentile intervals of the team's
    gain and of its own ratio over batches resampled with replacement (the same draws for both sides)."""
    everything = np.arange(batches)[None, :]
    team_ratio, ref_ratio = float(np.exp(team_log(everything)[0])), float(np.exp(ref_log(everything)[0]))
    if not interval:
        return Gain(team_ratio, ref_ratio, team_ratio / ref_ratio, None, None)
    picks = np.random.default_rng(seed).integers(0, batches, (resamples, batches))
    team, ref = team_log(picks), ref_log(picks)
    tail = (1 - confidence) / 2 * 100
    low, high = np.exp(np.percentile(team - ref, [tail, 100 - tail]))
    team_low, team_high = np.exp(np.percentile(team, [tail, 100 - tail]))
    return Gain(team_ratio, ref_ratio, team_ratio / ref_ratio, float(low), float(high), float(team_low),
                float(team_high))


def flank_gain(team_first: Sequence[float], team_flanks: Sequence[Sequence[float]], ref_first: Sequence[float],
               ref_flanks: Sequence[Sequence[float]], interval: bool, confidence: float, resamples: int = 2000,
               seed: int = 0) -> Gain:
    """Real first sight over its fresh flanks, the team's geometric mean over batches against the reference's
    (the reference is ours and honest: its ratio is what the box and the inputs do to an honest model)."""
    team, ref = _log_gains(team_first, team_flanks, "team"), _log_gains(ref_first, ref_flanks, "reference")
    if team.shape != ref.shape:
        raise ValueError("team and reference need the same batches for the caching audit")
    return _gain(lambda picks: team[picks].mean(axis=1), lambda picks: ref[picks].mean(axis=1), team.shape[0],
                 interval, confidence, resamples, seed)


def later_rounds_gain(team_rounds: TaskRounds, ref_rounds: TaskRounds, interval: bool, confidence: float,
                      resamples: int = 2000, seed: int = 0) -> Gain | None:
    """First sight (round 0) over the later rounds' mean pass, in total seconds, the team's against the
    reference's; None without later rounds on both sides."""
    if len(team_rounds) < 2 or len(ref_rounds) < 2:
        return None
    batches = len(team_rounds[0])
    team_first, ref_first = (np.asarray(rounds[0], dtype=float) for rounds in (team_rounds, ref_rounds))
    if team_first.shape != (batches,) or ref_first.shape != (batches,):
        raise ValueError("team and reference need the same batches for the caching audit")
    team_later = _per_batch(team_rounds[1:], batches, "team")
    ref_later = _per_batch(ref_rounds[1:], batches, "reference")

    def log_ratio(first: np.ndarray, later: np.ndarray) -> LogRatio:
        return lambda picks: (np.log(np.maximum(first[picks].sum(axis=1), _TINY))
                              - np.log(np.maximum(later[picks].sum(axis=1), _TINY)))

    return _gain(log_ratio(team_first, team_later), log_ratio(ref_first, ref_later), batches, interval, confidence,
                 resamples, seed)


def caching_audit(team_rounds: TaskRounds, team_flanks: Sequence[Sequence[float]], ref_rounds: TaskRounds,
                  ref_flanks: Sequence[Sequence[float]], tolerance: float, confidence: float = 0.95,
                  seed: int = 0) -> CachingAudit:
    """Both audits over a task's rounds (round 0: real first sight per batch) and flank times (per batch,
    the fresh inputs timed beside its first sight). The later rounds count toward T only when both gains'
    points are at most 1 + `tolerance`; the row is flagged when an interval lies wholly above it. Aggregated
    over batches (a mean, not a count of batches), so a team that leaves one batch honest still gains
    only (n-1)/n of its cheat's log gain on each audit. With fewer batches than `min_audit_batches` there is
    no interval: a point above the bound still keeps the later rounds out, and nothing is flagged."""
    batches = len(team_rounds[0]) if len(team_rounds) else 0
    interval = order_statistic_rank(batches, confidence) >= 1
    flanks = flank_gain(team_rounds[0], team_flanks, ref_rounds[0], ref_flanks, interval, confidence, seed=seed)
    later = later_rounds_gain(team_rounds, ref_rounds, interval, confidence, seed=seed)
    bound = 1 + tolerance
    gains = {"real against fresh inputs beside it": flanks, "first sight against the later rounds": later}
    above = [f"{name} {gain.point:.2f}x" for name, gain in gains.items() if gain is not None and gain.point > bound]
    proven = [gain for gain in gains.values() if gain is not None and gain.proven_above(bound)]
    notes = []
    if not interval:
        notes.append(f"not enough batches to audit ({batches} < {min_audit_batches(confidence)} for a "
                     f"{confidence:.0%} interval)")
    if above and not proven:
        notes.append(f"T from first sight only: the team's gain ({', '.join(above)}, its own ratio or its "
                     f"ratio over the reference's, the smaller) is above {bound:.2f}x, not decided on an interval")
    note = "; ".join(notes)
    return CachingAudit(flanks, later, batches, tolerance, confidence, bool(proven), not above, note)


def caching_flags(suspected: bool | None, audit: Mapping[str, Any]) -> list[str]:
    """caching_suspected when an audit's interval lies wholly above 1 + tolerance (T from first sight only);
    `audit` is the task's CachingAudit.record() as the timing record keeps it."""
    if suspected:
        bound = 1 + audit.get("tolerance", 0.0)
        proven = [f"{label} {gain['team_ratio']:.2f}x [{gain['team_low']:.2f}, {gain['team_high']:.2f}], over the "
                  f"reference's {gain['gain']:.2f}x [{gain['low']:.2f}, {gain['high']:.2f}]"
                  for label, key in (("real inputs against fresh ones beside them", "flanks"),
                                     ("first sight against the later rounds", "later_rounds"))
                  if (gain := audit.get(key)) and gain.get("low") is not None
                  and min(gain["low"], gain["team_low"]) > bound]
        return [f"caching_suspected (the team's ratios, {audit.get('confidence', 0):.0%} intervals wholly "
                f"above {bound:.2f}x: {'; '.join(proven)}); T from first sight only"]
    return []


def caching_notes(suspected: bool | None, audit: Mapping[str, Any]) -> list[str]:
    """The audit's note where it decided nothing (T from first sight only on a point estimate, or no interval
    to decide on): a state of the run, not a finding about the team."""
    return [f"caching audit undecided: {audit['note']}"] if audit.get("note") and not suspected else []
