"""What workers say about themselves is checked before use: wrong types are that side's failure, never a
TypeError in the host (issue 18: a parameter report with wrong types crashed measurement.larger_count)."""

import pytest

from harness.records import TaskResult
from harness import replies
from harness.measurement import larger_count, onnx_sessions
from harness.probe import channel
from harness.probe.onnx_sessions import MAX_PROVIDER_CHARS, MAX_PROVIDERS, MAX_SESSIONS
from harness.worker_link import WorkerFailed

GOOD = {"counted": 40, "predictor_visible": 40, "hidden_weights": 0, "flags": [], "hidden_where": [],
        "dtypes": ["torch.float32"], "sources": ["model (Linear)"], "something_else": {"deep": [1]}}


def test_a_good_report_keeps_what_the_host_reads_and_drops_the_rest():
    report = replies.param_report({"report": GOOD}, "team")
    assert report["counted"] == 40 and report["dtypes"] == ["torch.float32"]
    assert "something_else" not in report
    merged = larger_count(report, replies.param_report({"report": {**GOOD, "counted": 90}}, "team"))
    assert merged["counted"] == 90 and merged["counted_after_load"] == 40


@pytest.mark.parametrize("report, message", [
    ("40", "is a str, not an object"),
    (None, "is a NoneType, not an object"),
    ({"flags": []}, "counted = None, not a count"),
    ({"counted": "258"}, "counted = '258', not a count"),
    ({"counted": 258.0}, "not a count"),
    ({"counted": -1}, "not a count"),
    ({"counted": True}, "not a count"),
    ({"counted": 10**30}, "not a count"),                  # passed once, then overflowed the results frame
    ({"counted": 10, "counted_cpu_bytes": 10**15 + 1}, "counted_cpu_bytes"),
    ({"counted": 10, "hidden_weights": [1]}, "hidden_weights"),
    ({"counted": 10, "flags": "none"}, "flags that is not a list of strings"),
    ({"counted": 10, "hidden_where": [1, 2]}, "hidden_where that is not a list of strings"),
])
def test_a_malformed_report_is_that_sides_failure(report, message):
    with pytest.raises(WorkerFailed, match=message) as caught:
        replies.param_report({"report": report}, "team")
    assert caught.value.side == "team"


def test_endless_lists_and_strings_are_cut():
    report = replies.param_report({"report": {"counted": 1, "flags": ["x" * 10_000] * 1_000}}, "team")
    assert len(report["flags"]) == replies.MAX_TEXTS + 1 and report["flags"][-1] == "... and 936 more"
    assert len(report["flags"][0]) == replies.MAX_TEXT_CHARS


@pytest.mark.parametrize("environment", [[1], {"device": {"nested": 1}}, {1: "cpu"},
                                         {f"k{i}": i for i in range(replies.MAX_FIELDS + 1)}])
def test_an_environment_that_is_not_flat_is_that_sides_failure(environment):
    with pytest.raises(WorkerFailed, match="environment"):
        replies.environment({"environment": environment}, "reference")


def test_a_flat_environment_and_precision_pass():
    assert replies.environment({"environment": {"device": "cpu", "torch_threads": 2}}, "team") == {
        "device": "cpu", "torch_threads": 2}
    assert replies.environment({}, "team") == {}
    assert replies.precision({"precision": {"matmul_allow_tf32": False}}, "reference") == {"matmul_allow_tf32": False}


@pytest.mark.parametrize("note", [7, None, ["a"], {"x": 1}])
def test_a_baseline_note_that_is_not_a_string_is_that_sides_failure(note):
    with pytest.raises(WorkerFailed, match="baseline_note that is not a string"):
        replies.baseline_note({"ok": True, "baseline_note": note}, "team")


def test_a_baseline_note_is_cut_and_says_on_the_row_why_the_memory_reading_may_be_high():
    from harness.kernel_memory import memory_flags
    from harness.row_flags import per_task

    note = replies.baseline_note({"ok": True, "baseline_note": "pagemap unreadable" + "x" * 5000}, "team")
    assert len(note) == replies.MAX_TEXT_CHARS and replies.baseline_note({"ok": True}, "team") == ""
    flags = per_task({"csl": TaskResult.from_dict({"timing": {"baseline_note": note}}),
                      "cmrc2018": TaskResult.from_dict({"timing": {"baseline_note": ""}})},
                     memory_flags)
    assert flags == [f"csl: memory baseline: {note}"]


