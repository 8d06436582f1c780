"""`harness score`: a table by default, exactly one JSON object with --json, exit codes as documented."""

import json

from conftest import FIXTURES

GOLD = FIXTURES / "data" / "csl" / "dev.json"      # ids 0 and 1, both labelled "1"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_output_is_one_object_with_the_contract_keys(invoke, tmp_path):
    pred = write(tmp_path, "p.json", '{"id": 0, "label": "1"}\n{"id": 1, "label": "0"}\n')
    result = invoke("score", "csl", GOLD, pred, "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)            # exactly one JSON object, nothing else on stdout
    assert data["task"] == "csl" and data["score"] == 50.0 and data["metrics"] == {"accuracy": 50.0}
    assert (data["n_gold"], data["n_pred"], data["problems"]) == (2, 2, [])


def test_problems_are_listed_and_still_exit_zero(invoke, tmp_path):
    # line 1 right; line 2 not JSON; id 7 unknown -> id 1 missing, counted wrong: accuracy 1/2 = 50
    pred = write(tmp_path, "p.json", '{"id": 0, "label": "1"}\n{"id": 1, "label": \n{"id": 7, "label": "1"}\n')
    result = invoke("score", "csl", GOLD, pred, "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["score"] == 50.0
    joined = " ".join(data["problems"])
    assert "line 2" in joined and "ids that the gold file does not have" in joined
    assert "have no prediction (counted wrong)" in joined


def test_table_output_names_the_metric(invoke, tmp_path):
    pred = write(tmp_path, "p.json", '{"id": 0, "label": "1"}\n{"id": 1, "label": "1"}\n')
    result = invoke("score", "csl", GOLD, pred)
    assert result.exit_code == 0
    assert "csl: 100.00 (accuracy)" in result.output


def test_cmrc_ranks_by_em_and_reports_f1(invoke, tmp_path):
    gold = FIXTURES / "data" / "cmrc2018" / "trial.json"
    # Q0 exact; Q1 "中国" vs gold "中国北方": EM 0, F1 = 2*(2/2)*(2/4)/(1+0.5) = 2/3 -> EM 50, F1 (100+66.67)/2
    pred = write(tmp_path, "p.json", '{"FIX_0_QUERY_0": "长城", "FIX_0_QUERY_1": "中国"}')
    data = json.loads(invoke("score", "cmrc2018", gold, pred, "--json").output)
    assert data["score"] == 50.0 and data["metrics"]["em"] == 50.0
    assert abs(data["metrics"]["f1"] - (100 + 200 / 3) / 2) < 1e-9


def test_unreadable_file_is_one_line_and_non_zero(invoke, tmp_path):
    result = invoke("score", "csl", GOLD, tmp_path / "missing.json")
    assert result.exit_code != 0
    assert "missing.json" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_task_is_refused_with_the_choices(invoke, tmp_path):
    result = invoke("score", "ocnli", GOLD, GOLD)
    assert result.exit_code == 2 and "cluener2020" in result.output


def test_every_command_has_help_with_an_example(invoke):
    top = invoke("--help").output
    for command in ("run", "check", "score", "doctor"):
        assert command in top
        assert "Example" in invoke(command, "--help").output
