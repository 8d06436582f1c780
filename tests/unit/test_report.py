"""The HTML report: escaping of team strings, one chart point per measured team, limit lines where the axes say."""

import math
import re

import pandas as pd
import pytest

from harness import report
from harness.report import make_axis, write_report
from harness.results import columns
from harness.spec import load_spec

SPEC = load_spec()
HOSTILE = "<script>alert(1)</script>"


def _row(team, status, score=None, P=None, params=None, speedup=None, compliant=False, reason="", error="",
         task_scores=(None, None, None, None)):
    row = dict.fromkeys(columns(SPEC))
    row.update(team=team, status=status, score=score, P=P, params=params, speedup=speedup, compliant=compliant,
               params_ok=params is not None and params < SPEC.limits.max_params,
               speed_ok=speedup is not None and speedup >= SPEC.limits.min_speedup, reason=reason, error=error)
    row.update({f"{t}_score": s for t, s in zip(SPEC.task_names, task_scores)})
    return row


def leaderboard_frame():
    """Four teams in leaderboard order: compliant first, then a too-large, a too-slow and a broken one."""
    rows = [_row("轻量队", "ok", 0.7512, 70.0, 8_000_000, 40.0, True, task_scores=(80, 60, 70, 70)),
            _row("big-team", "ok", 0.7001, 72.0, 13_000_000, 30.0, reason="params 13,000,000 >= 12,000,000",
                 task_scores=(82, 62, 72, 72)),
            _row(HOSTILE, "ok", 0.6000, 65.0, 5_000_000, 3.0, reason="speedup 3.0x < 8x",
                 task_scores=(75, 55, 65, 65)),
            _row("broken-team", "probe_failed", reason="no parameter count (no task ran)",
                 error="probe exited 1: <b>CUDA</b> out of memory")]
    return pd.DataFrame(rows, columns=columns(SPEC))


@pytest.fixture
def page(tmp_path):
    path = write_report(leaderboard_frame(), SPEC, tmp_path / "report.html", summary={"device_name": "cpu"})
    assert path.exists()
    return path.read_text(encoding="utf-8")


def _svg(page):
    return re.search(r"<svg.*</svg>", page, re.S).group(0)


def test_every_team_appears_and_untrusted_strings_are_escaped(page):
    for team in ("轻量队", "big-team", "broken-team", "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert team in page
    assert "<script" not in page and "<b>CUDA</b>" not in page
    assert "&lt;b&gt;CUDA&lt;/b&gt; out of memory" in page
    assert '<meta charset="utf-8">' in page


def test_control_characters_from_team_output_are_shown_as_escapes(tmp_path):
    """A team's name and error reach the page as the console shows them: ESC as \\x1b, never the raw byte."""
    frame = pd.DataFrame([_row("red\x1b[31mteam", "ok", 0.7, 70.0, 8_000_000, 40.0, True),
                          _row("bell-team", "probe_failed", reason="no parameter count (no task ran)",
                               error="log tail: \x1b[2J\x07cleared\r")], columns=columns(SPEC))
    page = write_report(frame, SPEC, tmp_path / "report.html").read_text(encoding="utf-8")
    assert not any(ch in page for ch in "\x1b\x07\r")
    assert "red\\x1b[31mteam" in page                 # in the leaderboard and as the chart's label
    assert "log tail: \\x1b[2J\\x07cleared\\r" in page


def test_a_failed_team_shows_its_reason_and_its_actual_error(page):
    assert ("no: no parameter count (no task ran); error: probe exited 1: &lt;b&gt;CUDA&lt;/b&gt; out of memory"
            in page)
    assert "no: speedup 3.0x &lt; 8x</td>" in page       # no error: the reason alone


def test_only_the_compliant_team_gets_a_rank(page):
    assert "<td>1</td><td>轻量队</td>" in page
    assert "<td>2</td>" not in page


def test_one_point_per_team_with_numbers(page):
    svg = _svg(page)
    assert len(re.findall(r'class="point ', svg)) == 3          # the broken team has no numbers
    assert len(re.findall(r'class="point compliant"', svg)) == 1
    assert len(re.findall(r'class="point noncompliant"', svg)) == 2
    assert "轻量队 (0.751)" in svg


def test_limit_lines_sit_where_the_axes_put_them(page):
    svg = _svg(page)
    # x: params 5M..13M with the 12M limit span less than a decade -> linear from 0. Nice step for
    # 13M * 1.1 / 5 = 2.86M is 5M, so the axis ends at 15M and 12M sits 12/15 of the way across.
    x_limit = report.PLOT_LEFT + 12 / 15 * (report.PLOT_RIGHT - report.PLOT_LEFT)
    # y: speedups 3..40 span more than a decade -> log. Ends: 3 / 1.15 = 2.6 rounds down to 2, 40 * 1.15 = 46
    # rounds up to 50, so 8x sits log10(8/2) / log10(50/2) of the way up.
    y_limit = report.PLOT_BOTTOM - math.log10(4) / math.log10(25) * (report.PLOT_BOTTOM - report.PLOT_TOP)
    assert f'class="limit limit-params" x1="{x_limit:.1f}"' in svg
    assert f'class="limit limit-speedup" x1="{report.PLOT_LEFT}" y1="{y_limit:.1f}"' in svg
    assert "parameters (linear scale)" in svg and "(log scale)" in svg


def test_page_is_self_contained(page):
    assert "http" not in page
    assert not re.search(r"""(src|href)\s*=""", page)


def test_frame_read_back_from_csv_gives_the_same_chart(tmp_path):
    csv = tmp_path / "results.csv"
    leaderboard_frame().to_csv(csv, index=False)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)     # how results.csv is read back elsewhere
    assert frame.loc[0, "compliant"] == "True"
    page = write_report(frame, SPEC, tmp_path / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r'class="point compliant"', page)) == 1
    assert len(re.findall(r'class="point noncompliant"', page)) == 2
    assert "<td>1</td><td>轻量队</td>" in page and ">nan<" not in page.lower()


