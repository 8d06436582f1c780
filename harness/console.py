"""What people see on the terminal: rich tables for scores, results and self-check verdicts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.check import Verdict
from harness.results import TeamResult
from harness.spec import Spec
from harness.tasks import TaskScore


def _fmt(value, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def print_task_score(console: Console, scored: TaskScore, ranking_metric: str) -> None:
    table = Table(title=f"{scored.task}: {scored.score:.2f} ({ranking_metric})", title_justify="left")
    table.add_column("metric")
    table.add_column("value (0-100)", justify="right")
    for name, value in scored.metrics.items():
        table.add_row(name, f"{value:.2f}")
    console.print(table)
    console.print(f"gold examples: {scored.n_gold}   predictions: {scored.n_pred}")
    if scored.problems:
        console.print(f"[yellow]{len(scored.problems)} problem(s) with the predictions:[/yellow]")
        for problem in scored.problems[:20]:
            console.print(f"  - {problem}", markup=False)
        if len(scored.problems) > 20:
            console.print(f"  ... and {len(scored.problems) - 20} more (use --json for all)")


def print_team_result(console: Console, result: TeamResult, spec: Spec) -> None:
    s = result.score
    table = Table(title=f"{result.team}: {result.status}", title_justify="left")
    for column in ("task", "score", "ms/example", "params"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for name in spec.task_names:
        info = result.tasks.get(name, {})
        per_example = info.get("time_per_example_s")
        table.add_row(name, _fmt(info.get("score")), _fmt(per_example * 1000 if per_example else None),
                      _fmt(info.get("params"), "{:,}") if "params" in info else str(info.get("error") or "-"))
    console.print(table)
    if s is not None:
        console.print(f"P = {s.P:.2f}   S = {_fmt(s.S, '{:,}')}   speedup = {_fmt(s.speedup, '{:.2f}x')}   "
                      f"compliant = {s.compliant}   res = {_fmt(s.res, '{:.4f}')}")
    if result.error:
        console.print(f"[red]error:[/red] {result.error}", markup=True, highlight=False)
    for flag in result.flags:
        console.print(f"[yellow]flag:[/yellow] {flag}", highlight=False)


def print_findings(console: Console, findings) -> None:
    table = Table(title="harness doctor", title_justify="left")
    table.add_column("check")
    table.add_column("state")
    table.add_column("detail / what to do", overflow="fold")
    for f in findings:
        state = "[green]ok[/green]" if f.ok else "[red]missing[/red]"
        table.add_row(f.what, state, f.detail if f.ok else f"{f.detail}\n-> {f.fix}")
    console.print(table)


def print_verdicts(console: Console, verdicts: list[Verdict]) -> None:
    table = Table(title="self-check", title_justify="left")
    table.add_column("rule")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for v in verdicts:
        table.add_row(v.rule, "[green]PASS[/green]" if v.passed else "[red]FAIL[/red]", v.detail)
    console.print(table)
