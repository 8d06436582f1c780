from pathlib import Path

import pytest

from harness.spec import DEFAULT_SPEC, SpecError, load_spec


def test_bundled_spec_holds_the_guideline_rules():
    spec = load_spec()
    assert spec.name == "nlpcc2020"
    assert spec.task_names == ("cluewsc2020", "csl", "cluener2020", "cmrc2018")
    assert spec.limits.max_params == 12_000_000
    assert spec.limits.min_speedup == 8.0
    f = spec.formula
    assert (f.score_weight, f.size_weight, f.time_weight, f.size_factor) == (0.8, 0.1, 0.1, 0.9)
    assert (f.size_aggregate, f.time_aggregate) == ("max", "sum")
    assert spec.task("cmrc2018").ranking_metric == "em"
    assert spec.task("cluener2020").ranking_metric == "macro_f1"
    assert len(spec.sha256) == 64


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _bundled_text() -> str:
    return DEFAULT_SPEC.read_text(encoding="utf-8")


def test_malformed_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "name = \n")
    with pytest.raises(SpecError, match=str(path).replace("\\", "\\\\") + ".*not valid TOML"):
        load_spec(path)


@pytest.mark.parametrize("old, new, message", [
    ("min_speedup = 8.0", "", r"missing key limits\.min_speedup"),
    ("rounds = 3", 'rounds = "three"', r"timing\.rounds must be int"),
    ('name = "csl"', 'name = "csl"\nbatchsize = 4', r"unknown key tasks\[1\]\.batchsize"),
    ('ranking_metric = "em"', 'ranking_metric = "bleu"', r"tasks\[3\]\.ranking_metric 'bleu'"),
    ('size_aggregate = "max"', 'size_aggregate = "median"', r"formula\.size_aggregate"),
])
def test_a_bad_key_is_named(tmp_path, old, new, message):
    text = _bundled_text()
    assert old in text
    with pytest.raises(SpecError, match=message):
        load_spec(_write(tmp_path, text.replace(old, new)))


def test_missing_file_says_so(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "nope.toml")
