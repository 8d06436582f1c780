"""The typed records read a result.json written before they were typed, and write it back with the same keys."""

import json
from pathlib import Path

import pytest

from harness.batch import result_from_record
from harness.config import RunConfig
from harness.records import Environment, Placement, ReferenceResult, SideTiming, TaskResult
from harness.results import TeamResult, columns, result_row
from harness.spec import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Written by `harness run tests/fixtures/teams/ok_team --spec tests/fixtures/spec_small.toml --backend local
# --reference tests/fixtures/teams/fake_reference` at commit 791973d, before the records were typed.
OLD_RECORD = FIXTURES / "records" / "ok_team-result-791973d.json"
SMALL_SPEC = load_spec(FIXTURES / "spec_small.toml")


def old_record() -> dict:
    return json.loads(OLD_RECORD.read_text(encoding="utf-8"))


def as_json(record: dict) -> dict:
    """The record as result.json stores it (tuples become lists, as json.dumps writes them)."""
    return json.loads(json.dumps(record, default=str))


def test_a_result_json_written_before_the_typed_records_reads_back_and_writes_the_same_record():
    record = old_record()
    assert as_json(TeamResult.from_dict(record).to_dict()) == record


def test_the_typed_parts_hold_what_the_old_record_says():
    record = old_record()
    result = TeamResult.from_dict(record)
    csl = result.tasks["csl"]
    assert isinstance(csl, TaskResult) and csl.ok and csl.params == 40 == record["tasks"]["csl"]["params"]
    assert csl.timing["caching_audit"] == record["tasks"]["csl"]["timing"]["caching_audit"]
    assert csl.time_per_example_s == record["tasks"]["csl"]["time_per_example_s"]
    reference = result.reference["csl"]
    assert isinstance(reference, ReferenceResult) and reference.params == record["reference"]["csl"]["params"]
    assert reference.time_s == record["reference"]["csl"]["time_s"]
    assert reference.precision == record["reference"]["csl"]["precision"]
    assert isinstance(result.environment, Environment)
    assert result.environment.device == "cpu" and result.environment.threads == record["environment"]["torch_threads"]
    assert result.environment.reference == record["environment"]["reference"]
    assert result.placement == Placement() and result.placement.to_dict() == {}
    assert result.score is not None and result.score.S == 40 and result.score.failed_tasks == ()


def test_the_old_record_makes_the_same_row_and_the_batch_recomputes_the_same_score(tmp_path):
    record = old_record()
    result = TeamResult.from_dict(record)
    row = result_row(result, SMALL_SPEC)
    assert list(row) == columns(SMALL_SPEC)
    assert row["csl_params"] == 40 and row["params"] == record["score"]["S"] and row["device"] == "cpu"
    assert row["csl_time_per_example_ms"] == pytest.approx(record["tasks"]["csl"]["time_per_example_s"] * 1000)
    assert row["reference_precision"] == "fp32-strict"
    config = RunConfig(spec=SMALL_SPEC, backend=None, out_dir=tmp_path)      # the batch's cache reads it so
    rescored = result_from_record(record, config)
    assert rescored.score.res == pytest.approx(record["score"]["res"])
    assert rescored.score.speedup == pytest.approx(record["score"]["speedup"])


def test_a_failed_task_keeps_only_its_error():
    assert TaskResult.from_dict({"error": "timed out"}).to_dict() == {"error": "timed out"}
    assert not TaskResult.from_dict({"error": None}).ok
    assert TaskResult.failure("not run").to_dict() == {"error": "not run"}


def test_a_row_that_never_ran_writes_empty_parts():
    result = TeamResult(team="t", status="invalid_submission", backend="local", spec_name="s", spec_sha256="0")
    record = result.to_dict()
    assert record["tasks"] == {} and record["environment"] == {} and record["placement"] == {}
    assert record["score"] is None
    assert as_json(TeamResult.from_dict(record).to_dict()) == as_json(record)


def test_a_cluster_placement_round_trips_with_every_key():
    where = {"node": "gpu-box-1", "pid": 4242, "node_id": "abcdef0123", "node_started": 1.5, "node_ended": 9.5,
             "slot": 1, "slots": 8, "cpu_set": "8-15", "gpu_index": 1, "gpu_name": "NVIDIA H100 80GB HBM3",
             "attempts": 2, "node_faults": ["node died"]}
    placement = Placement.from_dict(where)
    assert placement.to_dict() == where and placement.on_cluster
    # a job that never reached a node still says how many tries it took, the rest null
    failed = Placement.from_dict({"attempts": 3, "node_faults": ["a", "b"]}).to_dict()
    assert failed["attempts"] == 3 and failed["node"] is None and set(failed) == set(where)


def test_the_worker_s_own_word_is_kept_as_it_came():
    worker = {"device": "cuda:0", "device_name": "NVIDIA H200", "cudnn": 91002, "gpu_memory_bytes": 1 << 30,
              "torch": "1.13.1", "unknown key a worker sent": "kept"}
    environment = Environment.from_dict({**worker, "gpu": {"available": True}, "box": {"cpu_count": 16}})
    assert environment.device == "cuda:0" and environment.torch_version == "1.13.1"
    assert environment.to_dict() == {**worker, "gpu": {"available": True}, "box": {"cpu_count": 16}}


def test_every_key_of_a_side_s_timing_in_the_old_record_is_declared():
    record = old_record()
    declared = set(SideTiming.__annotations__)
    for info in record["tasks"].values():
        assert set(info["timing"]) <= declared
    for info in record["reference"].values():
        assert set(info) - {"params", "precision"} <= declared
