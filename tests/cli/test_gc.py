"""`harness gc`: what the current team folders need stays, everything else built for teams goes."""

from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from harness.backends.docker import (CONTAINER_LABEL, OWNER_LABEL, TEAM_LABEL, owner_gone, pid_namespace,
                                     run_owner, team_image_tag)
from harness.backends.local import LocalBackend, build_environment
from harness.cleanup import collect_garbage
from harness.spec import load_spec
from harness.submission import load_submission

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEAMS = FIXTURES / "teams"
SPEC = load_spec(FIXTURES / "spec_small.toml")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache with ok_team's current build, its build under another interpreter, and a gone team's build."""
    cache = tmp_path / "cache"
    backend = LocalBackend(cache_dir=cache)
    current = backend.build(load_submission(TEAMS / "ok_team", SPEC), tmp_path / "work")
    with monkeypatch.context() as patch:
        elsewhere = {**build_environment(), "interpreter": "/opt/other/python3"}
        patch.setattr("harness.backends.local.build_environment", lambda: elsewhere)
        other = backend.build(load_submission(TEAMS / "ok_team", SPEC), tmp_path / "work2")
    gone = cache / "local" / "gone_team-0123456789abcdef"
    gone.mkdir(parents=True)
    (gone / "weights.bin").write_bytes(b"\0" * 50_000)
    assert Path(current.team_dir).parent != Path(other.team_dir).parent
    return SimpleNamespace(dir=cache, current=current.team_dir, other=other.team_dir, gone=gone)


def test_gc_keeps_current_builds_and_removes_the_rest(invoke, cache):
    result = invoke("gc", TEAMS / "ok_team", "--backend", "local", "--cache-dir", cache.dir, "--spec",
                    FIXTURES / "spec_small.toml")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (cache.dir / "local").iterdir()] == [Path(cache.current).parent.name]
    assert Path(cache.other).parent.name in result.output and "gone_team-0123456789abcdef" in result.output
    assert "removed 2 item(s), freed" in result.output and "freed 0 B" not in result.output


def test_gc_dry_run_removes_nothing(invoke, cache):
    result = invoke("gc", TEAMS, "--backend", "local", "--cache-dir", cache.dir, "--dry-run", "--spec",
                    FIXTURES / "spec_small.toml")
    assert result.exit_code == 0, result.output
    assert cache.gone.exists() and "would remove" in result.output and "would free" in result.output


class FakeImages:
    def __init__(self, runner, images):
        self.runner, self.images, self.removed = runner, images, []

    def get(self, name):
        if name != "runner:x":
            raise docker.errors.ImageNotFound("no")
        return self.runner

    def list(self, filters):
        assert filters == {"label": TEAM_LABEL}
        return [i for i in self.images if i.id not in self.removed]

    def remove(self, ref, noprune=False):
        self.removed.append(next(i.id for i in self.images if ref in i.tags or ref == i.id))


class FakeContainer:
    def __init__(self, name, owner, engine):
        self.name, self.labels, self.engine = name, {OWNER_LABEL: owner, CONTAINER_LABEL: "worker"}, engine

    def remove(self, force=False):
        assert force                       # a paused container is removed only by force
        self.engine.removed.append(self.name)


class FakeContainers:
    def __init__(self):
        self.left, self.removed = [], []

    def list(self, all, filters):
        assert all and filters == {"label": CONTAINER_LABEL}
        return [c for c in self.left if c.name not in self.removed]


class FakeEngine:
    def __init__(self, runner, images):
        self.images = FakeImages(runner, images)
        self.containers = FakeContainers()

    def df(self):
        left = [i for i in self.images.images if i.id not in self.images.removed]
        return {"LayersSize": 1000 + sum(i.size for i in left),
                "Images": [{"Id": i.id, "Size": 1000 + i.size, "SharedSize": 1000} for i in self.images.images]}


def image(id, tags, size):
    return SimpleNamespace(id=id, tags=tags, short_id=id[:10], size=size)


def test_gc_removes_team_images_no_current_team_needs_and_keeps_the_runner(tmp_path):
    runner = image("sha256:runner", ["runner:x"], 0)
    needed_tag = team_image_tag(load_submission(TEAMS / "ok_team", SPEC), SPEC, runner.id)
    needed = image("sha256:needed", [needed_tag], 300)
    old = image("sha256:old", ["lightlm-team/ok_team:0000000000000000"], 200)
    dangling = image("sha256:dangling", [], 50)
    engine = FakeEngine(runner, [needed, old, dangling])
    report = collect_garbage([TEAMS / "ok_team"], SPEC, tmp_path / "cache", "runner:x", client=engine)
    assert engine.images.removed == [old.id, dangling.id]
    assert report.freed_bytes == 250 and report.image_bytes_freed == 250
    assert any(needed_tag in kept for kept in report.kept)


def test_gc_leaves_images_alone_without_the_runner_image(tmp_path):
    engine = FakeEngine(image("sha256:other", ["other"], 0), [image("sha256:old", ["lightlm-team/x:1"], 5)])
    report = collect_garbage([TEAMS / "ok_team"], SPEC, tmp_path / "cache", "runner:missing", client=engine)
    assert engine.images.removed == [] and "team images left alone" in report.notes[0]


def a_pid_that_ended():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_owner_is_gone_only_when_its_process_on_this_host_and_namespace_has_ended():
    import socket

    host, namespace = socket.gethostname(), pid_namespace()
    assert not owner_gone(run_owner())                                       # this process
    assert owner_gone(f"{host}:{namespace}:{a_pid_that_ended()}")
    assert not owner_gone(f"{host}:{namespace}:1")                           # alive (init)
    assert not owner_gone(f"another-host:{namespace}:{a_pid_that_ended()}")  # nobody here can tell
    assert not owner_gone(f"{host}:4026531999:{a_pid_that_ended()}")          # another pid namespace
    assert not owner_gone(f"{host}:{a_pid_that_ended()}") and not owner_gone("")   # an older label, none


def test_gc_removes_the_containers_of_killed_runs_and_no_others(tmp_path):
    import socket

    engine = FakeEngine(image("sha256:runner", ["runner:x"], 0), [])
    gone = f"{socket.gethostname()}:{pid_namespace()}:{a_pid_that_ended()}"
    engine.containers.left = [FakeContainer("paused-worker", gone, engine.containers),
                              FakeContainer("this-run", run_owner(), engine.containers),
                              FakeContainer("elsewhere", f"other-host:1:{a_pid_that_ended()}", engine.containers)]
    dry = collect_garbage([TEAMS / "ok_team"], SPEC, tmp_path / "cache", "runner:x", client=engine, dry_run=True)
    assert [r.name for r in dry.removed if r.kind == "container"] == [f"paused-worker (left by harness process {gone})"]
    assert engine.containers.removed == []
    collect_garbage([TEAMS / "ok_team"], SPEC, tmp_path / "cache", "runner:x", client=engine)
    assert engine.containers.removed == ["paused-worker"]


def test_gc_refuses_while_a_batch_holds_the_box(invoke, cache):
    from harness.batch import box_lock

    with box_lock(cache.dir):
        result = invoke("gc", TEAMS / "ok_team", "--backend", "local", "--cache-dir", cache.dir)
    assert result.exit_code == 1 and "another batch holds this box" in result.output
    assert cache.gone.exists()