def test_axis_goes_log_only_past_a_decade():
    cpu_speedups = make_axis([2.0, 1500.0, 8.0], 530, 30)
    # 2 / 1.15 = 1.74 rounds down to 1; 1500 * 1.15 = 1725 rounds up to 2000
    assert cpu_speedups.log and (cpu_speedups.lo, cpu_speedups.hi) == (1.0, 2000.0)
    assert cpu_speedups.px(100.0) == pytest.approx(530 - 2 / math.log10(2000) * 500)
    assert cpu_speedups.ticks()[:4] == [1.0, 2.0, 5.0, 10.0] and cpu_speedups.ticks()[-1] == 2000.0
    narrow = make_axis([9.0, 20.0, 8.0], 530, 30)
    assert not narrow.log and (narrow.lo, narrow.hi) == (0.0, 25.0)  # 20 * 1.1 / 5 = 4.4 -> step 5 -> 25
    assert narrow.ticks() == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


def test_report_without_any_measured_team_still_draws_the_limits(tmp_path):
    frame = leaderboard_frame().iloc[[3]]
    page = write_report(frame, SPEC, tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'class="point ' not in page and 'class="limit limit-params"' in page


def test_the_host_that_timed_each_team_is_shown_only_when_a_batch_used_several(tmp_path):
    frame = leaderboard_frame()
    one_box = write_report(frame, SPEC, tmp_path / "one.html").read_text(encoding="utf-8")
    assert "timed on" not in one_box
    frame["timed_on"] = ["gpu-box-1", "gpu-box-2", "<b>box</b>", None]
    page = write_report(frame, SPEC, tmp_path / "ray.html").read_text(encoding="utf-8")
    assert "<th>timed on</th>" in page and "gpu-box-1" in page and "gpu-box-2" in page
    assert "<b>box</b>" not in page and "&lt;b&gt;box&lt;/b&gt;" in page


def test_the_calibration_section_shows_each_boxs_a_a_figures_and_verdict(tmp_path):
    from harness.calibration import apply_calibration, calibration_record
    from harness.results import TeamResult
    from harness.stats import Interval

    records = [calibration_record("box-fair", Interval(1.004, 0.991, 1.017, 0.95)),
               calibration_record(HOSTILE, Interval(1.062, 1.041, 1.083, 0.95))]
    timed = [TeamResult(team=t, status="ok", backend="local", spec_name="s", spec_sha256="x") for t in ("a", "b")]
    for result in timed:
        (tmp_path / result.team).mkdir()
    apply_calibration(timed, records, lambda r: {"a": "box-fair", "b": HOSTILE}[r.team], tmp_path)
    page = write_report(leaderboard_frame(), SPEC, tmp_path / "report.html",
                        calibration=records).read_text(encoding="utf-8")
    section = page[page.index("<h2>Calibration: A/A</h2>"):page.index("<h2>Per-task scores</h2>")]
    fair_row = section[section.index("box-fair"):].split("</tr>")[0]
    assert "fair" in fair_row and "1.004x" in fair_row and "[0.991, 1.017]" in fair_row and "1.3%" in fair_row
    assert "0 of 1" in fair_row and "3%" in fair_row
    unfair_row = section[section.index("&lt;script&gt;"):].split("</tr>")[0]
    assert "unfair" in unfair_row and "1.062x" in unfair_row and "[1.041, 1.083]" in unfair_row
    assert "1 of 1" in unfair_row and "favours the second worker" in unfair_row
    assert "<script" not in page


def test_a_batch_without_a_timed_team_says_no_a_a_ran_and_run_reports_have_no_section(tmp_path, page):
    empty = write_report(leaderboard_frame(), SPEC, tmp_path / "r.html", calibration=[]).read_text(encoding="utf-8")
    assert "No team was timed in this batch: no A/A run." in empty
    assert "Calibration" not in page


def split_frame():
    """A GPU team with its split read (cmrc2018 21% busy, the team's own forward 30%), one task whose device
    share could not be read (a note that carries a worker's words), and a CPU team."""
    gpu = _row("轻量队", "ok", 0.7, 70.0, 8_000_000, 9.0, True)
    gpu.update(device="cuda", cmrc2018_device_busy=0.21, cmrc2018_reference_device_busy=0.95,
               cmrc2018_cpu_busy=1.2, cmrc2018_reference_cpu_busy=1.0, cmrc2018_team_own_forward_share=0.3,
               csl_cpu_busy=1.1, csl_reference_cpu_busy=1.0,
               csl_split_note=f"team: device busy share not read: NVML gives no per-process utilization; "
                              f"team: own figure: {HOSTILE}")
    cpu = _row("cpu-team", "ok", 0.6, 60.0, 5_000_000, 3.0)
    cpu.update(device="cpu", csl_cpu_busy=1.9, csl_reference_cpu_busy=3.8)
    return pd.DataFrame([gpu, cpu], columns=columns(SPEC))


def test_where_the_time_goes_draws_a_bar_per_task_and_side(tmp_path):
    page = write_report(split_frame(), SPEC, tmp_path / "r.html").read_text(encoding="utf-8")
    section = page.split("<h2>Where the time goes</h2>")[1].split("<h2>")[0]
    # 轻量队: cmrc2018 and csl, two sides each; cpu-team: csl, two sides; one note row
    assert len(re.findall(r'<div class="bar', section)) == 6
    assert '<span class="device" style="width:21.0%">' in section          # the team's cmrc2018 bar
    assert '<span class="device" style="width:95.0%">' in section          # BERT-base's beside it
    assert '<div class="own"><span style="width:30.0%">' in section and "forward 30% (team&#x27;s own figure)" in section
    assert section.count('<div class="bar unread">') == 2                  # csl on the GPU: both sides unread
    assert "device share not read (see the note)" in section and "NVML gives no per-process utilization" in section
    assert "CPU run: all host work; 1.9 CPU cores busy" in section
    assert HOSTILE not in page and "&lt;script&gt;" in section
    assert "http" not in page and not re.search(r"""(src|href)\s*=""", page)


def test_a_row_without_a_split_gets_no_bar(page):
    section = page.split("<h2>Where the time goes</h2>")[1].split("<h2>")[0]
    assert "No task was timed with the split recorded" in section and "<div class=\"bar" not in section
