"""The Docker backend's build bounds against a fake engine: no Docker needed, no real build run."""

import tempfile
import threading
import tracemalloc
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from harness.backends.docker import TEAM_LABEL, DockerBackend
from harness.spec import load_spec
from harness.submission import load_submission

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


class FakeStepContainer:
    def __init__(self, engine):
        self.engine = engine

    def remove(self, force=False):
        self.engine.removed.append(force)
        self.engine.killed.set()


class FakeEngine:
    """Just enough of docker.DockerClient: a build whose setup step hangs until its container is removed."""

    def __init__(self, hang=True):
        self.hang, self.killed, self.removed, self.pruned, self.build_kwargs = hang, threading.Event(), [], [], {}
        self.api, self.images, self.containers = self, self, self

    # client.api
    def build(self, **kwargs):
        self.build_kwargs = kwargs
        assert (Path(kwargs["path"]) / "team" / "harness.toml").is_file()
        yield {"stream": "Step 1/7 : FROM runner\n"}
        if self.hang:
            assert self.killed.wait(10), "the step container was never killed"
            yield {"error": "The command returned a non-zero code: 137"}
        else:
            self.tagged = kwargs["tag"]

    # client.images
    def get(self, name):
        if name.startswith("lightlm-team/") and name != getattr(self, "tagged", None):
            raise docker.errors.ImageNotFound(name)
        return type("Image", (), {"id": "sha256:runner", "attrs": {"Size": 100}})()

    def prune(self, filters):
        self.pruned.append(filters)

    # client.containers
    def list(self, all=False, filters=None):
        assert filters["label"].startswith(f"{TEAM_LABEL}=")
        return [] if self.killed.is_set() else [FakeStepContainer(self)]

    def info(self):
        return {"NCPU": 2}


@pytest.fixture
def spec():
    return load_spec(FIXTURES / "spec_docker.toml")


def test_a_hanging_build_is_killed_at_the_limit_and_leaves_no_context(tmp_path, spec, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    spec = replace(spec, build=replace(spec.build, timeout_s=0.2))
    engine = FakeEngine()
    backend = DockerBackend(tmp_path / "cache", spec, runner_image="runner", gpus=False, client=engine)
    built = backend.build(load_submission(FIXTURES / "teams" / "ok_team", spec), tmp_path / "work")
    assert not built.ok
    assert "timed out after 0.2 s (spec build.timeout_s)" in built.error
    assert engine.removed == [True]
    assert len(engine.pruned) == 1 and engine.pruned[0]["label"].startswith(f"{TEAM_LABEL}=")
    assert not list((tmp_path / "tmp").iterdir())


def test_build_gets_the_spec_bounds_and_the_setup_only_as_a_build_argument(tmp_path, spec, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))   # never beside a real build's context in /tmp
    (tmp_path / "tmp").mkdir()
    spec = replace(spec, build=replace(spec.build, memory="512m", cpus=8, network=False))
    engine = FakeEngine(hang=False)
    backend = DockerBackend(tmp_path / "cache", spec, runner_image="runner", gpus=False, client=engine)
    team = FIXTURES / "teams" / "tamper_team"
    built = backend.build(load_submission(team, spec), tmp_path / "work")
    assert built.ok, built.error
    kwargs = engine.build_kwargs
    assert kwargs["buildargs"] == {"TEAM_SETUP": "build/tamper.sh"}
    assert kwargs["container_limits"] == {"memory": 512 * 2**20, "memswap": 512 * 2**20, "cpusetcpus": "0-1"}
    assert kwargs["network_mode"] == "none"


def test_run_options_bound_tmp_and_the_log(tmp_path, spec):
    backend = DockerBackend(tmp_path / "cache", spec, runner_image="runner", gpus=False, client=FakeEngine())
    options = backend.container_options(tmp_path / "channel")
    assert f"size={2**30}" in options["tmpfs"]["/tmp"]
    assert options["log_config"]["Config"] == {"max-size": str(10 * 2**20), "max-file": "1"}
    assert options["working_dir"] == "/"


def test_log_tail_reads_only_the_end_of_a_huge_log(tmp_path):
    from harness.backends.base import log_tail

    log = tmp_path / "probe.log"
    with log.open("wb") as handle:
        handle.truncate(2**30)            # a sparse 1 GiB of NULs, then the line that matters
        handle.seek(0, 2)
        handle.write("\nprobe: 最后一行\n".encode())
    tracemalloc.start()
    try:
        assert log_tail(log, 1) == "probe: 最后一行"
        assert tracemalloc.get_traced_memory()[1] < 2**20
    finally:
        tracemalloc.stop()
