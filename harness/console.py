"""What people see on the terminal: rich tables for scores, results and self-check verdicts.

Team names, reasons, errors, flags, notes and log tails come from untrusted submissions. They reach the terminal
only through `plain`, which never reads them as rich markup (`[/opt/wheels]` stays literal) and shows
control characters as escapes, so a team's output cannot recolour, overwrite or clear the console.
Our own fixed strings may use markup; anything that interpolates a value does not.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.check import Verdict
from harness.progress import TimingEvent
from harness.results import TeamResult, split_note
from harness.spec import Spec
from harness.tasks import TaskScore

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides that reorder a line
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b"}


def visible(text: object) -> str:
    """`text` with every control character written as an escape (ESC as \\x1b, CR as \\r)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode()), str(text))


def plain(text: object, style: str = "") -> Text:
    """Untrusted text for rich: no markup, no control characters."""
    return Text(visible(text), style=style)


def labelled(label: str, style: str, text: object) -> Text:
    """`label: text`, the label styled by us, the text plain."""
    return Text.assemble((f"{label}: ", style), plain(text))


PLAIN_WARMUP_EVERY_S = 10.0     # plain output: at most one warm-up line per this many seconds of a task's warm-up


class TimingLines:
    """Timing events (harness.progress) on the console, as they come (between timed windows only).

    On a terminal, `show` redraws one live line with each event (the CLI's rich Live has no refresh thread,
    so nothing is drawn while a window is timed), and each task's outcome (its "done") stays printed above
    it. Elsewhere (a log, CI, a test's runner) a plain line per
    event, stamped with the time of day, except warm-up: its first pair of windows, then at most one line
    every PLAIN_WARMUP_EVERY_S of the task's warm-up."""

    def __init__(self, console: Console, show: Callable[[Text], None]):
        self.console, self.show = console, show
        self.warmup_shown: dict[tuple[str, str], float] = {}    # (team, task) -> warm-up seconds last printed

    def __call__(self, event: TimingEvent) -> None:
        text = plain(event.line())
        if self.console.is_terminal and not self.console.is_dumb_terminal:
            if event.phase == "done":     # each task's outcome stays above the live line
                self._print(text)
            self.show(text)
            return
        if event.phase == "warm-up":
            last = self.warmup_shown.get((event.team, event.task))
            if last is not None and event.elapsed_s < last + PLAIN_WARMUP_EVERY_S:
                return
            self.warmup_shown[(event.team, event.task)] = event.elapsed_s
        self._print(text)

    def _print(self, text: Text) -> None:
        self.console.print(Text.assemble((f"[{datetime.now():%H:%M:%S}] ", "log.time"), text),
                           soft_wrap=True, highlight=False)


