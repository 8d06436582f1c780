"""Notes apart from flags: a flag means "look at this team"; states of the run that say nothing about the team
(timed on CPU, a caching audit with too few batches to decide, a warm-up that did not settle) are notes,
in result.json, in the CSV's own column, on the console and in the report."""

import io

import pandas as pd
from rich.console import Console

from harness.records import TaskResult
from harness.console import print_team_result
from harness.box import environment_flags, environment_notes
from harness.row_flags import measurement_flags
from harness.report import write_report
from harness.results import TeamResult, columns, result_row
from harness.scoring import prediction_problem_flags
from harness.spec import load_spec
from harness.stats import caching_flags, caching_notes
from harness.timekeeper import warmup_notes

SPEC = load_spec()
CPU = {"device": "cpu", "torch_threads": 2}
UNDECIDED = {"note": "not enough batches to audit (1 < 6 for a 95% interval)", "batches": 1}


def task(**timing):
    return TaskResult.from_dict({"timing": timing})


def test_states_that_are_not_findings_go_to_the_notes():
    notes = []
    tasks = {"csl": task(caching_audit=UNDECIDED, warmup_settled=False),
             "cmrc2018": task(caching_audit={"note": "", "batches": 9}, warmup_settled=True)}
    flags = measurement_flags(SPEC, tasks, CPU, CPU, notes)
    assert flags == []
    assert notes == ["csl: caching audit undecided: not enough batches to audit (1 < 6 for a 95% interval)",
                     "csl: warm-up did not settle within 120 s",
                     "timed on CPU: indicative only, the competition times on the GPU box"]


def test_findings_stay_flags_beside_the_notes():
    notes = []
    tasks = {"csl": TaskResult.from_dict({"timing": {"caching_audit": {"note": "", "batches": 6}},
                                          "problems": ["id 3: label 'maybe' is not one of 0, 1"]})}
    flags = measurement_flags(SPEC, tasks, CPU, {**CPU, "torch_threads": 4}, notes)
    assert flags == ["csl: 1 prediction problem(s), e.g. id 3: label 'maybe' is not one of 0, 1",
                     "thread counts differ: team 2, reference 4"]
    assert notes == ["timed on CPU: indicative only, the competition times on the GPU box"]


def test_a_gpu_row_with_a_decided_audit_has_no_notes():
    notes = []
    gpu = {"device": "cuda", "torch_threads": 16}
    assert measurement_flags(SPEC, {"csl": task(caching_audit={"note": ""})}, gpu, gpu, notes) == []
    assert notes == []


def test_each_check_words_its_own_note_without_the_task_name():
    assert caching_notes(False, UNDECIDED) == [
        "caching audit undecided: not enough batches to audit (1 < 6 for a 95% interval)"]
    assert caching_notes(True, UNDECIDED) == [] and caching_notes(None, {"note": ""}) == []
    assert warmup_notes({"warmup_settled": False}, 120.0) == ["warm-up did not settle within 120 s"]
    assert warmup_notes({"warmup_settled": False}, 7.5) == ["warm-up did not settle within 7.5 s"]
    assert warmup_notes({"warmup_settled": True}, 120.0) == [] and warmup_notes({}, 120.0) == []
    assert environment_notes(CPU) == ["timed on CPU: indicative only, the competition times on the GPU box"]
    assert environment_notes({"device": "cuda"}) == [] and environment_notes({}) == []


def test_a_caching_flag_names_each_audit_proven_above_its_bound():
    gain = {"team_ratio": 1.8, "team_low": 1.5, "team_high": 2.1, "gain": 1.7, "low": 1.4, "high": 2.0}
    audit = {"tolerance": 0.1, "confidence": 0.95, "flanks": gain,
             "later_rounds": {**gain, "low": 1.05}, "note": "T from first sight only"}
    assert caching_flags(True, audit) == [
        "caching_suspected (the team's ratios, 95% intervals wholly above 1.10x: real inputs against fresh ones "
        "beside them 1.80x [1.50, 2.10], over the reference's 1.70x [1.40, 2.00]); T from first sight only"]
    assert caching_flags(False, audit) == [] and caching_notes(True, audit) == []


def test_prediction_problems_and_the_environments_are_worded_beside_their_checks():
    assert prediction_problem_flags(["id 3: no label", "id 9: no label"]) == [
        "2 prediction problem(s), e.g. id 3: no label"]
    assert prediction_problem_flags([]) == []
    team = {"device": "cuda:0", "torch_threads": 8, "device_name": "NVIDIA A100"}
    assert environment_flags(team, {"device": "cpu", "torch_threads": 4}, "NVIDIA H200") == [
        "team ran on cuda:0 but the reference on cpu: speedup not comparable",
        "thread counts differ: team 8, reference 4",
        "GPU is NVIDIA A100, the spec expects NVIDIA H200"]
    assert environment_flags(team, team, None) == []
    assert environment_flags({"device": "cuda"}, {}, "NVIDIA H200") == []     # nothing to compare, no GPU name


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
