"""bench/gpu_day.py's CPU dry run: it finishes within its budget, writes both reports, and every section
has a figure or says why it was skipped (so the GPU day's script cannot rot between GPU sessions)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("box", "reference", "teams", "repeats", "time_split", "channel", "memory", "freezing")
TITLES = ("## 1. The box", "## 2. The reference", "## 3. Every bundled team", "## 4. Reproducibility",
          "## 5. Where the time goes", "## 6. The channel", "## 7. Memory", "## 8. Freezing")

pytestmark = pytest.mark.slow


def test_the_cpu_dry_run_reports_every_section_within_its_budget(tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_day.py"), "--device", "cpu", "--quick",
                           "--out", str(tmp_path / "day"), "--budget-s", "170"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert wall < 180, f"the dry run took {wall:.0f} s, over its 170 s budget and 3 minutes"
    report = (tmp_path / "day" / "gpu_day.md").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "day" / "gpu_day.json").read_text(encoding="utf-8"))
    positions = [report.index(title) for title in TITLES]
    assert positions == sorted(positions)
    for name, start, end in zip(SECTIONS, positions, positions[1:] + [len(report)]):
        body = report[start:end]
        entry = data[name]
        if "skipped" in entry:
            assert entry["skipped"] and f"skipped: {entry['skipped']}" in body, (name, body)
        else:
            assert any(ch.isdigit() for ch in body.split("\n", 1)[1]), (name, body)     # a figure, not just a title
    # the first sections always fit: the box, and the demo team through the pipeline with its interval
    assert "skipped" not in data["box"] and data["settings"]["device"] == "cpu"
    assert "skipped" not in data["teams"]
    run = data["teams"]["data"]["runs"][0]
    assert run["team"] == "demo-team" and run["speedup"] > 0 and run["low"] <= run["speedup"] <= run["high"]
    assert data["elapsed_s"] <= 170
