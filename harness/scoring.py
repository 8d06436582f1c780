"""The competition's arithmetic as pure functions: aggregation, limits and the final formula.

res = w_P * P/100 + w_S * (1 - S / (size_factor * S_bert)) + w_T * (1 - T / T_bert)

P is the mean ranking score over every task of the spec (a task that failed or did not run scores 0 and is
named, but is no breach of the limits). S and T aggregate per-task figures as the spec says; T and T_bert are
taken over the same tasks (those where both the team and the reference produced a time), so the ratio
compares like with like. A task's time is its mean pass seconds over the timed rounds.

The speed limit is decided on the speedup's confidence interval, not its point: pass when the low bound
reaches the minimum, fail when the high bound is below it, borderline otherwise (speed_ok is then None: the
row is neither compliant nor ruled out, and says so).

What the row says of these decisions is here too: borderline_flags, a speedup interval wider than its
target (speedup_half_width_flags for the team, task_half_width_flags for each task), and a task's
predictions with problems (prediction_problem_flags).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

from harness import stats
from harness.spec import Formula, Limits, Spec, TaskSpec
from harness.tasks import TaskScore, get_task

Rounds = Sequence[Sequence[float]]      # rounds x batches, seconds, canonical batch order


def ranked_score(task: TaskSpec, gold: list[dict[str, Any]], predictions: list[dict[str, Any]],
                 problems: Sequence[str] = ()) -> TaskScore:
    """One task's predictions scored by its module, exactly as the official scorer does, with the spec's
    ranking metric as the score: the spec owns which metric ranks, for `harness score`, `run` and `batch`
    alike (a task module's own ranking_metric is only what its score() puts first; the spec's loader
    accepts only a metric the module computes)."""
    scored = get_task(task.name).score(gold, predictions, list(problems))
    return replace(scored, score=scored.metrics[task.ranking_metric])


@dataclass(frozen=True)
class TaskOutcome:
    """One task of one model: its ranking score (0-100), counted parameters, mean pass seconds, and the
    per-batch seconds of the rounds that time counts (first sight only for a team suspected of caching)."""

    task: str
    score: float | None = None
    params: int | None = None
    time_s: float | None = None
    error: str = ""
    rounds: Rounds = ()
    target_half_width: float = 0.0    # the interval's target half-width its rounds were timed to (0: none)

    @property
    def ok(self) -> bool:
        return not self.error and self.score is not None


@dataclass(frozen=True)
class ReferenceTask:
    """The reference on one task, timed interleaved with the team: parameters, mean pass seconds, rounds."""

    params: int
    time_s: float
    rounds: Rounds = ()


@dataclass(frozen=True)
class TeamScore:
    P: float
    S: int | None
    T: float | None
    S_bert: int | None
    T_bert: float | None
    speedup: float | None
    speedup_low: float | None
    speedup_high: float | None
    speed_verdict: str            # pass, fail, borderline, or unknown (no speedup)
    params_ok: bool
    speed_ok: bool | None         # None: borderline after the spec's round budget
    compliant: bool
    res: float | None
    failed_tasks: tuple[str, ...]
    reasons: tuple[str, ...]
    speedup_half_width: float | None = None    # (high - low) / 2 / speedup; None without rounds to say it
    target_half_width: float = 0.0             # the tasks' target (0: none applied, e.g. on a CPU)
    half_width_met: bool | None = None         # None without a target


def half_width_of(interval: stats.Interval | None, timed: Sequence[TaskOutcome]
                  ) -> tuple[float | None, float, bool | None]:
    """(the overall interval's relative half-width, the target, whether it met it): the target is the one
    the tasks' rounds were timed to (the same for every task of a run; the largest if they differ). T and
    T_bert add the tasks, so the whole interval is usually narrower than its tasks', but not always: its t
    part takes the fewest rounds of any task for degrees of freedom (stats.round_level_interval)."""
    target = max((o.target_half_width for o in timed), default=0.0)
    if interval is None or interval.method != stats.METHOD:
        return None, target, None
    width = interval.half_width
    return width, target, (width <= target if target > 0 else None)


def aggregate(values: Iterable[float], how: str) -> float:
    values = list(values)
    if not values:
        raise ValueError("nothing to aggregate")
    if how == "max":
        return max(values)
    if how == "sum":
        return sum(values)
    if how == "mean":
        return statistics.fmean(values)
    raise ValueError(f"unknown aggregate {how!r}")


def final_score(P: float, S: float, S_bert: float, T: float, T_bert: float, formula: Formula) -> float:
    """The guideline's formula, P on 0-100."""
    return (formula.score_weight * P / 100
            + formula.size_weight * (1 - S / (formula.size_factor * S_bert))
            + formula.time_weight * (1 - T / T_bert))


def check_limits(S: int | None, interval: stats.Interval | None, limits: Limits
                 ) -> tuple[bool, bool | None, str, list[str]]:
    """(params_ok, speed_ok, speed verdict, reasons): parameters strictly below the limit; speed decided on
    the interval (None when it straddles the minimum)."""
    reasons = []
    params_ok = S is not None and S < limits.max_params
    if S is None:
        reasons.append("no parameter count (no task ran)")
    elif not params_ok:
        reasons.append(f"{S:,} parameters; the limit is fewer than {limits.max_params:,}")
    if interval is None:
        reasons.append("no speedup (no task timed on both the team and the reference)")
        return params_ok, False, "unknown", reasons
    verdict = stats.verdict(interval, limits.min_speedup)
    span = f"{interval.point:.2f}x [{interval.low:.2f}, {interval.high:.2f}]"
    if verdict == "fail":
        reasons.append(f"speedup {span}; at least {limits.min_speedup:g}x is required")
    elif verdict == "borderline":
        reasons.append(f"speedup {span} straddles the required {limits.min_speedup:g}x (borderline)")
    speed_ok = {"pass": True, "fail": False}.get(verdict)
    return params_ok, speed_ok, verdict, reasons


def speedup_interval(outcomes: Mapping[str, TaskOutcome], reference: Mapping[str, ReferenceTask],
                     tasks: Sequence[str], T: float | None, T_bert: float | None, confidence: float
                     ) -> stats.Interval | None:
    """T_bert / T over `tasks` with its interval; a point-only interval when rounds were not kept."""
    if not tasks or not T or not T_bert:
        return None
    if all(outcomes[t].rounds and reference[t].rounds for t in tasks):
        return stats.speedup_interval([outcomes[t].rounds for t in tasks], [reference[t].rounds for t in tasks],
                                      confidence=confidence)
    return stats.Interval(T_bert / T, T_bert / T, T_bert / T, confidence, "point only (no rounds kept)")


def score_team(outcomes: Mapping[str, TaskOutcome], reference: Mapping[str, ReferenceTask], spec: Spec
               ) -> TeamScore:
    """Everything the leaderboard needs from per-task outcomes and the interleaved reference."""
    tasks = spec.task_names
    failed = tuple(t for t in tasks if t not in outcomes or not outcomes[t].ok)
    P = statistics.fmean(outcomes[t].score if t not in failed else 0.0 for t in tasks)
    ran = [t for t in tasks if t not in failed and outcomes[t].params is not None]
    timed = [t for t in ran if outcomes[t].time_s is not None and t in reference]
    how_S, how_T = spec.formula.size_aggregate, spec.formula.time_aggregate
    S = int(aggregate((outcomes[t].params for t in ran), how_S)) if ran else None
    S_bert = int(aggregate((r.params for r in reference.values()), how_S)) if reference else None
    T = aggregate((outcomes[t].time_s for t in timed), how_T) if timed else None
    T_bert = aggregate((reference[t].time_s for t in timed), how_T) if timed else None
    interval = speedup_interval(outcomes, reference, timed, T, T_bert, spec.timing.confidence)
    params_ok, speed_ok, verdict, reasons = check_limits(S, interval, spec.limits)
    width, target, met = half_width_of(interval, [outcomes[t] for t in timed])
    if failed:
        reasons.append(f"failed or missing tasks score 0: {', '.join(failed)}")
    res = (final_score(P, S, S_bert, T, T_bert, spec.formula)
           if None not in (S, S_bert, T, T_bert) else None)
    return TeamScore(P=P, S=S, T=T, S_bert=S_bert, T_bert=T_bert,
                     speedup=interval.point if interval else None,
                     speedup_low=interval.low if interval else None,
                     speedup_high=interval.high if interval else None, speed_verdict=verdict,
                     params_ok=params_ok, speed_ok=speed_ok, compliant=params_ok and speed_ok is True, res=res,
                     failed_tasks=failed, reasons=tuple(reasons), speedup_half_width=width,
                     target_half_width=target, half_width_met=met)


def borderline_flags(score: TeamScore, spec: Spec) -> list[str]:
    """The row's flag when the speedup interval still straddles the minimum after the spec's round budget."""
    if score.speed_verdict != "borderline":
        return []
    return [f"borderline: the speedup interval straddles {spec.limits.min_speedup:g}x "
            f"after the spec's round budget (at most {spec.timing.max_rounds} rounds and "
            f"{spec.timing.max_timing_s:g} s of rounds a task)"]


def speedup_half_width_flags(score: TeamScore) -> list[str]:
    """The whole team's speedup interval left wider than its target (half_width_of)."""
    if score.half_width_met is not False:
        return []
    return [f"speedup interval +-{score.speedup_half_width:.1%}, wider than the target "
            f"+-{score.target_half_width:.1%}"]


def task_half_width_flags(record: Mapping[str, Any], max_timing_s: float) -> list[str]:
    """One task's speedup interval left wider than its target, from its timing record: the half-width reached
    against the target and why its rounds stopped (max_rounds, or the spec's `max_timing_s` time cap)."""
    if record.get("half_width_met") is not False:
        return []
    rounds = len(record.get("orders") or ())
    why = {"max_rounds": f"max_rounds ({rounds} rounds, {record.get('timing_s', 0.0):.0f} s)",
           "max_timing_s": f"the time cap (max_timing_s {max_timing_s:g} s: {rounds} rounds in "
                           f"{record.get('timing_s', 0.0):.0f} s)"}.get(record.get("rounds_stopped_by"),
                                                                       str(record.get("rounds_stopped_by")))
    return [f"speedup interval +-{record['half_width']:.1%} against a target of "
            f"+-{record['target_half_width']:.1%}; rounds stopped at {why}"]


def prediction_problem_flags(problems: Sequence[str]) -> list[str]:
    """A task's predictions with problems (TaskScore.problems, what scoring reported instead of raising): how
    many, and the first."""
    return [f"{len(problems)} prediction problem(s), e.g. {problems[0]}"] if problems else []