SESSIONS = [{"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, {"providers": []}]


def test_onnx_sessions_pass_when_well_formed_and_are_absent_when_not_reported():
    report = replies.param_report({"report": {**GOOD, "onnx_sessions": SESSIONS}}, "team")
    assert report["onnx_sessions"] == SESSIONS
    assert "onnx_sessions" not in replies.param_report({"report": GOOD}, "team")
    extra = [{"providers": ["CPUExecutionProvider"], "pid": 7, "more": {"deep": 1}}]
    assert replies.onnx_sessions(extra, "team") == [{"providers": ["CPUExecutionProvider"]}]   # extra keys dropped


LONE_SURROGATE = "\ud800CPUExecutionProvider"     # what a JSON frame carried before channel.decode refused it


@pytest.mark.parametrize("sessions", [
    "CPUExecutionProvider", {"providers": ["CPUExecutionProvider"]}, None, 7,
    [{"providers": ["CPUExecutionProvider"]}] * (MAX_SESSIONS + 1),
    [["CPUExecutionProvider"]], ["CPUExecutionProvider"], [{}], [{"providers": None}],
    [{"providers": "CPUExecutionProvider"}], [{"providers": [1]}], [{"providers": [None]}],
    [{"providers": [["CPUExecutionProvider"]]}], [{"providers": [{"name": "CPU"}]}],
    [{"providers": ["CPUExecutionProvider"] * (MAX_PROVIDERS + 1)}],
    [{"providers": ["x" * (MAX_PROVIDER_CHARS + 1)]}], [{"providers": [LONE_SURROGATE]}],
    [{"providers": ["CPUExecutionProvider"]}, {"providers": ["\udfff"]}],
])
def test_hostile_onnx_sessions_are_that_sides_failure(sessions):
    with pytest.raises(WorkerFailed, match="onnx_sessions") as caught:
        replies.param_report({"report": {**GOOD, "onnx_sessions": sessions}}, "team")
    assert caught.value.side == "team"


def test_the_limits_at_their_edge_pass():
    sessions = [{"providers": ["é" * MAX_PROVIDER_CHARS] * MAX_PROVIDERS}] * MAX_SESSIONS
    assert replies.onnx_sessions(sessions, "team") == sessions


def test_the_timing_record_takes_the_sessions_reported_after_the_passes():
    cpu, cuda = [{"providers": ["CPUExecutionProvider"]}], [{"providers": ["CUDAExecutionProvider"]}]
    assert onnx_sessions({"onnx_sessions": cpu}, {"onnx_sessions": cuda}) == cuda
    assert onnx_sessions({"onnx_sessions": []}, {"onnx_sessions": cuda}) == cuda     # a lazy team's
    assert onnx_sessions({"onnx_sessions": cpu}, {"onnx_sessions": []}) == []        # dropped before the passes
    assert onnx_sessions({"onnx_sessions": cpu}, {}) == cpu
    assert onnx_sessions({}, {}) is None                                             # not reported at all


def test_lone_surrogates_in_flags_notes_and_environment_are_escaped_so_result_json_can_be_written():
    import json

    surrogate = "\ud800 hidden"        # the channel refuses it now; the replies' own check stays a second wall
    report = replies.param_report({"report": {"counted": 1, "flags": [surrogate], "notes": ["ok", surrogate]}}, "team")
    environment = replies.environment({"environment": {surrogate: surrogate, "device": "cpu"}}, "team")
    note = replies.baseline_note({"baseline_note": surrogate}, "team")
    assert report["flags"] == ["\\ud800 hidden"] and report["notes"] == ["ok", "\\ud800 hidden"]
    assert environment == {"\\ud800 hidden": "\\ud800 hidden", "device": "cpu"} and note == "\\ud800 hidden"
    json.dumps([report, environment, note], ensure_ascii=False).encode("utf-8")     # as result.json is written
    cut = replies.param_report({"report": {"counted": 1, "flags": ["\udfff" * 10_000]}}, "team")["flags"][0]
    assert len(cut) == replies.MAX_TEXT_CHARS and cut.startswith("\\udfff\\udfff")
