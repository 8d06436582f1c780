"""`harness doctor` and the Docker backend say plainly when the Docker SDK is missing or shadowed; what the
backend starts carries its owner, so that cleanup checks look at their own run's things only."""

import os
import sys
from pathlib import Path

import docker  # the real SDK, so that each test's sys.modules surgery is undone afterwards
import pytest

from harness.backends.docker import (OWNER_LABEL, DockerBackend, DockerUnavailable, build_context_prefix, connect,
                                     docker_sdk_problem, run_owner)
from harness.doctor import docker_findings
from harness.spec import load_spec

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "spec_docker.toml"


@pytest.fixture
def fresh_import(monkeypatch):
    """`import docker` looked up again, as in a fresh process; sys.modules is restored after the test."""
    monkeypatch.delitem(sys.modules, "docker")
    return monkeypatch


def test_the_installed_sdk_is_found():
    assert docker.from_env and docker_sdk_problem() == ""


def test_a_missing_sdk_is_named(fresh_import, tmp_path):
    fresh_import.setattr(sys, "path", [str(tmp_path)])
    assert "not installed" in docker_sdk_problem()
    [finding] = docker_findings()
    assert finding.what == "Docker SDK" and not finding.ok and "pip install docker" in finding.fix
    with pytest.raises(DockerUnavailable, match="not installed.*--backend local"):
        connect()


def test_a_folder_called_docker_that_stands_in_for_the_sdk_is_named(fresh_import, tmp_path):
    """Without the SDK, a folder called docker (a checkout's scripts, say) imports as a namespace package."""
    (tmp_path / "docker").mkdir()
    fresh_import.setattr(sys, "path", [str(tmp_path)])
    problem = docker_sdk_problem()
    assert "shadows" in problem and str(tmp_path / "docker") in problem
    assert "shadows" in docker_findings()[0].detail


def test_a_stray_docker_module_that_shadows_the_sdk_is_named(fresh_import, tmp_path):
    (tmp_path / "docker.py").write_text("NOT_THE_SDK = True\n")
    fresh_import.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert f"{tmp_path / 'docker.py'}, not the Docker SDK" in docker_sdk_problem()


class EngineWithoutGpus:
    def info(self):
        return {"Runtimes": {"runc": {}}}


def test_probe_containers_and_build_contexts_carry_this_process_as_owner(tmp_path):
    backend = DockerBackend(cache_dir=tmp_path, spec=load_spec(SPEC), client=EngineWithoutGpus())
    labels = backend.container_options(tmp_path / "channel")["labels"]
    assert labels[OWNER_LABEL] == run_owner() and str(os.getpid()) in run_owner()
    assert str(os.getpid()) in build_context_prefix()


class RemovedFromOutside:
    """A worker container that someone removed with `docker rm -f` while the harness was using it."""

    def __getattr__(self, name):
        def gone(*args, **kwargs):
            raise docker.errors.NotFound(f"No such container (during {name})")
        return gone


def test_closing_a_container_removed_from_outside_is_quiet_and_says_so_in_the_log(tmp_path):
    from harness.backends.docker import DockerWorker

    worker = DockerWorker(RemovedFromOutside(), tmp_path / "worker.log")
    assert worker.close() is None
    assert not worker.alive() and worker.host_pid() is None
    worker.kill()
    assert "removed from outside the harness" in (tmp_path / "worker.log").read_text()