def _fmt(value, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def print_task_score(console: Console, scored: TaskScore, ranking_metric: str) -> None:
    table = Table(title=plain(f"{scored.task}: {scored.score:.2f} ({ranking_metric})"), title_justify="left")
    table.add_column("metric")
    table.add_column("value (0-100)", justify="right")
    for name, value in scored.metrics.items():
        table.add_row(plain(name), f"{value:.2f}")
    console.print(table)
    console.print(f"gold examples: {scored.n_gold}   predictions: {scored.n_pred}", highlight=False)
    if scored.problems:
        console.print(f"[yellow]{len(scored.problems)} problem(s) with the predictions:[/yellow]")
        for problem in scored.problems[:20]:
            console.print(plain(f"  - {problem}"))
        if len(scored.problems) > 20:
            console.print(f"  ... and {len(scored.problems) - 20} more (use --json for all)", highlight=False)


def print_team_result(console: Console, result: TeamResult, spec: Spec) -> None:
    s = result.score
    """The tasks the team declared (and ran) in a table, the spec's other tasks named as skipped."""
    table = Table(title=plain(f"{result.team}: {result.status}"), title_justify="left")
    on_gpu = str(result.environment.device or "").startswith("cuda")
    busy_column = "device busy\nteam | ref" if on_gpu else "CPU cores busy\nteam | ref"
    for column in ("task", "score", "ms/example", "params", busy_column, "forward\n(team's own)"):
        table.add_column(column, justify="left" if column == "task" else "right")
    notes = []
    for name in [t for t in spec.task_names if t in result.tasks]:
        info, reference = result.tasks[name], result.reference.get(name)
        per_example = info.time_per_example_s
        team_split = info.timing.get("time_split") or {}
        ref_split = (reference.timing.get("time_split") if reference is not None else None) or {}
        table.add_row(name, _fmt(info.score), _fmt(per_example * 1000 if per_example else None),
                      _fmt(info.params, "{:,}") if info.ok else plain(info.error or "-"),
                      split_cell(team_split, ref_split, on_gpu),
                      _fmt((team_split.get("own") or {}).get("forward_share"), "{:.0%}"))
        note = split_note(team_split, ref_split)
        if note:
            notes.append(f"{name}: {note}")
    if result.tasks:
        console.print(table)
        for note in notes:     # a figure that could not be read says why, never a silent dash
            console.print(labelled("split note", "cyan", note), soft_wrap=True)
        skipped = [t for t in spec.task_names if t not in result.tasks]
        if skipped:
            console.print(plain(f"skipped (not in the team's harness.toml tasks, scored 0): {', '.join(skipped)}"))
    else:
        console.print(plain(f"{result.team}: {result.status} (no task ran)"))
    if s is not None:
        interval = f" [{s.speedup_low:.2f}, {s.speedup_high:.2f}] {s.speed_verdict}" if s.speedup is not None else ""
        console.print(plain(f"P = {s.P:.2f}   S = {_fmt(s.S, '{:,}')}   speedup = {_fmt(s.speedup, '{:.2f}x')}"
                            f"{interval}   compliant = {s.compliant}   res = {_fmt(s.res, '{:.4f}')}"))
    # errors, flags and notes name paths and commands: printed whole on their lines, never folded at the width.
    # A flag is a finding (look at this team); a note a state of the run that is not one (timed on CPU, say)
    if result.error:
        console.print(labelled("error", "red", result.error), soft_wrap=True)
    for flag in result.flags:
        console.print(labelled("flag", "yellow", flag), soft_wrap=True)
    for note in result.notes:
        console.print(labelled("note", "dim", note), soft_wrap=True)


def split_cell(team: dict, reference: dict, on_gpu: bool) -> str:
    """'21% | 97%' (device busy share, on a GPU) or '1.9 | 3.8' (CPU cores busy), a dash where unread."""
    if on_gpu:
        return f"{_fmt(team.get('device_busy'), '{:.0%}')} | {_fmt(reference.get('device_busy'), '{:.0%}')}"
    return f"{_fmt(team.get('cpu_busy'), '{:.1f}')} | {_fmt(reference.get('cpu_busy'), '{:.1f}')}"


def print_findings(console: Console, findings) -> None:
    """A table of what was checked, then each fix on lines of its own: a command in a fix must copy whole,
    so it is never folded into a narrow table cell."""
    table = Table(title="harness doctor", title_justify="left")
    table.add_column("check")
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    for f in findings:  # details quote commands such as pip install 'lightlm-harness[gpu]': never markup
        state = Text("ok", style="green") if f.ok else Text("missing", style="red")
        table.add_row(plain(f.what), state, plain(f.detail))
    console.print(table)
    for f in findings:
        if not f.ok and f.fix:
            console.print(Text.assemble((f"{visible(f.what)} -> ", "bold"), plain(f.fix)), soft_wrap=True)


def print_verdicts(console: Console, verdicts: list[Verdict]) -> None:
    table = Table(title="self-check", title_justify="left")
    table.add_column("rule")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold")
    for v in verdicts:
        verdict = Text("PASS", style="green") if v.passed else Text("FAIL", style="red")
        table.add_row(plain(v.rule), verdict, plain(v.detail))
    console.print(table)


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} GB"


def print_gc_report(console: Console, report, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for item in report.removed:
        size = "" if item.kind == "container" else f" ({human_bytes(item.bytes)})"
        console.print(plain(f"{verb} {item.kind} {item.name}{size}"), highlight=False)
    for note in report.notes:
        console.print(plain(f"note: {note}"), highlight=False)
    console.print(f"{verb} {len(report.removed)} item(s), {'would free' if dry_run else 'freed'} "
                  f"{human_bytes(report.freed_bytes)}; kept {len(report.kept)} needed by the current teams "
                  "(and the runner image)", markup=False, highlight=False)
