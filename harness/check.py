"""A participant's self-check: one plain pass/fail verdict per rule, from the same run the organizers do."""

from __future__ import annotations

from dataclasses import dataclass

from harness.results import TeamResult
from harness.spec import Spec


HOST_DOMINATES = 0.5        # below this device busy share (harness.time_split), host work is most of a side's time


@dataclass(frozen=True)
class Verdict:
    rule: str
    passed: bool
    detail: str


def verdicts(result: TeamResult, spec: Spec) -> list[Verdict]:
    """Verdicts in the order a participant fixes things: manifest, setup, tasks, predictions, limits, score."""
    out = [Verdict("manifest valid", result.status != "invalid_submission",
                   "harness.toml is valid" if result.status != "invalid_submission" else result.error)]
    if result.status == "invalid_submission":
        return out
    built = result.status != "build_failed"
    out.append(Verdict("setup ran", built, "setup script succeeded" if built else result.error))
    if not built:
        return out
    for name in spec.task_names:
        info = result.tasks.get(name)
        if info is None:
            out.append(Verdict(f"{name} ran", False, "not listed in harness.toml tasks (scores 0)"))
            continue
        ok = info.ok and info.score is not None
        detail = f"{info.time_per_example_s * 1000:.2f} ms/example" if ok else str(info.error)
        out.append(Verdict(f"{name} ran", ok, detail))
        if ok:
            problems = info.problems
            out.append(Verdict(f"{name} predictions valid", not problems,
                               f"score {info.score:.2f}" if not problems
                               else f"{len(problems)} problem(s): {problems[0]}"))
    s = result.score
    if s is None:
        return out
    limit = spec.limits
    params = f"{s.S:,}" if s.S is not None else "unknown"
    out.append(Verdict(f"params < {limit.max_params:,}", s.params_ok, f"{params} parameters"))
    speed = (f"{s.speedup:.2f}x [{s.speedup_low:.2f}, {s.speedup_high:.2f}] ({s.speed_verdict})"
             if s.speedup is not None else "unknown")
    # a borderline interval is no pass: the self-check says so rather than guessing
    out.append(Verdict(f"speedup >= {limit.min_speedup:g}x", s.speed_ok is True, f"{speed} against BERT-base"))
    final = f"{s.res:.4f}" if s.res is not None else "none"
    out.append(Verdict("final score", s.res is not None and s.compliant and not s.failed_tasks,
                       f"res = {final} (P = {s.P:.2f})"))
    return out


def host_work_diagnosis(result: TeamResult, spec: Spec) -> str | None:
    """One line when host work dominates the team's time on a GPU: the task where the device was busy the
    least share of the team's timed windows (harness.time_split, read by the host), the others below half
    beside it. None on a CPU (no device to weigh the host against) and when the device did most of the work."""
    shares = []
    for name in spec.task_names:
        task = result.tasks.get(name)
        split = (task.timing.get("time_split") if task is not None else None) or {}
        if split.get("device_busy") is not None and split["device_busy"] < HOST_DOMINATES:
            shares.append((split["device_busy"], name))
    if not shares:
        return None
    (worst, name), rest = min(shares), sorted(shares)[1:]
    also = f" ({', '.join(f'{n} {s:.0%}' for s, n in rest)})" if rest else ""
    return (f"{name}: the device was busy {worst:.0%} of your time{also}; the rest is host work (tokenization, "
            "tensor building): batch and vectorize it")
