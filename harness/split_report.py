"""report.html's picture of where the time goes: a bar per task and side, device against host (issue 30).

HTML/CSS bars from the row's split columns (harness.results, read by the host: harness.time_split), so the
page stays self-contained. On a GPU the bar's blue part is the device busy share in the side's timed
windows, the grey rest host work; on a CPU the whole bar is host work and the cores busy are said. The
team's own forward share (its worker's figure) is a thin hatched bar under the team's, labelled as its own.
A figure that could not be read draws an empty dashed bar beside the row's note. Cells come from CSV rows
(strings after a read-back) and notes may carry a worker's words: everything goes through the report's
escaping.
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from harness.spec import Spec

CSS = """
table.split td.bar { width: 320px; } table.split td:nth-child(-n+3) { white-space: nowrap; }
div.bar { position: relative; height: 14px; width: 300px; background: #e0e0e0; border: 1px solid #9e9e9e; }
div.bar.unread { background: none; border-style: dashed; }
div.bar span.device { position: absolute; left: 0; top: 0; bottom: 0; background: #1565c0; }
div.own { height: 5px; width: 300px; margin-top: 2px; }
div.own span { display: block; height: 5px;
               background: repeating-linear-gradient(45deg, #ef6c00 0 3px, #fff 3px 5px); }
span.key { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; vertical-align: middle; }
"""
LEGEND = ('<p><span class="key" style="background:#1565c0"></span>device busy (NVML, read by the host)'
          '<span class="key" style="background:#e0e0e0;border:1px solid #9e9e9e"></span>host work (tokenization, '
          'tensor building, the channel)<span class="key" style="background:repeating-linear-gradient(45deg,'
          '#ef6c00 0 3px,#fff 3px 5px)"></span>time in the model\'s forward, <b>the team\'s own figure</b> '
          '(from its worker; never used in a verdict)</p>')


def _bar(device: float | None, on_gpu: bool, own: float | None) -> str:
    if on_gpu and device is None:
        bar = '<div class="bar unread"></div>'
    else:
        width = min(max(device or 0.0, 0.0), 1.0) * 100 if on_gpu else 0.0
        bar = f'<div class="bar"><span class="device" style="width:{width:.1f}%"></span></div>'
    if own is not None:
        bar += f'<div class="own"><span style="width:{min(max(own, 0.0), 1.0) * 100:.1f}%"></span></div>'
    return f'<td class="bar">{bar}</td>'


def _words(device: float | None, cpu: float | None, own: float | None, on_gpu: bool) -> str:
    if on_gpu:
        parts = [f"device {device:.0%}, host {1 - min(device, 1.0):.0%}" if device is not None
                 else "device share not read (see the note)"]
    else:
        parts = ["CPU run: all host work"]
    if cpu is not None:
        parts.append(f"{cpu:.1f} CPU cores busy")
    if own is not None:
        parts.append(f"forward {own:.0%} (team's own figure)")
    return "; ".join(parts)


def split_section(frame: pd.DataFrame, spec: Spec, number: Callable[[Any], float | None],
                  text: Callable[[Any], str], table: Callable[..., str]) -> str:
    """The section's HTML: the legend and a table of bars, two rows (team, BERT-base) per task of each team
    with a split; `number`, `text` and `table` are report.py's cell helpers (parsing and escaping)."""
    rows = []
    for row in frame.to_dict("records"):
        on_gpu = str(row.get("device") or "").startswith("cuda")
        for task in spec.task_names:
            figures = {key: number(row.get(f"{task}_{key}")) for key in
                       ("device_busy", "reference_device_busy", "cpu_busy", "reference_cpu_busy",
                        "team_own_forward_share")}
            if all(value is None for value in figures.values()):
                continue          # the task did not run (or the row predates the split)
            own = figures["team_own_forward_share"]
            for side, device, cpu, own_here in (
                    ("team", figures["device_busy"], figures["cpu_busy"], own),
                    ("BERT-base", figures["reference_device_busy"], figures["reference_cpu_busy"], None)):
                rows.append(("", [text(row["team"]), text(task), side, _bar(device, on_gpu, own_here),
                                  text(_words(device, cpu, own_here, on_gpu))]))
            note = row.get(f"{task}_split_note")
            if text(note) != text(None):
                rows.append(("", [text(row["team"]), text(task), "note", "", text(note)]))
    if not rows:
        return "<p>No task was timed with the split recorded.</p>"
    return LEGEND + table(["team", "task", "side", "where the time went", "figures"], rows).replace(
        "<table>", '<table class="split">', 1)
