"""Notes apart from flags: a flag means "look at this team"; states of the run that say nothing about the team
(timed on CPU, a caching audit with too few batches to decide, a warm-up that did not settle) are notes,
in result.json, in the CSV's own column, on the console and in the report."""

import io

import pandas as pd
from rich.console import Console

from harness.console import print_team_result
from harness.pipeline import measurement_flags
from harness.report import write_report
from harness.results import TeamResult, columns, result_row
from harness.spec import load_spec

SPEC = load_spec()
CPU = {"device": "cpu", "torch_threads": 2}
UNDECIDED = {"note": "not enough batches to audit (1 < 6 for a 95% interval)", "batches": 1}


def task(**timing):
    return {"timing": timing}


def test_states_that_are_not_findings_go_to_the_notes():
    notes = []
    tasks = {"csl": task(caching_audit=UNDECIDED, warmup_settled=False),
             "cmrc2018": task(caching_audit={"note": "", "batches": 9}, warmup_settled=True)}
    flags = measurement_flags(SPEC, tasks, CPU, CPU, {}, notes)
    assert flags == []
    assert notes == ["csl: caching audit undecided: not enough batches to audit (1 < 6 for a 95% interval)",
                     "csl: warm-up did not settle within 120 s",
                     "timed on CPU: indicative only, the competition times on the GPU box"]


def test_findings_stay_flags_beside_the_notes():
    notes = []
    tasks = {"csl": {**task(caching_audit={"note": "", "batches": 6}),
                     "problems": ["id 3: label 'maybe' is not one of 0, 1"]}}
    flags = measurement_flags(SPEC, tasks, CPU, {**CPU, "torch_threads": 4}, {}, notes)
    assert flags == ["csl: 1 prediction problem(s), e.g. id 3: label 'maybe' is not one of 0, 1",
                     "thread counts differ: team 2, reference 4"]
    assert notes == ["timed on CPU: indicative only, the competition times on the GPU box"]


def test_a_gpu_row_with_a_decided_audit_has_no_notes():
    notes = []
    gpu = {"device": "cuda", "torch_threads": 16}
    assert measurement_flags(SPEC, {"csl": task(caching_audit={"note": ""})}, gpu, gpu, {}, notes) == []
    assert notes == []


def row_result(**fields):
    return TeamResult(team="t", status="ok", backend="local", spec_name=SPEC.name, spec_sha256=SPEC.sha256, **fields)


def test_the_csv_has_a_notes_column_beside_flags():
    cols = columns(SPEC)
    assert cols.index("notes") == cols.index("flags") + 1
    row = result_row(row_result(flags=["a flag"], notes=["timed on CPU", "csl: warm-up did not settle"]), SPEC)
    assert row["flags"] == "a flag" and row["notes"] == "timed on CPU; csl: warm-up did not settle"
    assert result_row(row_result(), SPEC)["notes"] == ""


def test_the_console_prints_notes_apart_from_flags():
    out = io.StringIO()
    print_team_result(Console(file=out, width=300, color_system=None),
                      row_result(flags=["csl: caching_suspected"], notes=["timed on CPU", "[red]x\x1b[2J"]), SPEC)
    lines = out.getvalue().splitlines()
    assert lines[-3:] == ["flag: csl: caching_suspected", "note: timed on CPU", "note: [red]x\\x1b[2J"]


def test_the_report_shows_notes_in_a_column_of_their_own(tmp_path):
    row = dict.fromkeys(columns(SPEC))
    row.update(team="t", status="ok", compliant=True, flags="csl: caching_suspected", notes="timed on <CPU>")
    page = write_report(pd.DataFrame([row], columns=columns(SPEC)), SPEC, tmp_path / "r.html").read_text("utf-8")
    assert "<th>flags</th><th>notes</th>" in page
    assert "<td>csl: caching_suspected</td><td class=\"notes\">timed on &lt;CPU&gt;</td>" in page
