"""The competition's arithmetic as pure functions: aggregation, limits and the final formula.

res = w_P * P/100 + w_S * (1 - S / (size_factor * S_bert)) + w_T * (1 - T / T_bert)

P is the mean ranking score over every task of the spec (a task that failed or did not run scores 0 and is
named, but is no breach of the limits). S and T aggregate per-task figures as the spec says; T and T_bert are taken over the same tasks (those
where both the team and the reference produced a time), so the ratio compares like with like.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping

from harness.spec import Formula, Limits, Spec


@dataclass(frozen=True)
class TaskOutcome:
    """One task of one model: its ranking score (0-100), counted parameters and median-round seconds."""

    task: str
    score: float | None = None
    params: int | None = None
    time_s: float | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.score is not None


@dataclass(frozen=True)
class ReferenceTask:
    """The reference on one task: parameters, time (mean of the bracketing runs) and their disagreement."""

    params: int
    time_s: float
    drift: float          # |before - after| / mean; 0 when measured once


@dataclass(frozen=True)
class TeamScore:
    P: float
    S: int | None
    T: float | None
    S_bert: int | None
    T_bert: float | None
    speedup: float | None
    params_ok: bool
    speed_ok: bool
    compliant: bool
    res: float | None
    failed_tasks: tuple[str, ...]
    reasons: tuple[str, ...]


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


def bracket_reference(before: Mapping[str, ReferenceTask], after: Mapping[str, ReferenceTask] | None
                      ) -> dict[str, ReferenceTask]:
    """Combine the reference runs before and after a team: mean time per task, and how far they differed."""
    if not after:
        return dict(before)
    combined = {}
    for task, first in before.items():
        second = after.get(task)
        if second is None:
            combined[task] = first
            continue
        mean = (first.time_s + second.time_s) / 2
        drift = abs(first.time_s - second.time_s) / mean if mean > 0 else 0.0
        combined[task] = ReferenceTask(first.params, mean, drift)
    return combined


def final_score(P: float, S: float, S_bert: float, T: float, T_bert: float, formula: Formula) -> float:
    """The guideline's formula, P on 0-100."""
    return (formula.score_weight * P / 100
            + formula.size_weight * (1 - S / (formula.size_factor * S_bert))
            + formula.time_weight * (1 - T / T_bert))


def check_limits(S: int | None, speedup: float | None, limits: Limits) -> tuple[bool, bool, list[str]]:
    """(params_ok, speed_ok, reasons): parameters strictly below the limit, speedup at least the minimum."""
    reasons = []
    params_ok = S is not None and S < limits.max_params
    if S is None:
        reasons.append("no parameter count (no task ran)")
    elif not params_ok:
        reasons.append(f"{S:,} parameters; the limit is fewer than {limits.max_params:,}")
    speed_ok = speedup is not None and speedup >= limits.min_speedup
    if speedup is None:
        reasons.append("no speedup (no task timed on both the team and the reference)")
    elif not speed_ok:
        reasons.append(f"speedup {speedup:.2f}x; at least {limits.min_speedup:g}x is required")
    return params_ok, speed_ok, reasons


def score_team(outcomes: Mapping[str, TaskOutcome], reference: Mapping[str, ReferenceTask], spec: Spec
               ) -> TeamScore:
    """Everything the leaderboard needs from per-task outcomes and the (bracketed) reference."""
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
    speedup = T_bert / T if T and T_bert else None
    params_ok, speed_ok, reasons = check_limits(S, speedup, spec.limits)
    if failed:
        reasons.append(f"failed or missing tasks score 0: {', '.join(failed)}")
    res = (final_score(P, S, S_bert, T, T_bert, spec.formula)
           if None not in (S, S_bert, T, T_bert) else None)
    return TeamScore(P=P, S=S, T=T, S_bert=S_bert, T_bert=T_bert, speedup=speedup, params_ok=params_ok,
                     speed_ok=speed_ok, compliant=params_ok and speed_ok, res=res,
                     failed_tasks=failed, reasons=tuple(reasons))
