"""A batch's results as one self-contained HTML page: summary, leaderboard, per-task scores and a chart.

The page must open from disk on a machine with no network, so CSS and the chart (hand-written SVG) are inline.
Team names, reasons and errors come from untrusted submissions: every cell goes through `_escape`, which
writes control characters as escapes (ESC as \\x1b, as the console does) before `html.escape`.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.console import visible
from harness.spec import Spec
from harness.split_report import CSS as SPLIT_CSS, split_section

WIDTH, HEIGHT = 960, 600
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 90, 930, 30, 530   # pixel box of the plotting area
MISSING = "—"
CSS = """
body { font-family: system-ui, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; line-height: 1.4; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.noncompliant td { color: #8a4b00; } tr.failed td { color: #999; } td.notes { color: #777; }
svg text { font-size: 12px; font-family: inherit; }
svg text.label { paint-order: stroke; stroke: #fff; stroke-width: 3px; }
"""


def _number(value: Any) -> float | None:
    """A float, or None for NaN, None, empty strings and anything unparsable (cells read back from CSV)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _truthy(value: Any) -> bool:
    """Booleans arrive as bools, or as the strings "True"/"False" when the frame was read back from CSV."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return _number(value) not in (None, 0.0)


def _escape(text: Any) -> str:
    """Untrusted text for HTML: control characters shown as escapes, then markup escaped."""
    return html.escape(visible(text))


def _text(value: Any) -> str:
    """Escaped cell text; missing values (None, NaN, empty) become a dash."""
    if value is None or (not isinstance(value, str) and pd.isna(value)) or str(value) == "":
        return MISSING
    return _escape(value)


def _fmt(value: Any, pattern: str) -> str:
    number = _number(value)
    return MISSING if number is None else pattern.format(number)


def _table(headers: Iterable[str], rows: Iterable[tuple[str, list[str]]]) -> str:
    """`rows` are (tr class, cells already escaped); a cell starting with '<td' is kept as written."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{cls}">' + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells)
                   + "</tr>\n" for cls, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"


def _summary_table(summary: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return ", ".join(f"{_text(k)}: {_text(n)}" for k, n in v.items())
        if isinstance(v, (list, tuple)):
            return ", ".join(_text(item) for item in v) or _text(None)
        return _text(v)
    return _table(["run", ""], [("", [_text(k), value(v)]) for k, v in summary.items()])


def _why(reason: Any, error: Any) -> str:
    """The row's reason and, when it says more, the actual error: a generic reason ("no parameter count")
    alone would hide what went wrong, as the CSV does not."""
    reason, error = _text(reason), _text(error)
    parts = [p for p in (reason, f"error: {error}" if error not in (MISSING, reason) else MISSING) if p != MISSING]
    return "; ".join(parts)


def _notes(row: dict[str, Any]) -> str:
    """The row's notes in a greyed cell of their own, apart from its flags: states of the run (timed on CPU,
    an audit too small to decide), not findings about the team."""
    return f'<td class="notes">{_text(row["notes"])}</td>'


def _leaderboard(frame: pd.DataFrame) -> str:
    """The ranked table; with a "timed on" column when teams were timed on several hosts (batch --engine ray)."""
    placed = "timed_on" in frame and any(_text(value) != MISSING for value in frame["timed_on"])
    rows, rank = [], 0
    for row in frame.to_dict("records"):
        compliant = _truthy(row["compliant"])
        rank += compliant
        failed = _number(row["score"]) is None
        why = _why(row["reason"], row["error"])
        numbers = [("score", "{:.4f}"), ("P", "{:.2f}"), ("params", "{:,.0f}"), ("speedup", "{:,.1f}x")]
        cells = [str(rank) if compliant else "", _text(row["team"]), _text(row["status"]),
                 *(f'<td class="num">{_fmt(row[c], pattern)}</td>' for c, pattern in numbers),
                 "yes" if compliant else f"no: {why}" if why else "no", _text(row["flags"]), _notes(row)]
        if placed:
            cells.append(_text(row["timed_on"]))
        rows.append(("compliant" if compliant else "failed" if failed else "noncompliant", cells))
    headers = ["#", "team", "status", "score", "P", "params", "speedup", "compliant", "flags", "notes"]
    return _table(headers + ["timed on"] * placed, rows)


def _task_scores(frame: pd.DataFrame, spec: Spec) -> str:
    rows = [("", [_text(row["team"])] + [f'<td class="num">{_fmt(row[f"{t}_score"], "{:.2f}")}</td>'
                                         for t in spec.task_names]) for row in frame.to_dict("records")]
    return _table(["team", *spec.task_names], rows)


@dataclass(frozen=True)
class Axis:
    """Maps data values in [lo, hi] onto pixels [start, end], linearly or by log10."""

    lo: float
    hi: float
    log: bool
    start: float
    end: float

    def px(self, value: float) -> float:
        f = (lambda v: math.log10(v)) if self.log else (lambda v: v)
        return self.start + (f(value) - f(self.lo)) / (f(self.hi) - f(self.lo)) * (self.end - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            decades = range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1)
            steps = (1, 2, 5) if math.log10(self.hi / self.lo) <= 4 else (1,)
            marks = (m * 10.0 ** d for d in decades for m in steps)
            return [t for t in marks if self.lo * 0.9999 <= t <= self.hi * 1.0001]
        step = _nice(self.hi / 5)
        return [i * step for i in range(int(self.hi / step + 1e-9) + 1)]


def _nice(raw: float, up: bool = True) -> float:
    """The nearest of 1, 2, 5 times a power of ten at or above `raw` (at or below it when `up` is False)."""
    magnitude = 10.0 ** math.floor(math.log10(raw))
    if up:
        return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return next(m * magnitude for m in (5, 2, 1) if m * magnitude <= raw * (1 + 1e-9))


def make_axis(values: list[float], start: float, end: float) -> Axis:
    """Log scale when the positive values span more than a decade, else linear from 0; ends at 1-2-5 values.

    Speedups measured on CPU can reach 1000x and parameters run from tens of thousands to 110M, so a linear
    axis would crowd every small model into one corner. The 15% (log) or 10% (linear) margin keeps points
    off the frame.
    """
    low, high = min(values), max(values)
    if low > 0 and high / low > 10:
        return Axis(_nice(low / 1.15, up=False), _nice(high * 1.15), True, start, end)
    step = _nice(max(high, 1e-9) * 1.1 / 5)
    return Axis(0.0, math.ceil(high * 1.1 / step) * step, False, start, end)


def _count(value: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def _axes_svg(x: Axis, y: Axis) -> list[str]:
    parts = []
    for t in x.ticks():
        parts.append(f'<line x1="{x.px(t):.1f}" y1="{PLOT_TOP}" x2="{x.px(t):.1f}" y2="{PLOT_BOTTOM}" stroke="#eee"/>'
                     f'<text x="{x.px(t):.1f}" y="{PLOT_BOTTOM + 16}" text-anchor="middle">{_count(t)}</text>')
    for t in y.ticks():
        parts.append(f'<line x1="{PLOT_LEFT}" y1="{y.px(t):.1f}" x2="{PLOT_RIGHT}" y2="{y.px(t):.1f}" stroke="#eee"/>'
                     f'<text x="{PLOT_LEFT - 6}" y="{y.px(t) + 4:.1f}" text-anchor="end">{t:,g}x</text>')
    scale = {True: "log scale", False: "linear scale"}
    parts.append(f'<rect x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{PLOT_RIGHT - PLOT_LEFT}" '
                 f'height="{PLOT_BOTTOM - PLOT_TOP}" fill="none" stroke="#888"/>'
                 f'<text x="{(PLOT_LEFT + PLOT_RIGHT) / 2}" y="{PLOT_BOTTOM + 40}" text-anchor="middle">'
                 f'parameters ({scale[x.log]})</text>'
                 f'<text transform="translate(22 {(PLOT_TOP + PLOT_BOTTOM) / 2}) rotate(-90)" text-anchor="middle">'
                 f'speedup over BERT-base ({scale[y.log]})</text>')
    return parts


def _limits_svg(spec: Spec, x: Axis, y: Axis, taken: list[tuple[float, ...]]) -> list[str]:
    """The compliant region and both limit lines, labelled; the labels' boxes go into `taken`."""
    lx, ly = x.px(spec.limits.max_params), y.px(spec.limits.min_speedup)
    params_text = f"params < {_count(spec.limits.max_params)}"
    speed_text = f"speedup ≥ {spec.limits.min_speedup:g}x"
    right_of_line = lx - PLOT_LEFT < 120          # too close to the left edge for the label to end at the line
    tx, width = (lx + 4, _text_width(params_text)) if right_of_line else (lx - 4, -_text_width(params_text))
    taken += [(min(tx, tx + width), PLOT_TOP, max(tx, tx + width), PLOT_TOP + 17),
              (PLOT_RIGHT - 4 - _text_width(speed_text), ly - 17, PLOT_RIGHT, ly)]
    return [f'<rect class="compliant-region" x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{lx - PLOT_LEFT:.1f}" '
            f'height="{ly - PLOT_TOP:.1f}" fill="#2e7d32" fill-opacity="0.08"/>',
            f'<line class="limit limit-params" x1="{lx:.1f}" y1="{PLOT_TOP}" x2="{lx:.1f}" y2="{PLOT_BOTTOM}" '
            'stroke="#c62828" stroke-dasharray="6 4"/>',
            f'<text x="{tx:.1f}" y="{PLOT_TOP + 14}" text-anchor="{"start" if right_of_line else "end"}" '
            f'fill="#c62828">{html.escape(params_text)}</text>',
            f'<line class="limit limit-speedup" x1="{PLOT_LEFT}" y1="{ly:.1f}" x2="{PLOT_RIGHT}" y2="{ly:.1f}" '
            'stroke="#c62828" stroke-dasharray="6 4"/>',
            f'<text x="{PLOT_RIGHT - 4}" y="{ly - 5:.1f}" text-anchor="end" fill="#c62828">{speed_text}</text>']


def _text_width(text: str) -> float:
    """Rough width at 12px: CJK glyphs are about twice as wide as Latin ones."""
    return sum(12.5 if ord(ch) >= 0x2E80 else 7.0 for ch in text)


def _place_label(px: float, py: float, text: str, taken: list[tuple[float, ...]]) -> tuple[float, float, str]:
    """Nearest spot beside the point, right then left, moving outward until the label's box stays inside the
    plot and clear of every marker and label already placed; `taken` grows by the box chosen."""
    w = _text_width(text)
    for dy in (4, -10, 18, -24, 32, -38, 46, -52, 60):
        for tx, anchor, left in ((px + 9, "start", px + 9), (px - 9, "end", px - 9 - w)):
            box = (left, py + dy - 12, left + w, py + dy + 3)
            inside = PLOT_LEFT <= box[0] and box[2] <= PLOT_RIGHT and PLOT_TOP <= box[1] and box[3] <= PLOT_BOTTOM
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                taken.append(box)
                return tx, py + dy, anchor
    return px + 9, py + 4, "start"


def _label_svg(px: float, py: float, text: str, taken: list[tuple[float, ...]]) -> tuple[str, str]:
    """The label and, when it had to move away from its point's row, a thin leader line to it."""
    tx, ty, anchor = _place_label(px, py, text, taken)
    leader = (f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{tx:.1f}" y2="{ty - 4:.1f}" stroke="#999" stroke-width="0.7"/>'
              if abs(ty - py - 4) > 14 else "")
    return leader, f'<text class="label" x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}">{_escape(text)}</text>'


def _marker(px: float, py: float, compliant: bool, tooltip: str = "") -> str:
    """Compliant teams are green circles, the others orange squares; the class `point` marks data only."""
    title = f"<title>{tooltip}</title>" if tooltip else ""
    if compliant:
        return f'<circle class="point compliant" cx="{px:.1f}" cy="{py:.1f}" r="6" fill="#2e7d32">{title}</circle>'
    return (f'<rect class="point noncompliant" x="{px - 5:.1f}" y="{py - 5:.1f}" width="10" height="10" '
            f'fill="#ef6c00">{title}</rect>')


def _legend() -> str:
    spots = [(PLOT_RIGHT - 260, True, "compliant"), (PLOT_RIGHT - 160, False, "not compliant")]
    y = HEIGHT - 20
    return "".join(_marker(x, y, ok).replace('class="point ', 'class="legend ')
                   + f'<text x="{x + 10}" y="{y + 4}">{label}</text>' for x, ok, label in spots)


def chart_svg(frame: pd.DataFrame, spec: Spec) -> str:
    """Parameters against speedup, one point per team that has both, with the spec's limits drawn."""
    teams = [(str(r["team"]), _number(r["params"]), _number(r["speedup"]), _number(r["score"]),
              _truthy(r["compliant"])) for r in frame.to_dict("records")]
    teams = [t for t in teams if t[1] is not None and t[2] is not None]
    x = make_axis([t[1] for t in teams] + [spec.limits.max_params], PLOT_LEFT, PLOT_RIGHT)
    y = make_axis([t[2] for t in teams] + [spec.limits.min_speedup], PLOT_BOTTOM, PLOT_TOP)
    points = [(x.px(params), y.px(speedup)) for _, params, speedup, _, _ in teams]
    labels = [name if score is None else f"{name} ({score:.3f})" for name, _, _, score, _ in teams]
    taken: list[tuple[float, ...]] = [(px - 7, py - 7, px + 7, py + 7) for px, py in points]
    parts = _axes_svg(x, y) + _limits_svg(spec, x, y, taken)
    parts += [_marker(px, py, t[4], _escape(label)) for t, (px, py), label in zip(teams, points, labels)]
    placed = [_label_svg(px, py, label, taken) for (px, py), label in zip(points, labels)]
    parts += [leader for leader, _ in placed] + [text for _, text in placed]     # every leader under every label
    return f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">{"".join(parts)}{_legend()}</svg>'


def _calibration(records: list[dict[str, Any]]) -> str:
    """The A/A rows: the reference against itself on each box or slot that timed teams, with the verdict."""
    intro = ("Each box (or Ray slot) that timed teams also times BERT-base against a copy of itself, through the "
             "same protocol. Expected: 1.00x. Fair when the interval lies inside 1.00 ± the tolerance; a box not "
             "proven fair flags every row it timed.")
    if not records:
        return f"<p>{html.escape(intro)}</p><p>No team was timed in this batch: no A/A run.</p>"
    rows = []
    for r in records:
        interval = (f"[{_fmt(r.get('low'), '{:.3f}')}, {_fmt(r.get('high'), '{:.3f}')}]"
                    if r.get("ran") else MISSING)
        half = _number(r.get("half_width"))
        flagged = f'{_fmt(r.get("rows_flagged"), "{:.0f}")} of {_fmt(r.get("rows_timed"), "{:.0f}")}'
        cells = [_text(r.get("box")), _text(r.get("verdict")),
                 f'<td class="num">{_fmt(r.get("speedup"), "{:.3f}x")}</td>', f'<td class="num">{interval}</td>',
                 f'<td class="num">{MISSING if half is None else f"{half:.1%}"}</td>',
                 f'<td class="num">{_fmt(r.get("tolerance"), "{:.0%}")}</td>', f'<td class="num">{flagged}</td>',
                 _text(r.get("reason") or r.get("why_not"))]
        fair = r.get("verdict") == "fair"
        kind = "compliant" if fair else "failed" if r.get("verdict") == "not_run" else "noncompliant"
        rows.append((kind, cells))
    headers = ["box", "verdict", "A/A speedup", "interval", "half-width", "tolerance", "rows flagged", "why"]
    return f"<p>{html.escape(intro)}</p>" + _table(headers, rows)


def write_report(frame: pd.DataFrame, spec: Spec, path: Path, title: str | None = None,
                 summary: dict | None = None, calibration: list[dict[str, Any]] | None = None) -> Path:
    """Write the batch's HTML report to `path`; `frame` is in leaderboard order with results.columns(spec).
    `calibration`: the batch's A/A records (None: not a batch, no section)."""
    title = title or f"{spec.title}: results"
    limits = (f"Compliant: fewer than {spec.limits.max_params:,} parameters and at least "
              f"{spec.limits.min_speedup:g}x faster than BERT-base. Ranks count compliant teams only.")
    body = [f"<h1>{html.escape(title)}</h1>", _summary_table(summary) if summary else "",
            f"<h2>Leaderboard</h2><p>{html.escape(limits)}</p>", _leaderboard(frame),
            *(["<h2>Calibration: A/A</h2>", _calibration(calibration)] if calibration is not None else []),
            "<h2>Per-task scores</h2>", _task_scores(frame, spec),
            "<h2>Where the time goes</h2>", split_section(frame, spec, _number, _text, _table),
            "<h2>Parameters against speedup</h2>", chart_svg(frame, spec)]
    page = (f'<!DOCTYPE html>\n<html lang="zh-Hans"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}{SPLIT_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
