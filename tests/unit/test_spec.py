from pathlib import Path

import pytest

from harness.spec import DEFAULT_SPEC, SpecError, load_spec, parse_size


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
    ("rounds = 5", 'rounds = "five"', r"timing\.rounds must be int"),
    ("max_rounds = 60", "max_rounds = 2", r"timing\.max_rounds must be >= timing\.rounds"),
    ("confidence = 0.95", "confidence = 95", r"timing\.confidence must be between 0 and 1"),
    ('precision = "fp32-strict"', 'precision = "tf32"', r"reference\.precision must be one of"),
    ('name = "csl"', 'name = "csl"\nbatchsize = 4', r"unknown key tasks\[1\]\.batchsize"),
    ('ranking_metric = "em"', 'ranking_metric = "bleu"', r"tasks\[3\]\.ranking_metric 'bleu'"),
    ('size_aggregate = "max"', 'size_aggregate = "median"', r"formula\.size_aggregate"),
    ('log_max_size = "10m"', 'log_max_size = "lots"', r"sandbox\.log_max_size: not a size: 'lots'"),
    ("network = true", 'network = "yes"', r"build\.network must be bool"),
    ("cpus = 4 ", "cpus = 0 ", r"build\.cpus >= 1"),
])
def test_a_bad_key_is_named(tmp_path, old, new, message):
    text = _bundled_text()
    assert old in text
    with pytest.raises(SpecError, match=message):
        load_spec(_write(tmp_path, text.replace(old, new)))


def test_missing_file_says_so(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        load_spec(tmp_path / "nope.toml")


def test_sizes_read_as_bytes():
    assert parse_size("1024") == 1024 and parse_size("512m") == 512 * 2**20 and parse_size("2G") == 2 * 2**30
    with pytest.raises(ValueError, match="not a size"):
        parse_size("-1g")


def test_bundled_spec_bounds_builds():
    build = load_spec().build
    assert build.network is True and build.timeout_s > 0 and parse_size(build.max_image_growth) > 2**30


def test_a_bad_peak_allowance_is_named(tmp_path):
    text = _bundled_text().replace('peak_allowance = "112m"', 'peak_allowance = "lots"')
    with pytest.raises(SpecError, match=r"tasks\[1\]\.peak_allowance: not a size: 'lots'"):
        load_spec(_write(tmp_path, text))


def test_each_task_has_its_peak_allowance_an_onnx_one_and_a_fallback(tmp_path):
    text = _bundled_text()
    csl = load_spec(_write(tmp_path, text)).task("csl")
    assert csl.peak_allowance_bytes() == 112 * 2**20
    onnx = csl.peak_allowance_onnx
    assert onnx and csl.peak_allowance_bytes(onnx=True) == parse_size(onnx) > csl.peak_allowance_bytes()
    bare = tmp_path / "bare"
    bare.mkdir()
    lines = [line for line in text.splitlines() if not line.startswith("peak_allowance")]
    older = load_spec(_write(bare, "\n".join(lines) + "\n")).task("csl")      # a spec written before the key
    assert older.peak_allowance_bytes() == older.peak_allowance_bytes(onnx=True) == 640 * 2**20
    # on a GPU: the GPU key, else 640 MiB (no GPU calibration of the kernel's figures yet)
    assert csl.peak_allowance_bytes(device="cuda:0") == csl.peak_allowance_bytes(onnx=True, device="cuda") == 640 * 2**20
    gpu = load_spec(_write(tmp_path, text.replace('peak_allowance = "112m"', 'peak_allowance = "112m"\n'
                                                  'peak_allowance_gpu = "300m"'))).task("csl")
    assert gpu.peak_allowance_bytes(device="cuda") == 300 * 2**20 and gpu.peak_allowance_bytes() == 112 * 2**20
